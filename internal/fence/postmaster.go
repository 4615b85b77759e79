package fence

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/internal/services"
)

// Postmaster is the PID of the postmaster running in dataDir, 0 when none
// runs.
func Postmaster(dataDir string) (int, error) {
	pid, running, err := PostmasterPID(dataDir)
	if !running {
		return 0, err
	}
	return pid, nil
}

// PostmasterPID reads postmaster.pid and says whether that process lives.
// A pid file left by a crash is "not running", and so is one whose PID now
// belongs to a process working elsewhere than in the data directory (a
// postmaster's working directory is its data directory). pid is the file's,
// running or not; 0 without a file.
func PostmasterPID(dataDir string) (pid int, running bool, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read postmaster.pid of %s: %w", dataDir, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err = strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		// The postmaster writes the file in one go; a torn read is a
		// postmaster starting this very moment.
		return 0, false, fmt.Errorf("postmaster.pid of %s starts with %q, not a PID; is a postmaster starting?", dataDir, first)
	}
	if !services.PIDAlive(pid) {
		return pid, false, nil
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd"); err == nil {
		if want, err := filepath.EvalSymlinks(dataDir); err == nil && cwd != want {
			return pid, false, nil
		}
	}
	return pid, true, nil
}

// Quit makes the postmaster in dataDir refuse writes as fast as PostgreSQL
// allows: SIGQUIT, its immediate shutdown, which makes every backend exit at
// once without acknowledging anything more, then waits until the
// postmaster is gone. It sends SIGKILL if the postmaster outlives ctx
// (PostgreSQL itself kills backends that ignore SIGQUIT for 5 s). It returns
// the PID it stopped, 0 when none ran. A SIGSTOPped postmaster is sent
// SIGCONT too: a paused process holds its signals.
func Quit(ctx context.Context, dataDir string) (int, error) {
	pid, err := Postmaster(dataDir)
	if err != nil || pid == 0 {
		return 0, err
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return pid, fmt.Errorf("signal postmaster %d of %s: %w", pid, dataDir, err)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for services.PIDAlive(pid) {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return pid, fmt.Errorf("postmaster %d of %s did not exit on SIGQUIT in time; sent SIGKILL: %w", pid, dataDir, ctx.Err())
		case <-t.C:
		}
	}
	return pid, nil
}
