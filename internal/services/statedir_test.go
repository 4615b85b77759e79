package services

// Tests of what passes between Managers through the state directory: a
// process left by Close, stale pid files, a missing state directory.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// Close leaves the process running; the next Manager adopts it instead of
// starting a second one, supervises it and stops it.
func TestSupervisedAdoptAfterClose(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	svc := config.Service{Name: "survivor", Command: []string{"/bin/sleep", "987.654"}}
	m1 := h.manager()
	if err := m1.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	pid := h.pid(svc.Name)
	m1.Close()
	if st := status(t, h.manager(), svc); !st.Running {
		t.Fatalf("after Close: %+v; want the process left running", st)
	}

	m2 := h.manager()
	if err := m2.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if got := h.pid(svc.Name); got != pid {
		t.Fatalf("pid %d after adoption, want %d", got, pid)
	}
	if n := countProcesses(t, svc.Command); n != 1 {
		t.Fatalf("%d processes run %q; want the adopted one only", n, svc.Command)
	}
	if err := h.manager().Start(ctx, svc); !errors.Is(err, ErrSupervisedElsewhere) {
		t.Errorf("start from a third manager: %v; want ErrSupervisedElsewhere", err)
	}

	// m2 supervises by polling: a crash is noticed and repaired.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var pid2 int
	testenv.Eventually(t, 5*time.Second, func() error {
		st := status(t, m2, svc)
		if pid2 = h.pid(svc.Name); !st.Running || pid2 == 0 || pid2 == pid {
			return fmt.Errorf("status %+v, pid file %d", st, pid2)
		}
		return nil
	})
	if err := m2.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	groupGone(t, pid2)
}

// Stop from a Manager that did not start the process (a new handler-runner
// that comes up as standby) stops it through the pid file.
func TestSupervisedStopWithoutStart(t *testing.T) {
	h := newHarness(t)
	ctx := testCtx(t)
	svc := config.Service{Name: "leftover", Command: []string{"/bin/sleep", "100"}}
	m1 := h.manager()
	if err := m1.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	pid := h.pid(svc.Name)
	m1.Close()
	if err := h.manager().Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	groupGone(t, pid)
}

func countProcesses(t *testing.T, argv []string) int {
	t.Helper()
	n := 0
	for _, pid := range pids(t) {
		if st, err := procStat(pid); err != nil || !st.live() {
			continue
		}
		if args, err := procCmdline(pid); err == nil && strings.Join(args, "\x00") == strings.Join(argv, "\x00") {
			n++
		}
	}
	return n
}

// A pid file naming a dead process, a zombie or a reused pid reads as not
// running, and Start runs the program instead of adopting a stranger.
func TestSupervisedStalePidFile(t *testing.T) {
	h := newHarness(t)
	svc := config.Service{Name: "stale", Command: []string{"/bin/sleep", "100"}}
	m := h.manager()
	write := func(pid int, rec *record) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(h.dir, svc.Name+pidExt), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(h.dir, svc.Name+stateExt))
		if rec != nil {
			if err := m.save(svc.Name, *rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	notRunning := func(what, why string) {
		t.Helper()
		if st := status(t, m, svc); st.Running || !strings.Contains(st.Detail, why) {
			t.Errorf("%s: %+v; want not running, %q", what, st, why)
		}
	}

	done := exec.Command("/bin/true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	write(done.Process.Pid, nil)
	notRunning("dead pid", fmt.Sprintf("pid %d is gone", done.Process.Pid))

	zombie := exec.Command("/bin/true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = zombie.Wait() })
	testenv.Eventually(t, 5*time.Second, func() error {
		if st, _ := procStat(zombie.Process.Pid); st.state != 'Z' {
			return fmt.Errorf("state %c", st.state)
		}
		return nil
	})
	write(zombie.Process.Pid, nil)
	notRunning("zombie", "is gone")

	write(os.Getpid(), nil)
	notRunning("pid of another program", fmt.Sprintf("pid %d is another program now", os.Getpid()))

	// The same program under a reused pid: only the start time tells.
	stranger := exec.Command("/bin/sleep", "100")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	spid := stranger.Process.Pid
	h.track(spid)
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })
	st, err := procStat(spid)
	if err != nil {
		t.Fatal(err)
	}
	start := st.start
	write(spid, &record{PID: spid, StartTime: start + 1, BootID: bootID()})
	notRunning("reused pid, same program", fmt.Sprintf("pid %d is another process now", spid))
	write(spid, &record{PID: spid, StartTime: start, BootID: "another-boot"})
	notRunning("pid of the previous boot", "before the last boot")
	write(spid, &record{PID: spid, StartTime: start + 1, BootID: bootID()})

	ctx := testCtx(t)
	if err := m.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	pid := h.pid(svc.Name)
	if pid == spid {
		t.Fatalf("Start adopted pid %d, a stranger with the same command", spid)
	}
	if err := m.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	groupGone(t, pid)
	if !(&process{pid: spid, start: start}).alive() {
		t.Errorf("the stranger, pid %d, was stopped along with the service", spid)
	}
}

func TestSupervisedErrors(t *testing.T) {
	ctx := testCtx(t)
	svc := config.Service{Name: "w", Command: []string{"/bin/sleep", "100"}}
	m := NewManager()
	defer m.Close()
	for verb, err := range map[string]error{
		"start": m.Start(ctx, svc), "stop": m.Stop(ctx, svc),
		"status": func() error { _, err := m.Status(ctx, svc); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "WithStateDir") {
			t.Errorf("%s without a state directory: %v; want one that says to configure it", verb, err)
		}
	}

	h := newHarness(t)
	hm := h.manager()
	missing := config.Service{Name: "missing", Command: []string{"/nonexistent/program"}}
	if err := hm.Start(ctx, missing); err == nil || !strings.Contains(err.Error(), "start service missing") {
		t.Fatalf("start of a missing program: %v", err)
	}
	if st := status(t, hm, missing); st.Running || !strings.HasPrefix(st.Detail, "not running: could not start: ") {
		t.Errorf("status after a failed start: %+v", st)
	}
}
