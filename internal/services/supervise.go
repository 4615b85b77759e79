package services

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// Restart backoff of a supervised process: 1s, doubling to 30s, and back to
// 1s once a run lasted resetAfter. A program that fails at once costs a
// start every 30s, not a busy loop; one that crashes after a day of work is
// back within a second.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
	resetAfter = 60 * time.Second
)

// supervisor keeps one supervised service running until end.
type supervisor struct {
	m    *Manager
	svc  config.Service
	lock *os.File // NAME.lock, held while this supervisor exists
	// ctx is done when supervision ends; run returns and closes done.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	proc *process // nil while waiting to restart
	rec  record   // as last saved
}

// processStatus reads the files, never the Manager's memory, so that it
// answers the same in the daemon that supervises and in any other.
func (m *Manager) processStatus(svc config.Service) (Status, error) {
	if err := m.needStateDir(svc); err != nil {
		return Status{}, err
	}
	o, err := m.observe(svc)
	if err != nil {
		return Status{}, err
	}
	if o.running {
		return Status{Running: true, Detail: fmt.Sprintf("running, pid %d, restarts %d", o.pid, o.rec.Restarts)}, nil
	}
	return Status{Detail: "not running: " + o.why}, nil
}

// startProcess supervises svc: it adopts the live process of the pid file,
// or starts one. It returns the error of that first start (a missing or
// not executable program) rather than retrying a configuration mistake.
func (m *Manager) startProcess(svc config.Service) error {
	if err := m.needStateDir(svc); err != nil {
		return err
	}
	defer m.op(svc.Name)()
	m.mu.Lock()
	_, supervised := m.sups[svc.Name]
	m.mu.Unlock()
	if supervised {
		return nil
	}
	lock, err := m.lock(svc.Name)
	if err != nil {
		return fmt.Errorf("start service %s: %w", svc.Name, err)
	}
	o, err := m.observe(svc)
	if err != nil {
		lock.Close()
		return fmt.Errorf("start service %s: %w", svc.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{m: m, svc: svc, lock: lock, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	var p *process
	if o.running {
		p = adopt(o.pid, o.start)
		s.rec = o.rec
		s.rec.PID, s.rec.StartTime, s.rec.BootID = p.pid, p.start, bootID()
		if err := m.save(svc.Name, s.rec); err != nil {
			m.log.Warn("record adopted service", "service", svc.Name, "pid", p.pid, "err", err)
		}
		m.log.Info("adopted running service", "service", svc.Name, "pid", p.pid, "restarts", s.rec.Restarts)
		if o.rec.Argv != nil && !slices.Equal(o.rec.Argv, svc.Command) {
			// As systemd after daemon-reload: not a reason to interrupt it.
			m.log.Warn("adopted service runs another command than configured; the new one takes effect at its next restart",
				"service", svc.Name, "running", strings.Join(o.rec.Argv, " "), "configured", strings.Join(svc.Command, " "))
		}
	} else {
		if p, err = s.spawn(); err != nil {
			cancel()
			lock.Close()
			return fmt.Errorf("start service %s: %w", svc.Name, err)
		}
		m.log.Info("started service", "service", svc.Name, "pid", p.pid)
	}
	m.mu.Lock()
	m.sups[svc.Name] = s
	m.mu.Unlock()
	go s.run(p)
	return nil
}

// stopProcess ends the supervision of svc and stops its process group:
// SIGTERM, then SIGKILL when ctx is done or after stopGrace. It stops a
// process of the pid file too when this Manager did not start it (one a
// previous handler-runner left running).
func (m *Manager) stopProcess(ctx context.Context, svc config.Service) error {
	if err := m.needStateDir(svc); err != nil {
		return err
	}
	defer m.op(svc.Name)()
	m.mu.Lock()
	s := m.sups[svc.Name]
	delete(m.sups, svc.Name)
	m.mu.Unlock()
	var (
		p    *process
		rec  record
		lock *os.File
	)
	if s != nil {
		s.end() // first, so nothing restarts what is being stopped
		p, rec, lock = s.proc, s.rec, s.lock
	} else {
		var err error
		if lock, err = m.lock(svc.Name); err != nil {
			return fmt.Errorf("stop service %s: %w", svc.Name, err)
		}
		o, err := m.observe(svc)
		if err != nil || !o.running {
			lock.Close()
			if err != nil {
				return fmt.Errorf("stop service %s: %w", svc.Name, err)
			}
			return nil // stopped already: a no-op, files untouched
		}
		p, rec = adopt(o.pid, o.start), o.rec
	}
	defer lock.Close()
	pid := 0
	if p != nil {
		pid = p.pid
		if err := p.terminate(ctx); err != nil {
			return fmt.Errorf("stop service %s: %w", svc.Name, err)
		}
	}
	rec.PID, rec.StartTime, rec.BootID = 0, 0, ""
	rec.Exit, rec.ExitAt = "stopped", time.Now()
	if err := m.save(svc.Name, rec); err != nil {
		return fmt.Errorf("stop service %s: record the stop: %w", svc.Name, err)
	}
	m.note(svc.Name, "stopped")
	m.log.Info("stopped service", "service", svc.Name, "pid", pid)
	return nil
}

// op serialises Start and Stop of one service, so that a Stop that waits
// out a grace period does not hold up the other services.
func (m *Manager) op(name string) (unlock func()) {
	m.mu.Lock()
	mu, ok := m.ops[name]
	if !ok {
		mu = &sync.Mutex{}
		m.ops[name] = mu
	}
	m.mu.Unlock()
	mu.Lock()
	return mu.Unlock
}

// end stops supervising, leaving the process as it is, and returns once
// run has returned: after end, s.proc and s.rec no longer change.
func (s *supervisor) end() {
	s.cancel()
	<-s.done
}

func (s *supervisor) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// run waits for p to end and starts the program again, with backoff, until
// supervision ends.
func (s *supervisor) run(p *process) {
	defer close(s.done)
	name := s.svc.Name
	delay := minBackoff
	for {
		s.mu.Lock()
		s.proc = p
		s.mu.Unlock()
		if !p.wait(s.ctx.Done()) {
			return
		}
		exit, ran := p.exit(), time.Since(p.started)
		if p.groupLeft() {
			// Children outliving the program would pile up with each
			// restart and may hold its ports or files.
			s.m.log.Warn("service left processes behind; stopping them", "service", name, "pgid", p.pgid)
			if err := p.terminate(s.ctx); err != nil {
				s.m.log.Error("stop processes a service left behind", "service", name, "err", err)
			}
		}
		s.mu.Lock()
		s.proc = nil
		s.rec.PID, s.rec.StartTime, s.rec.BootID = 0, 0, ""
		s.rec.Exit, s.rec.ExitAt = exit, time.Now()
		rec := s.rec
		s.mu.Unlock()
		if err := s.m.save(name, rec); err != nil {
			s.m.log.Warn("record service exit", "service", name, "err", err)
		}
		s.m.note(name, "pid %d %s after %v", p.pid, exit, ran.Round(time.Millisecond))
		if ran >= resetAfter {
			delay = minBackoff
		}
		s.m.log.Warn("service exited; restarting", "service", name, "pid", p.pid, "exit", exit,
			"ran", ran.Round(time.Millisecond), "restart_in", delay)
		if p = s.restart(&delay); p == nil {
			return
		}
		s.mu.Lock()
		restarts := s.rec.Restarts
		s.mu.Unlock()
		s.m.log.Info("restarted service", "service", name, "pid", p.pid, "restarts", restarts)
	}
}

// restart waits out *delay and starts the program, doubling *delay after
// each wait, until it has started or supervision ends (nil).
func (s *supervisor) restart(delay *time.Duration) *process {
	for {
		t := time.NewTimer(*delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		*delay = min(*delay*2, maxBackoff)
		s.mu.Lock()
		s.rec.Restarts++
		s.mu.Unlock()
		p, err := s.spawn()
		if err == nil {
			return p
		}
		s.m.log.Warn("restart service", "service", s.svc.Name, "err", err, "retry_in", *delay)
	}
}

// spawn starts the program and records it. A process that cannot be
// recorded is killed at once: no Status and no later Manager could see it,
// and the next Start would run a second one beside it.
func (s *supervisor) spawn() (*process, error) {
	name, argv := s.svc.Name, s.svc.Command
	s.mu.Lock()
	rec := s.rec
	s.mu.Unlock()
	rec.Argv = argv
	s.m.note(name, "starting %s (restarts %d)", strings.Join(argv, " "), rec.Restarts)
	p, err := spawn(argv, s.m.path(name, logExt), s.m.netns)
	if err != nil {
		rec.PID, rec.StartTime, rec.BootID = 0, 0, ""
		rec.Exit, rec.ExitAt = "could not start: "+err.Error(), time.Now()
		s.m.note(name, "%s", rec.Exit)
		_ = s.m.save(name, rec) // best effort: err says it all
		s.setRec(rec)
		return nil, err
	}
	rec.PID, rec.StartTime, rec.BootID = p.pid, p.start, bootID()
	if err := s.m.save(name, rec); err != nil {
		if kerr := p.kill(); kerr != nil {
			s.m.log.Error("kill unrecorded service process", "service", name, "pid", p.pid, "err", kerr)
		}
		return nil, fmt.Errorf("record pid %d in %s: %w", p.pid, s.m.stateDir, err)
	}
	s.setRec(rec)
	return p, nil
}

func (s *supervisor) setRec(rec record) {
	s.mu.Lock()
	s.rec = rec
	s.mu.Unlock()
}
