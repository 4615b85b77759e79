package fence

import (
	"context"
	"log/slog"
	"time"
)

// Watchdog stops PostgreSQL when the active's lease runs out and the
// handler-runner has not: the handler-runner hung (SIGSTOP, a deadlock, a
// machine so loaded it is not scheduled), or killed. It shares nothing with
// the handler-runner but the lease file, runs no network call and takes no
// lock, so what stops the handler-runner does not stop it. The
// handler-runner starts it and restarts it when it exits.
type Watchdog struct {
	Lease   *Lease
	DataDir string // PostgreSQL's data directory
	Poll    time.Duration
	Log     *slog.Logger
	// Idle is how long the watchdog waits, with nothing to guard (the lease
	// disarmed or fenced) and no sign of the handler-runner, before it
	// exits: a node whose handler-runner is gone for good leaves no
	// watchdog behind. The handler-runner starts a new one when it comes
	// back.
	Idle time.Duration
}

// Run polls until ctx ends or the watchdog is idle.
func (w *Watchdog) Run(ctx context.Context) error {
	w.Log.Info("watchdog started", "lease", w.Lease.Path(), "pgdata", w.DataDir, "poll", w.Poll)
	t := time.NewTicker(w.Poll)
	defer t.Stop()
	for {
		if done := w.poll(ctx); done {
			w.Log.Info("watchdog exiting: nothing to guard and no handler-runner", "idle", w.Idle)
			return nil
		}
		select {
		case <-ctx.Done():
			w.Log.Info("watchdog stopped", "lease", w.Lease.Snapshot())
			return nil
		case <-t.C:
		}
	}
}

// poll is one look at the lease; true when the watchdog may exit.
func (w *Watchdog) poll(ctx context.Context) bool {
	now := Now()
	w.Lease.store(wordWatchdog, now)
	d := w.Lease.Deadline()
	fencedFor, _ := w.Lease.Fenced()
	if d == 0 || d == fencedFor {
		return w.Idle > 0 && now.Sub(w.Lease.HandlerSeen()) > w.Idle
	}
	if now <= d {
		return false
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pid, err := Quit(qctx, w.DataDir)
	if err != nil {
		w.Log.Error("lease ran out but postgres could not be stopped; it may still take writes", "err", err)
		return false
	}
	w.Lease.store(wordFencedFor, d)
	w.Lease.store(wordFencedAt, Now())
	if pid != 0 {
		w.Log.Error("the active's lease ran out without the handler-runner fencing: stopped postgres (immediate) so that no write is taken after another node may be promoted",
			"overdue", now.Sub(d).Round(time.Millisecond), "postmaster", pid, "took", Now().Sub(now).Round(time.Millisecond),
			"handler_runner_seen", now.Sub(w.Lease.HandlerSeen()).Round(time.Millisecond))
	} else {
		w.Log.Warn("the active's lease ran out; postgres was not running", "overdue", now.Sub(d).Round(time.Millisecond))
	}
	return false
}
