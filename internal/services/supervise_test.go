package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// harness holds the state directory of one test and every process it saw,
// and kills those still alive when the test ends, by pid and start time so
// that a pid reused meanwhile by someone else is left alone.
type harness struct {
	t   *testing.T
	dir string

	mu    sync.Mutex
	procs []*process
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, dir: t.TempDir()}
	// Registered before any Manager's Close, so it runs after them: no
	// supervisor is left to restart what it kills.
	t.Cleanup(h.killAll)
	return h
}

// manager returns a Manager on the test's state directory, closed when
// the test ends.
func (h *harness) manager() *Manager {
	log := slog.New(slog.NewTextHandler(testWriter{h.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := NewManager(WithStateDir(h.dir), WithLogger(log))
	h.t.Cleanup(m.Close)
	return m
}

// pid reads the pid file of name and tracks the process; 0 when there is
// no pid file.
func (h *harness) pid(name string) int {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, name+pidExt))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		h.t.Fatalf("pid file of %s: %v", name, err)
	}
	h.track(pid)
	return pid
}

func (h *harness) track(pid int) {
	st, err := procStat(pid)
	if err != nil {
		return // gone already
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.procs = append(h.procs, &process{pid: pid, pgid: pid, start: st.start})
}

func (h *harness) killAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.procs {
		if p.alive() || p.groupLeft() {
			h.t.Errorf("pid %d (or its group) was left running; killing it", p.pid)
			_ = p.kill()
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func status(t *testing.T, m *Manager, svc config.Service) Status {
	t.Helper()
	st, err := m.Status(context.Background(), svc)
	if err != nil {
		t.Fatalf("status of %s: %v", svc.Name, err)
	}
	return st
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// groupGone fails the test unless no live process of group pgid is left.
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	if groupAlive(pgid) {
		t.Fatalf("process group %d still has live processes", pgid)
	}
}

// groupSize counts the live processes of group pgid.
func groupSize(t *testing.T, pgid int) int {
	t.Helper()
	n := 0
	for _, pid := range pids(t) {
		if st, err := procStat(pid); err == nil && st.pgid == pgid && st.live() {
			n++
		}
	}
	return n
}

func pids(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

func TestSupervisedStartStatusStop(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	svc := config.Service{Name: "sleeper", Command: []string{"/bin/sleep", "100"}}
	m := h.manager()
	checker := h.manager() // as the check-runner: never started anything

	if st := status(t, checker, svc); st.Running || st.Detail != "not running: never started" {
		t.Fatalf("before start: %+v", st)
	}
	if err := m.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	pid := h.pid(svc.Name)
	want := Status{Running: true, Detail: fmt.Sprintf("running, pid %d, restarts 0", pid)}
	for who, mm := range map[string]*Manager{"supervisor": m, "other manager": checker} {
		if st := status(t, mm, svc); st != want {
			t.Errorf("status from %s: %+v, want %+v", who, st, want)
		}
	}
	if err := m.Start(ctx, svc); err != nil || h.pid(svc.Name) != pid {
		t.Fatalf("second start: err %v, pid %d; want a no-op keeping pid %d", err, h.pid(svc.Name), pid)
	}
	if err := m.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	groupGone(t, pid)
	for who, mm := range map[string]*Manager{"supervisor": m, "other manager": checker} {
		if st := status(t, mm, svc); st.Running || !strings.HasPrefix(st.Detail, "not running: stopped at ") {
			t.Errorf("status from %s after stop: %+v", who, st)
		}
	}
	if err := m.Stop(ctx, svc); err != nil {
		t.Errorf("stop of a stopped service: %v", err)
	}
	log, err := os.ReadFile(filepath.Join(h.dir, svc.Name+logExt))
	if err != nil || !strings.Contains(string(log), "understudy: starting /bin/sleep 100") {
		t.Errorf("log %q, %v; want the start noted", log, err)
	}
}

func TestSupervisedOutputGoesToLog(t *testing.T) {
	h := newHarness(t)
	svc := config.Service{Name: "talker", Command: []string{"/bin/sh", "-c", "echo out; echo err >&2; exec sleep 100"}}
	m := h.manager()
	if err := m.Start(testCtx(t), svc); err != nil {
		t.Fatal(err)
	}
	h.pid(svc.Name)
	testenv.Eventually(t, 5*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(h.dir, svc.Name+logExt))
		if err != nil || !strings.Contains(string(b), "out\nerr\n") {
			return fmt.Errorf("log %q, %v", b, err)
		}
		return nil
	})
	if err := m.Stop(testCtx(t), svc); err != nil {
		t.Fatal(err)
	}
}

// A program that exits is started again; a crash leaves no orphan behind.
func TestSupervisedRestart(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	m := h.manager()

	failing := config.Service{Name: "failing", Command: []string{"/bin/sh", "-c", "exit 3"}}
	if err := m.Start(ctx, failing); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if st := status(t, m, failing); !strings.HasPrefix(st.Detail, "not running: exited 3 at ") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if err := m.Stop(ctx, failing); err != nil {
		t.Fatal(err)
	}

	// sh waits for its sleep: killing sh leaves sleep in the group, which
	// the supervisor must stop before it restarts the program.
	crashing := config.Service{Name: "crashing", Command: []string{"/bin/sh", "-c", "sleep 100; exit 0"}}
	if err := m.Start(ctx, crashing); err != nil {
		t.Fatal(err)
	}
	pid1 := h.pid(crashing.Name)
	testenv.Eventually(t, 5*time.Second, func() error { // sh has started sleep
		if n := groupSize(t, pid1); n != 2 {
			return fmt.Errorf("%d processes in group %d", n, pid1)
		}
		return nil
	})
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var pid2 int
	testenv.Eventually(t, 5*time.Second, func() error {
		st := status(t, m, crashing)
		if pid2 = h.pid(crashing.Name); pid2 == pid1 || !st.Running {
			return fmt.Errorf("status %+v, still pid %d", st, pid1)
		}
		if want := fmt.Sprintf("running, pid %d, restarts 1", pid2); st.Detail != want {
			return fmt.Errorf("detail %q, want %q", st.Detail, want)
		}
		return nil
	})
	groupGone(t, pid1)
	if err := m.Stop(ctx, crashing); err != nil {
		t.Fatal(err)
	}
	groupGone(t, pid2)
}

// Stop signals the whole group and escalates to SIGKILL at ctx's deadline:
// both sh and its sleep ignore SIGTERM here.
func TestSupervisedStopEscalatesToKill(t *testing.T) {
	h := newHarness(t)
	svc := config.Service{Name: "stubborn", Command: []string{"/bin/sh", "-c", `trap "" TERM; sleep 100; exit 0`}}
	m := h.manager()
	if err := m.Start(testCtx(t), svc); err != nil {
		t.Fatal(err)
	}
	pid := h.pid(svc.Name)
	testenv.Eventually(t, 5*time.Second, func() error { // the trap is set
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(b), "\n") {
			if hex, ok := strings.CutPrefix(line, "SigIgn:"); ok {
				if mask, _ := strconv.ParseUint(strings.TrimSpace(hex), 16, 64); mask&(1<<(syscall.SIGTERM-1)) != 0 {
					return nil
				}
			}
		}
		return fmt.Errorf("SIGTERM not ignored yet (%v)", err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if err := m.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 600*time.Millisecond || took > 5*time.Second {
		t.Errorf("stop took %v; want the 700ms of ctx, then SIGKILL", took)
	}
	groupGone(t, pid)
}
