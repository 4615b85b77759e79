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
)

// Postmaster is the PID of the postmaster running in dataDir, 0 when none
// runs: no postmaster.pid, a PID that is gone, or a PID reused by a process
// working elsewhere (a postmaster's working directory is its data
// directory).
func Postmaster(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read postmaster.pid of %s: %w", dataDir, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("postmaster.pid of %s starts with %q, not a PID", dataDir, first)
	}
	if !alive(pid) {
		return 0, nil
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd"); err == nil {
		if want, err := filepath.EvalSymlinks(dataDir); err == nil && cwd != want {
			return 0, nil
		}
	}
	return pid, nil
}

// alive says whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name's closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
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
	for alive(pid) {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return pid, fmt.Errorf("postmaster %d of %s did not exit on SIGQUIT in time; sent SIGKILL: %w", pid, dataDir, ctx.Err())
		case <-t.C:
		}
	}
	return pid, nil
}
