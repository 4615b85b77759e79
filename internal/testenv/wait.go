package testenv

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// pollInterval is how often Eventually and WaitFor try again: short enough
// that a wait costs little more than the event itself, long enough not to
// load the processes under test.
const pollInterval = 50 * time.Millisecond

// RequireIntegration skips the test under `go test -short`, the one way to
// leave out tests of real processes. It never skips for a missing binary:
// that fails the test with the command that installs it.
func RequireIntegration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts real processes; skipped under -short")
	}
}

// Eventually calls f every 50ms until it returns nil and fails the test
// with f's last error when timeout has passed first.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	if err := WaitFor(context.Background(), timeout, f); err != nil {
		t.Fatal(err)
	}
}

// WaitFor calls f every 50ms until it returns nil, timeout has passed or ctx
// is done. The error says how long it waited and what f said last; when ctx
// was cancelled with a cause, that cause leads the message.
func WaitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for attempts := 1; ; attempts++ {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			cause := context.Cause(ctx)
			if errors.Is(cause, context.DeadlineExceeded) {
				return fmt.Errorf("not true after %v (%d attempts), last error: %w",
					time.Since(start).Round(time.Millisecond), attempts, err)
			}
			return fmt.Errorf("%w; last error after %v: %w", cause, time.Since(start).Round(time.Millisecond), err)
		case <-tick.C:
		}
	}
}

// waitRunning is Eventually that gives up as soon as one of procs exits: a
// process that died will not become ready, and the tail of its output,
// printed when the test fails, says why.
func waitRunning(t testing.TB, timeout time.Duration, procs []*Process, f func() error) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	for _, p := range procs {
		go func() {
			select {
			case <-p.Exited():
				cancel(fmt.Errorf("[%s] exited (%s)", p.Name(), p.status()))
			case <-ctx.Done():
			}
		}()
	}
	if err := WaitFor(ctx, timeout, f); err != nil {
		t.Fatal(err)
	}
}
