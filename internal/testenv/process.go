package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long Stop waits after the polite signal before it
	// sends SIGKILL.
	stopGrace = 10 * time.Second
	// keepLines is how much of each process's output is kept for the tail.
	keepLines = 200
	// tailLines is how much of it is printed when a test fails.
	tailLines = 50
)

// Process is a real process started for a test. Its stdout and stderr go to
// t.Log line by line, prefixed with "[name]", and the last lines are kept so
// that a failing test ends with the tail of every process it started. It is
// stopped by its PID in t.Cleanup.
type Process struct {
	name    string
	cmd     *exec.Cmd
	stopSig syscall.Signal
	exited  chan struct{}
	waitErr error // written before exited is closed
	out     *output
}

// StartProcess starts cmd, which must not have Stdout or Stderr set, and
// stops it with SIGTERM (then SIGKILL) when the test ends.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p, err := startProcess(t, name, cmd, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startProcess(t testing.TB, name string, cmd *exec.Cmd, stopSig syscall.Signal) (*Process, error) {
	if cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, fmt.Errorf("start %s: Stdout and Stderr must be unset, testenv streams them", name)
	}
	// An *os.File rather than an io.Writer: exec then copies nothing itself,
	// so Wait returns when the process exits even while children it left
	// behind (a killed postmaster's backends) still hold the pipe.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// If the test binary dies without running its cleanups (a -timeout
	// panic, a SIGKILL), its processes die with it instead of holding ports
	// and directories for the next run.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	err = startOnPinnedThread(cmd)
	w.Close() // the child has its own copy; ours would keep the reader from EOF
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{
		name:    name,
		cmd:     cmd,
		stopSig: stopSig,
		exited:  make(chan struct{}),
		out:     &output{t: t, name: name, done: make(chan struct{}), pipe: r},
	}
	go p.out.read()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Logf("[%s] started pid %d: %s", name, p.PID(), strings.Join(cmd.Args, " "))
	t.Cleanup(func() {
		// Cleanup may still t.Log, but once the test has completed t.Log
		// panics, and the reader goroutine could outlive this function.
		p.out.silence()
		// The tail as the test ended, not the shutdown chatter that the
		// stop below adds to it.
		var tail string
		if t.Failed() {
			tail = fmt.Sprintf("last lines of [%s] (pid %d, %s) as the test ended:\n%s",
				name, p.PID(), p.status(), strings.Join(p.Tail(tailLines), "\n"))
		}
		if err := p.stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		p.out.finish(time.Second)
		if tail != "" {
			t.Log(tail)
		}
	})
	return p, nil
}

var (
	pinnedOnce sync.Once
	pinnedReqs = make(chan *pinnedStart)
)

type pinnedStart struct {
	cmd  *exec.Cmd
	done chan error
}

// startOnPinnedThread runs cmd.Start on one OS thread that lives as long as
// the test binary. Linux sends Pdeathsig when the thread that forked the
// child exits, not the process (golang.org/issue/27505), and a goroutine
// that ends while locked to its thread (network namespace helpers do that)
// takes the thread with it: any child forked from that thread would get
// SIGKILL in the middle of the test.
//
// The child therefore starts in the namespaces of that thread, the test
// binary's own. To run a process in another network namespace, start
// `ip netns exec NAME cmd...`: it enters the namespace and execs cmd in
// place, so the PID is still cmd's.
func startOnPinnedThread(cmd *exec.Cmd) error {
	pinnedOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked, so the thread never exits
			for req := range pinnedReqs {
				req.done <- req.cmd.Start()
			}
		}()
	})
	req := &pinnedStart{cmd: cmd, done: make(chan error, 1)}
	pinnedReqs <- req
	return <-req.done
}

// Name is the prefix of the process's lines in the test log.
func (p *Process) Name() string { return p.name }

// PID is the process ID: for PostgreSQL, the postmaster's.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait blocks until the process has exited and returns how it ended, as
// exec.Cmd.Wait reports it.
func (p *Process) Wait() error {
	<-p.exited
	return p.waitErr
}

// running reports whether the process has not exited yet.
func (p *Process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// status says how the process ended, or that it has not.
func (p *Process) status() string {
	select {
	case <-p.exited:
		if p.waitErr == nil {
			return "exit status 0"
		}
		return p.waitErr.Error()
	default:
		return "still running"
	}
}

// Tail returns the last n lines the process wrote (at most 200 are kept).
func (p *Process) Tail(n int) []string { return p.out.tail(n) }

// Kill sends SIGKILL and waits until the process is gone. Its children, if
// it has any, are left to notice on their own, as after a real crash.
func (p *Process) Kill() error {
	return p.signalAndWait(syscall.SIGKILL, stopGrace)
}

// Stop asks the process to exit with its stop signal (SIGTERM unless the
// tool needs another), waits up to 10s, then kills it.
func (p *Process) Stop() error { return p.stop() }

func (p *Process) stop() error {
	if err := p.signalAndWait(p.stopSig, stopGrace); err == nil {
		return nil
	}
	p.out.logf("did not exit within %v of %v; sending SIGKILL", stopGrace, p.stopSig)
	return p.Kill()
}

// signalAndWait signals the process through os.Process, which holds a pidfd
// on Linux, so a signal can never reach another process that reused the PID
// after this one was reaped.
func (p *Process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s (pid %d): send %v: %w", p.name, p.PID(), sig, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running %v after %v", p.name, p.PID(), timeout, sig)
	}
}

// output streams a process's lines to t.Log and keeps the last of them.
type output struct {
	t    testing.TB
	name string
	pipe *os.File
	done chan struct{} // closed when read returns

	mu    sync.Mutex
	lines []string // ring of at most keepLines
	next  int      // where the next line goes once the ring is full
	quiet bool     // no more t.Log: the test is ending
}

func (o *output) read() {
	defer close(o.done)
	sc := bufio.NewScanner(o.pipe)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		o.add(sc.Text())
	}
	// A line longer than 1 MiB ends the scan; keep draining so the
	// process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, o.pipe)
}

func (o *output) add(line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.lines) < keepLines {
		o.lines = append(o.lines, line)
	} else {
		o.lines[o.next] = line
		o.next = (o.next + 1) % keepLines
	}
	if !o.quiet {
		o.t.Logf("[%s] %s", o.name, line)
	}
}

// logf writes a line of testenv's own about the process, marked as such.
func (o *output) logf(format string, args ...any) {
	o.add("testenv: " + fmt.Sprintf(format, args...))
}

func (o *output) silence() {
	o.mu.Lock()
	o.quiet = true
	o.mu.Unlock()
}

// finish waits a little for the last lines, then closes the pipe, which
// ends read even when the process's orphaned children still hold it.
func (o *output) finish(timeout time.Duration) {
	select {
	case <-o.done:
	case <-time.After(timeout):
	}
	o.pipe.Close()
	<-o.done
}

func (o *output) tail(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ordered := append(append([]string(nil), o.lines[o.next:]...), o.lines[:o.next]...)
	if n < len(ordered) {
		ordered = ordered[len(ordered)-n:]
	}
	return ordered
}
