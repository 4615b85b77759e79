package fence

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestLeaseIsSharedBetweenMappings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lease")
	a, err := OpenLease(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenLease(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Deadline() != 0 {
		t.Fatalf("a new lease is armed: %v", b.Deadline())
	}
	until := Now().Add(time.Second)
	a.Arm(until)
	if got := b.Deadline(); got != until {
		t.Fatalf("the other mapping reads deadline %d, want %d", got, until)
	}
	a.Disarm()
	if got := b.Deadline(); got != 0 {
		t.Fatalf("disarmed lease reads %d in the other mapping", got)
	}
}

func TestLeaseRefusesAForeignFile(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("not a lease"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLease(short); err == nil {
		t.Fatal("a file of another size was taken for a lease")
	}
	page := filepath.Join(dir, "page")
	if err := os.WriteFile(page, make([]byte, pageSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLease(page); err == nil {
		t.Fatal("a page without the magic was taken for a lease")
	}
}

// fakePostmaster runs a process whose working directory is dir, with dir's
// postmaster.pid naming it, as a postmaster's would.
func fakePostmaster(t *testing.T) (dir string, cmd *exec.Cmd) {
	t.Helper()
	dir = t.TempDir()
	cmd = exec.Command("sleep", "60")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One Wait, so the process is reaped (not a zombie the watchdog would
	// still see) as soon as it dies.
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-waited })
	pid := strconv.Itoa(cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(pid+"\n"+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cmd
}

func TestWatchdogStopsPostgresWhenTheLeaseRunsOut(t *testing.T) {
	dir, cmd := fakePostmaster(t)
	l, err := OpenLease(filepath.Join(t.TempDir(), "lease"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := &Watchdog{Lease: l, DataDir: dir, Poll: 5 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()

	l.Arm(Now().Add(time.Hour))
	w.poll(ctx)
	if pid, _ := Postmaster(dir); pid != cmd.Process.Pid {
		t.Fatalf("the watchdog stopped a postmaster whose lease runs for an hour (postmaster now %d)", pid)
	}
	l.Disarm()
	w.poll(ctx)
	if pid, _ := Postmaster(dir); pid == 0 {
		t.Fatal("the watchdog stopped a postmaster with the lease disarmed (a standby)")
	}

	expired := Now().Add(-time.Millisecond)
	l.Arm(expired)
	start := Now()
	w.poll(ctx)
	if pid, _ := Postmaster(dir); pid != 0 {
		t.Fatalf("postmaster %d still runs after the lease ran out", pid)
	}
	if took := Now().Sub(start); took > 200*time.Millisecond {
		t.Fatalf("stopping took %v, more than the fencing budget", took)
	}
	if d, at := l.Fenced(); d != expired || at == 0 {
		t.Fatalf("the lease file says fenced for %d at %d, want for %d", d, at, expired)
	}
	if l.WatchdogSeen() == 0 {
		t.Fatal("the watchdog's polls are not recorded")
	}
}

func TestWatchdogExitsWhenIdleWithoutHandlerRunner(t *testing.T) {
	l, err := OpenLease(filepath.Join(t.TempDir(), "lease"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := &Watchdog{Lease: l, DataDir: t.TempDir(), Poll: time.Millisecond, Log: slog.New(slog.DiscardHandler), Idle: 20 * time.Millisecond}
	l.Disarm()
	if w.poll(context.Background()) {
		t.Fatal("exits while the handler-runner was just seen")
	}
	l.Arm(Now().Add(-time.Second))
	time.Sleep(30 * time.Millisecond)
	if w.poll(context.Background()) {
		t.Fatal("exits at the poll that fences")
	}
	if !w.poll(context.Background()) {
		t.Fatal("does not exit: fenced, and no handler-runner for longer than Idle")
	}
	l.Arm(Now().Add(time.Hour))
	time.Sleep(30 * time.Millisecond)
	if w.poll(context.Background()) {
		t.Fatal("exits with an armed lease to guard")
	}
}

func TestPostmasterIgnoresAReusedPID(t *testing.T) {
	dir := t.TempDir()
	// Our own PID, working elsewhere: not the data directory's postmaster.
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, err := Postmaster(dir); err != nil || pid != 0 {
		t.Fatalf("Postmaster = %d, %v; want 0 for a PID working elsewhere", pid, err)
	}
}
