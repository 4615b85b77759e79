package devcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// alive says whether pid is a live process (not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	j := bytes.LastIndexByte(stat, ')')
	return j < 0 || j+2 >= len(stat) || (stat[j+2] != 'Z' && stat[j+2] != 'X')
}

// stop sends sig to pid and waits up to grace for it to go, then kills it.
func stop(pid int, sig syscall.Signal, grace time.Duration) {
	if !alive(pid) {
		return
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling a process we do not own
	}
	if alive(pid) {
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
	if err != nil || !alive(pid) {
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
	if err != nil || !alive(pid) {
		return 0
	}
	return pid
}
