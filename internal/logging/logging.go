package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// New returns the daemon logger. level is "debug", "info", "warn" or
// "error"; anything else means info.
func New(stderr io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	if onJournal, _ := journal.StderrIsJournalStream(); onJournal && journal.Enabled() {
		return slog.New(&journalHandler{level: l, send: journal.Send})
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l}))
}

// journalHandler sends each record to journald as one entry: the message as
// MESSAGE, the level as PRIORITY, every attribute as an upper-case field.
type journalHandler struct {
	level  slog.Level
	attrs  []slog.Attr
	groups []string
	send   func(msg string, p journal.Priority, vars map[string]string) error
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{}
	for _, a := range h.attrs {
		addField(vars, "", a)
	}
	prefix := strings.Join(h.groups, "_")
	r.Attrs(func(a slog.Attr) bool {
		addField(vars, prefix, a)
		return true
	})
	return h.send(r.Message, priority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	attrs := append([]slog.Attr{}, h.attrs...)
	prefix := strings.Join(h.groups, "_")
	for _, a := range as {
		if prefix != "" {
			a.Key = prefix + "_" + a.Key
		}
		attrs = append(attrs, a)
	}
	return &journalHandler{level: h.level, attrs: attrs, groups: h.groups, send: h.send}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{level: h.level, attrs: h.attrs, send: h.send, groups: append(append([]string{}, h.groups...), name)}
}

// FieldName turns an attribute key into a journal field name: upper case,
// letters, digits and underscores, not starting with an underscore (those
// are journald's own).
func FieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), "_")
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		name = "F_" + name
	}
	return name
}

func addField(vars map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := a.Key
	if prefix != "" {
		key = prefix + "_" + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			addField(vars, key, g)
		}
		return
	}
	vars[FieldName(key)] = fmt.Sprint(a.Value.Any())
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}
