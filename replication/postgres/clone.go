package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// cloneAppName is what pg_basebackup connects as. Not the member's name: a
// primary whose synchronous_standby_names lists the member would count the
// backup's WAL stream as that synchronous standby and acknowledge commits that
// only a half-made clone holds.
const cloneAppName = "understudy_clone"

// Clone replaces the data directory with a copy of source's, made by
// pg_basebackup -X stream -c fast, and leaves it ready to StartStandby
// (standby.signal, understudy's settings). progress, when not nil, is called
// with bytes done and the estimated total as pg_basebackup reports them.
//
// The copy is made into <DataDir>.clone beside the data directory, and only a
// complete one is swapped in: a clone that fails or is interrupted leaves the
// node with the data it had. The old directory is then moved to
// <DataDir>.old-<UTC timestamp> and never deleted: it may hold the only copy
// of writes the source never received (a partitioned active's), and what to
// do with them is an operator's call. It costs its size in disk until then.
func (i *Instance) Clone(ctx context.Context, source Upstream, progress func(done, total int64)) error {
	_, err := i.CloneKeepingAside(ctx, source, progress)
	return err
}

// CloneKeepingAside is Clone, and says where the old data directory went
// ("" when there was none, or it was empty).
func (i *Instance) CloneKeepingAside(ctx context.Context, source Upstream, progress func(done, total int64)) (aside string, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("clone %s into %s: %w", source.Addr(), i.dataDir, err)
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return fail(err)
	}
	if pid, running, err := i.Running(ctx); err != nil || running {
		return fail(errors.Join(err, runningErr(pid, running)))
	}
	if err := makeParent(u, i.dataDir); err != nil {
		return fail(err)
	}
	tmp := i.dataDir + ".clone"
	// What an interrupted clone left was never a directory a server ran
	// on: nothing in it is worth keeping.
	if err := os.RemoveAll(tmp); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	start := time.Now()
	err = i.basebackup(ctx, u, tmp, source, progress)
	if err == nil {
		// Standby until told otherwise: a copy started as a primary would
		// be a second primary of the cluster.
		err = errors.Join(i.ensureConfig(u, tmp, nil), setStandbySignal(u, tmp, true))
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fail(fmt.Errorf("%w; the data directory was left as it was", err))
	}
	old, err := i.swapIn(tmp)
	if err != nil {
		return fail(err)
	}
	i.log.Info("cloned data directory", "source", source.Addr(), "old_data_dir", old,
		"duration", time.Since(start).Round(time.Millisecond))
	return old, nil
}

// basebackup runs pg_basebackup from source into dir.
func (i *Instance) basebackup(ctx context.Context, u osUser, dir string, source Upstream, progress func(done, total int64)) error {
	if err := u.chown(dir); err != nil {
		return err
	}
	auth, err := i.clientAuth(u)
	if err != nil {
		return err
	}
	kv := [][2]string{{"host", source.Host}, {"port", strconv.Itoa(source.Port)}, {"user", i.cfg.User},
		{"application_name", cloneAppName}, {"connect_timeout", strconv.Itoa(connectTimeoutSeconds(i.cfg.ConnectTimeout))}}
	kv = append(kv, auth...)
	// -X stream fetches the WAL written during the copy over a second
	// connection, so the copy is consistent however long it takes; -c fast
	// starts it at once instead of after the primary's next spread
	// checkpoint; -w never waits for a password prompt.
	args := []string{"-D", dir, "-d", conninfo(kv), "-X", "stream", "-c", "fast", "-P", "-w"}
	if r := i.cfg.CloneMaxRate; r > 0 {
		args = append(args, "-r", strconv.FormatInt(r>>10, 10)+"k") // kB/s
	}
	if i.noSync {
		args = append(args, "--no-sync")
	}
	cmd := i.command(ctx, u, "pg_basebackup", args...)
	pw := &progressWriter{progress: progress}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Run()
	pw.flush()
	if err != nil {
		return fmt.Errorf("pg_basebackup: %w%s", err, outputTail(strings.Join(pw.tail, "\n"), tailLines))
	}
	return nil
}

// swapIn puts the complete clone tmp in place of the data directory and
// returns where the old one went ("" when there was none or it was empty).
func (i *Instance) swapIn(tmp string) (old string, err error) {
	entries, err := os.ReadDir(i.dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case len(entries) == 0:
		if err := os.Remove(i.dataDir); err != nil {
			return "", err
		}
	default:
		old = asideName(i.dataDir, time.Now())
		if err := os.Rename(i.dataDir, old); err != nil {
			return "", fmt.Errorf("move old data directory aside: %w; the clone is in %s", err, tmp)
		}
	}
	if err := os.Rename(tmp, i.dataDir); err != nil {
		if old != "" {
			if rerr := os.Rename(old, i.dataDir); rerr != nil {
				return "", fmt.Errorf("put clone in place: %w; the old data directory is in %s and the clone in %s (%w)", err, old, tmp, rerr)
			}
		}
		return "", fmt.Errorf("put clone in place: %w; the data directory was left as it was, the clone is in %s", err, tmp)
	}
	return old, syncDir(filepath.Dir(i.dataDir))
}

// asideName is <dir>.old-<UTC timestamp>, with a counter when that exists.
func asideName(dir string, now time.Time) string {
	base := dir + ".old-" + now.UTC().Format("20060102T150405Z")
	name := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = base + "-" + strconv.Itoa(n)
	}
}

// progressWriter reads pg_basebackup's output: progress lines go to the
// callback, the rest is kept for errors. exec calls Write from one goroutine
// when Stdout and Stderr are the same writer.
type progressWriter struct {
	progress func(done, total int64)
	partial  []byte
	tail     []string
}

func (w *progressWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		j := bytes.IndexAny(w.partial, "\r\n")
		if j < 0 {
			break
		}
		w.line(string(w.partial[:j]))
		w.partial = w.partial[j+1:]
	}
	if len(w.partial) > 64<<10 { // no line is that long; do not grow without bound
		w.flush()
	}
	return len(p), nil
}

func (w *progressWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (w *progressWriter) line(l string) {
	if done, total, ok := parseProgress(l); ok {
		if w.progress != nil {
			w.progress(done, total)
		}
		return
	}
	if strings.TrimSpace(l) == "" {
		return
	}
	w.tail = append(w.tail, l)
	if len(w.tail) > 2*tailLines {
		w.tail = w.tail[1:]
	}
}

// progressLine matches pg_basebackup -P's "  1234/56789 kB (2%), 0/1 tablespace".
var progressLine = regexp.MustCompile(`^\s*(\d+)/(\d+) kB \(\d+%\)`)

// parseProgress reads a progress line as bytes done and total.
func parseProgress(l string) (done, total int64, ok bool) {
	m := progressLine.FindStringSubmatch(l)
	if m == nil {
		return 0, 0, false
	}
	d, err1 := strconv.ParseInt(m[1], 10, 64)
	t, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return d << 10, t << 10, true
}
