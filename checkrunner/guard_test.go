package checkrunner

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestGuardFencesOnceAfterTheLease: the guard acts only on the active node,
// only once the handler-runner has been silent for the lease, only once per
// outage, and starts over when the handler-runner answers again.
func TestGuardFencesOnceAfterTheLease(t *testing.T) {
	cfg := config.Default()
	cfg.Node.Name, cfg.Postgres.DataDir = "a", t.TempDir() // no postmaster: Stop has nothing to do
	log := slog.New(slog.DiscardHandler)
	g := &guard{cfg: cfg, log: log, after: 5 * time.Second, pg: postgres.NewInstance(cfg.Postgres, "a", log)}
	ctx := context.Background()
	gone := errors.New("connection refused")
	t0 := time.Now()
	steps := []struct {
		active bool
		err    error
		at     time.Duration
		fence  bool
	}{
		{true, gone, 0, false},               // never seen: no handler-runner to watch over,
		{true, gone, 6 * time.Second, false}, // however long

		{false, gone, time.Second / 2, false},  // a standby's handler-runner: not the guard's business
		{true, nil, time.Second, false},        // answering
		{true, gone, 2 * time.Second, false},   // first silence
		{true, gone, 6 * time.Second, false},   // 4 s: within the lease
		{true, gone, 7 * time.Second, true},    // 5 s: fenced
		{true, gone, 8 * time.Second, false},   // once
		{true, nil, 9 * time.Second, false},    // back
		{true, gone, 10 * time.Second, false},  // a new outage starts over
		{true, gone, 15 * time.Second, true},   // and fences after the lease again
		{false, gone, 16 * time.Second, false}, // another node took the leader key
		{true, gone, 30 * time.Second, false},  // ... and this one holds it again: a fresh count
		{true, gone, 34900 * time.Millisecond, false},
		// The lock moves on within the lease, PostgreSQL found stopped
		// (the watchdog's doing): that fencing is recorded.
		{false, gone, 35500 * time.Millisecond, true},
		{false, gone, 36 * time.Second, false},
	}
	for i, s := range steps {
		ev := g.check(ctx, s.active, s.err, t0.Add(s.at))
		if (ev != nil) != s.fence {
			t.Fatalf("step %d (%+v): fenced %v, want %v", i, s, ev != nil, s.fence)
		}
		if ev != nil && (ev.Kind != "fence" || (ev.Details["by"] != "check-runner" && ev.Details["by"] != "watchdog")) {
			t.Fatalf("step %d: event %+v", i, ev)
		}
	}
	var off *guard
	if off.check(ctx, true, gone, t0) != nil {
		t.Fatal("a nil guard (TLS files unreadable) fenced")
	}
}

// TestGuardProbe: any HTTP answer of the handler-runner's API counts as
// alive, a refusal too; no answer within the probe timeout does not.
func TestGuardProbe(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusUnauthorized)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			t.Errorf("the guard asked %s", r.URL.Path)
		}
		c := code.Load()
		if c == 0 {
			time.Sleep(200 * time.Millisecond)
			c = http.StatusOK
		}
		w.WriteHeader(int(c))
	}))
	defer srv.Close()
	cfg := config.Default()
	cfg.Node.Name, cfg.Checks.Interval = "a", time.Second
	cfg.API.Listen = strings.TrimPrefix(srv.URL, "http://")
	g := newGuard(cfg, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for _, c := range []int32{http.StatusUnauthorized, http.StatusBadRequest, http.StatusOK} {
		code.Store(c)
		if err := g.probe(ctx); err != nil {
			t.Errorf("answer %d: %v", c, err)
		}
	}
	code.Store(0)
	g.timeout = 50 * time.Millisecond
	if err := g.probe(ctx); err == nil {
		t.Error("no answer within the timeout counted as alive")
	}
}
