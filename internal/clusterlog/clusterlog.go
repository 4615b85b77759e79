package clusterlog

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Log appends events to one file. Each line is written with one write(2) on
// a descriptor opened with O_APPEND, so lines of the node's daemons, which
// share the file, never interleave.
//
// Rotation: before each line the path is compared with the open file (its
// inode); when logrotate renamed or removed it, the path is opened again
// (created when missing). No signal is needed, and the logrotate file needs
// neither copytruncate (which loses lines) nor a postrotate command; the
// line after a rotation goes to the new file.
type Log struct {
	path string

	mu   sync.Mutex
	f    *os.File
	open os.FileInfo // of f, to tell when the path names another file
}

// New returns the log at path, opened at the first line; nil when path is
// "" (logging.dir empty): every method of a nil Log does nothing.
func New(path string) *Log {
	if path == "" {
		return nil
	}
	return &Log{path: path}
}

// Path is the file written, "" for a nil Log.
func (l *Log) Path() string {
	if l == nil {
		return ""
	}
	return l.path
}

// Write appends ev as one line.
func (l *Log) Write(ev cluster.Event) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.reopen(); err != nil {
		return err
	}
	if _, err := l.f.WriteString(Line(ev)); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	return nil
}

// reopen opens the path when nothing is open or the path now names another
// file than the one open.
func (l *Log) reopen() error {
	if l.f != nil {
		if fi, err := os.Stat(l.path); err == nil && os.SameFile(fi, l.open) {
			return nil
		}
		l.f.Close()
		l.f = nil
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o750); err != nil {
		return fmt.Errorf("create the directory of %s: %w; create it or set logging.dir", l.path, err)
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w; make it writable or set logging.dir", l.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", l.path, err)
	}
	l.f, l.open = f, fi
	return nil
}

// Close closes the open file; the next Write opens it again.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Line is ev as cluster.log writes it: the time (UTC, milliseconds), the
// node, the kind, and a message of what changed, why, where in the WAL, by
// whom and the details, on one line:
//
//	2024-05-01T12:00:00.000Z n1 transition candidate -> active: chosen as next-master; by operator alice
func Line(ev cluster.Event) string {
	var parts []string
	head := ""
	switch {
	case ev.From != "" || ev.To != "":
		head = orDash(ev.From) + " -> " + orDash(ev.To)
	}
	if ev.Reason != "" {
		parts = append(parts, ev.Reason)
	}
	if ev.LSN != 0 {
		parts = append(parts, "lsn "+ev.LSN.String())
	}
	if ev.By != "" {
		parts = append(parts, "by "+ev.By)
	}
	for _, k := range slices.Sorted(maps.Keys(ev.Details)) {
		v := ev.Details[k]
		if v == "" || strings.ContainsAny(v, " \t\n\"") {
			v = fmt.Sprintf("%q", v)
		}
		parts = append(parts, k+"="+v)
	}
	msg := strings.Join(parts, "; ")
	switch {
	case head != "" && msg != "":
		msg = head + ": " + msg
	case head != "":
		msg = head
	case msg == "":
		msg = "-"
	}
	return fmt.Sprintf("%s %s %s %s\n", ev.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), orDash(ev.Node), orDash(ev.Kind), oneLine(msg))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps an event on its line: a reason may carry a hook's output.
var newlines = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

func oneLine(s string) string { return newlines.Replace(s) }
