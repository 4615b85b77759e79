package devcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/internal/services"
)

// startDetached starts argv in a session of its own with its output
// appended to logPath, and returns its PID without waiting for it: the
// process outlives the command that started it. It is reaped in the
// background while this process lives.
func startDetached(logPath string, env []string, argv ...string) (int, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	go func() { _ = cmd.Wait() }()
	return cmd.Process.Pid, nil
}

// stop sends sig to pid and waits up to grace for it to go, then kills it.
func stop(pid int, sig syscall.Signal, grace time.Duration) {
	if !services.PIDAlive(pid) {
		return
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for services.PIDAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a process we do not own
	}
	if services.PIDAlive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// postmasterPID is the PID in dataDir's postmaster.pid when it is alive.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || !services.PIDAlive(pid) {
		return 0
	}
	return pid
}

// pidFile is the live PID a pid file names, 0 otherwise.
func pidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !services.PIDAlive(pid) {
		return 0
	}
	return pid
}
