package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/internal/netns"
)

const (
	// stopGrace is how long a process has between SIGTERM and SIGKILL when
	// the caller's context allows more.
	stopGrace = 10 * time.Second
	// killWait bounds the wait after SIGKILL: only a process stuck in the
	// kernel (uninterruptible I/O) outlives it.
	killWait = 5 * time.Second
	// pollInterval is how often a process that is not our child is looked
	// at: it cannot be waited for, only observed.
	pollInterval = 100 * time.Millisecond
)

// process is one run of a supervised program: our child, or one a previous
// Manager started and this one adopted from the pid file.
type process struct {
	pid   int
	start uint64 // /proc start time, 0 if unknown
	// pgid is the process group to signal, pid itself since Setpgid; 0
	// when an adopted process left its group, and only pid is signalled.
	pgid    int
	started time.Time // when this Manager started or adopted it
	// exited is closed once our child has been reaped, after state is
	// set; nil for an adopted process.
	exited chan struct{}
	state  *os.ProcessState
}

// spawn starts argv in a process group of its own, with output appended to
// logPath, in the network namespace at netnsPath unless it is "". Not
// through a shell: argv is what the operator wrote.
func spawn(argv []string, logPath, netnsPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// The child gets its own descriptor of the file, not a pipe to us: its
	// output must not depend on the daemon, which may restart under it.
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv(os.Environ())
	// Own group: Stop signals everything the program started, and a
	// Ctrl-C or signal aimed at the daemon's group does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := cmd.Start
	if netnsPath != "" {
		start = func() error { return netns.Do(netnsPath, cmd.Start) }
	}
	if err := start(); err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, pgid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	// Before Wait: an unreaped child's /proc entry stays, even if it
	// already exited.
	if st, err := procStat(p.pid); err == nil {
		p.start = st.start
	}
	go func() {
		_ = cmd.Wait() // the exit is in ProcessState
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

// childEnv is the daemon's environment without what systemd addressed to
// the daemon itself: with NOTIFY_SOCKET the program could report readiness
// or watchdog pings in the daemon's name, and LISTEN_* name sockets it
// does not have.
func childEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// adopt returns the process of a pid file that verify accepted.
func adopt(pid int, start uint64) *process {
	p := &process{pid: pid, start: start, started: time.Now()}
	if pg, err := syscall.Getpgid(pid); err == nil && pg == pid {
		p.pgid = pid
	}
	return p
}

// wait returns true when p has ended, false when stop is closed first.
func (p *process) wait(stop <-chan struct{}) bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return true
		case <-stop:
			return false
		}
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return false
		case <-t.C:
			if !p.alive() {
				return true
			}
		}
	}
}

// exit says how p ended, once wait returned true.
func (p *process) exit() string {
	if p.state == nil {
		return "ended (exit status unknown: adopted, not a child of this daemon)"
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	default:
		return fmt.Sprintf("exited %d", p.state.ExitCode())
	}
}

// groupLeft says whether processes remain in p's group after p itself has
// gone: children that outlived it.
func (p *process) groupLeft() bool {
	return p.pgid != 0 && groupAlive(p.pgid)
}

// terminate sends SIGTERM to p's group, SIGKILL when ctx is done or
// stopGrace has passed, and returns nil once no process of the group lives.
func (p *process) terminate(ctx context.Context) error {
	p.signal(syscall.SIGTERM)
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	if p.waitGone(ctx.Done(), grace.C) {
		return nil
	}
	return p.kill()
}

// kill sends SIGKILL to p's group and returns nil once it has gone.
func (p *process) kill() error {
	p.signal(syscall.SIGKILL)
	t := time.NewTimer(killWait)
	defer t.Stop()
	if p.waitGone(nil, t.C) {
		return nil
	}
	return fmt.Errorf("pid %d or its process group still there %v after SIGKILL (stuck in the kernel? see its state in /proc/%d/stat)",
		p.pid, killWait, p.pid)
}

func (p *process) signal(sig syscall.Signal) {
	if p.pgid != 0 {
		_ = syscall.Kill(-p.pgid, sig) // ESRCH: the group is gone already
		return
	}
	_ = syscall.Kill(p.pid, sig)
}

func (p *process) gone() bool {
	if p.pgid != 0 {
		return !groupAlive(p.pgid)
	}
	return !p.alive()
}

// alive says whether p's pid still names p: a live, non-zombie process with
// p's start time.
func (p *process) alive() bool {
	st, err := procStat(p.pid)
	return err == nil && st.live() && (p.start == 0 || st.start == p.start)
}

// PIDAlive says whether pid is a live process, not a zombie: what a
// process that is not one's child can be asked (a dev cluster's processes,
// read from their pid files).
func PIDAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, err := procStat(pid)
	return err == nil && st.live()
}

// waitGone polls until p is gone (true) or a or b delivers (false).
func (p *process) waitGone(a <-chan struct{}, b <-chan time.Time) bool {
	t := time.NewTicker(50 * time.Millisecond) // each look may read all of /proc
	defer t.Stop()
	for !p.gone() {
		select {
		case <-a:
			return p.gone()
		case <-b:
			return p.gone()
		case <-t.C:
		}
	}
	return true
}

// verify says whether pid is the live process rec describes, running
// argv0, and returns its start time; otherwise why not. Signal 0 and a
// state other than zombie say that pid lives; whose it is, is said by the
// start time when rec has one for this pid (a reused pid has another start
// time, and unlike the command line it does not change when the program
// rewrites its title or execs another program), else by the command line.
func verify(pid int, rec record, argv0 string) (start uint64, why string) {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) { // EPERM: alive, another user's
		return 0, fmt.Sprintf("pid %d is gone", pid)
	}
	st, err := procStat(pid)
	if err != nil || !st.live() {
		return 0, fmt.Sprintf("pid %d is gone", pid)
	}
	start = st.start
	if rec.PID == pid && rec.StartTime != 0 {
		if rec.BootID != "" && rec.BootID != bootID() {
			return 0, fmt.Sprintf("pid %d was recorded before the last boot", pid)
		}
		if start != rec.StartTime {
			return 0, fmt.Sprintf("pid %d is another process now", pid)
		}
		return start, ""
	}
	args, err := procCmdline(pid)
	if err != nil || !runs(args, argv0) {
		return 0, fmt.Sprintf("pid %d is another program now (%s)", pid, strings.Join(args, " "))
	}
	return start, ""
}

// runs says whether a command line is argv0's. The kernel runs a "#!"
// script as "interpreter [one arg] script ...", so the program may be the
// first, second or third word; a bare name was looked up in PATH, so only
// its base name can be compared.
func runs(cmdline []string, argv0 string) bool {
	for i := 0; i < len(cmdline) && i < 3; i++ {
		if cmdline[i] == argv0 || !strings.Contains(argv0, "/") && filepath.Base(cmdline[i]) == argv0 {
			return true
		}
	}
	return false
}

// procInfo is what /proc/PID/stat says about a process.
type procInfo struct {
	state byte   // 'R', 'S', ..., 'Z' for a zombie
	ppid  int    // parent
	pgid  int    // process group
	start uint64 // clock ticks after boot
}

// live: a zombie or dying process has released everything but its pid.
func (st procInfo) live() bool { return st.state != 'Z' && st.state != 'X' }

func procStat(pid int) (procInfo, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, err
	}
	// "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses,
	// so the fields are counted from the last ')'.
	bad := fmt.Errorf("parse /proc/%d/stat", pid)
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, bad
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procInfo{}, bad
	}
	ppid, err0 := strconv.Atoi(f[1])                // field 4 of proc(5)
	pgid, err1 := strconv.Atoi(f[2])                // field 5
	start, err2 := strconv.ParseUint(f[19], 10, 64) // field 22
	if err0 != nil || err1 != nil || err2 != nil {
		return procInfo{}, bad
	}
	return procInfo{state: f[0][0], ppid: ppid, pgid: pgid, start: start}, nil
}

// WithChildren is pid and the live processes whose parent it is (a
// postmaster and its backends, to signal them all); nil when pid is 0.
func WithChildren(pid int) []int {
	if pid == 0 {
		return nil
	}
	out := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(child); err == nil && st.ppid == pid && st.live() {
			out = append(out, child)
		}
	}
	return out
}

// groupAlive says whether a live process is in group pgid. kill(-pgid, 0)
// alone also counts zombies, and orphans of the group wait as zombies until
// init reaps them, which some inits do only now and then.
func groupAlive(pgid int) bool {
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // kill said there is one
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(pid); err == nil && st.pgid == pgid && st.live() {
			return true
		}
	}
	return false
}

func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), nil
}

// bootID is the kernel's id of this boot: a pid and start time recorded
// before a reboot may name a different process after it.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
