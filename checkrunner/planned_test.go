package checkrunner

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/consul"
)

// TestPlannedRestartWindow: a round overlaps the window when one of its
// probes may have failed within it; Ended, or Until when the end was never
// written, closes it.
func TestPlannedRestartWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	open := PlannedRestart{Began: at(10), Until: at(130)}
	ended := PlannedRestart{Began: at(10), Ended: at(10.5), Until: at(130)}
	tests := []struct {
		name     string
		p        PlannedRestart
		from, to float64
		want     bool
	}{
		{"a round before the restart", ended, 8, 9.9, false},
		{"a round that began before and ended within", ended, 9.5, 10.1, true},
		{"a round within", ended, 10.1, 10.4, true},
		{"a round that began before the end and outlasted it", ended, 10.4, 11.4, true},
		{"a round after the end", ended, 10.6, 11.6, false},
		{"a round long after, the end never written, within the bound", open, 100, 101, true},
		{"a round after the bound", open, 131, 132, false},
	}
	for _, tt := range tests {
		if got := tt.p.covers(at(tt.from), at(tt.to)); got != tt.want {
			t.Errorf("%s: covers(%v, %v) = %v, want %v", tt.name, tt.from, tt.to, got, tt.want)
		}
	}
}

// TestPlannedRestartFile: what the handler-runner writes, the check-runner
// reads; without a file there is no window.
func TestPlannedRestartFile(t *testing.T) {
	path := PlannedRestartFile(t.TempDir())
	if _, ok, err := readPlannedRestart(path); ok || err != nil {
		t.Fatalf("no file: ok %v, err %v; want no window and no error", ok, err)
	}
	if err := EndPlannedRestart(path, time.Now()); err != nil {
		t.Fatalf("end without a beginning: %v", err)
	}
	began := time.Now().Truncate(time.Millisecond)
	if err := BeginPlannedRestart(path, "operator alice", began, time.Minute); err != nil {
		t.Fatal(err)
	}
	p, ok, err := readPlannedRestart(path)
	if !ok || err != nil || !p.Began.Equal(began) || !p.Ended.IsZero() || p.By != "operator alice" {
		t.Fatalf("after the beginning: %+v, %v, %v", p, ok, err)
	}
	if err := EndPlannedRestart(path, began.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if p, _, _ = readPlannedRestart(path); !p.Ended.Equal(began.Add(300 * time.Millisecond)) {
		t.Fatalf("after the end: %+v", p)
	}
	if m, _ := filepath.Glob(path + ".tmp"); len(m) > 0 {
		t.Errorf("left %v behind", m)
	}
}

// TestPlannedRestartWarns: postgres down within the window is a warning on
// each postgres check (the session stays); down outside it, critical.
func TestPlannedRestartWarns(t *testing.T) {
	down := errors.New("connection refused")
	p := &PlannedRestart{By: "operator alice", Began: time.Now()}
	checks := map[string]func(*observation) Result{CheckListening: checkListening, CheckQuery: checkQuery, CheckRole: checkRole}
	for name, check := range checks {
		planned := observation{pgAddr: "127.0.0.1:5432", dialErr: down, pingErr: down, planned: p}
		if r := check(&planned); r.Status != consul.Warning || !strings.Contains(r.Output, "being restarted by understudy (operator alice)") || !strings.Contains(r.Output, "refused") {
			t.Errorf("%s down in a planned restart = %+v; want a warning naming the restart and the error", name, r)
		}
		unplanned := observation{pgAddr: "127.0.0.1:5432", dialErr: down, pingErr: down}
		if r := check(&unplanned); r.Status != consul.Critical {
			t.Errorf("%s down outside a planned restart = %+v; want critical", name, r)
		}
	}
}
