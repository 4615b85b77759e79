package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type entry struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestJournalFields(t *testing.T) {
	var got []entry
	h := &journalHandler{level: slog.LevelInfo, send: func(m string, p journal.Priority, v map[string]string) error {
		got = append(got, entry{m, p, v})
		return nil
	}}
	log := slog.New(h).With("component", "check-runner", "node", "mgr-1")
	log.Debug("not sent")
	log.Warn("check critical", "check", "postgres-role", "lag-bytes", 42, slog.Group("pg", "port", 5432))
	if len(got) != 1 {
		t.Fatalf("got %d entries, want 1 (debug is below the level)", len(got))
	}
	e := got[0]
	want := map[string]string{"COMPONENT": "check-runner", "NODE": "mgr-1", "CHECK": "postgres-role", "LAG_BYTES": "42", "PG_PORT": "5432"}
	for k, v := range want {
		if e.vars[k] != v {
			t.Errorf("field %s = %q, want %q (all: %v)", k, e.vars[k], v, e.vars)
		}
	}
	if e.msg != "check critical" || e.pri != journal.PriWarning {
		t.Errorf("message %q priority %d", e.msg, e.pri)
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"node": "NODE", "from-role": "FROM_ROLE", "_secret": "SECRET", "1x": "F_1X", "": "F_", "ünï": "N_"} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTextOffTheJournal(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "warn").Info("hidden")
	New(&buf, "").Info("entering active role", "node", "mgr-1")
	if out := buf.String(); strings.Contains(out, "hidden") || !strings.Contains(out, `msg="entering active role" node=mgr-1`) {
		t.Fatalf("text log %q", out)
	}
}
