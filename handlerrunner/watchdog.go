package handlerrunner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/services"
)

// watchdogStart bounds the wait for a new watchdog's first poll.
const watchdogStart = 5 * time.Second

// FenceDir is where a node keeps its lease file and its watchdog's pid,
// state and log files.
func FenceDir(cfg *config.Config) string { return fenceDir(cfg.Node.DataDir) }

func fenceDir(nodeDataDir string) string { return filepath.Join(nodeDataDir, "fence") }

// WatchdogPIDFile is where the watchdog of the node whose node.data_dir is
// nodeDataDir has its PID (its supervisor's pid file, named for the
// service).
func WatchdogPIDFile(nodeDataDir string) string {
	return filepath.Join(fenceDir(nodeDataDir), watchdogName+".pid")
}

const watchdogName = "watchdog"

// WatchdogService is the watchdog as the supervised program the
// handler-runner runs: `understudy watchdog` on the node's lease file and
// PostgreSQL data directory.
func WatchdogService(cfg *config.Config, understudy string) config.Service {
	return config.Service{Name: watchdogName, Command: []string{understudy, "watchdog",
		"--lease", filepath.Join(FenceDir(cfg), "lease"), "--pgdata", cfg.Postgres.DataDir,
		"--poll", cfg.Fencing().WatchdogPoll.String()}}
}

// openFence maps the lease file. A node whose PostgreSQL is not running
// cannot be taking writes: its lease is disarmed at once. One that runs
// keeps the lease as the last handler-runner left it, so a restart of the
// handler-runner on the active changes nothing until the rejoin decides.
func (r *Runner) openFence(log *slog.Logger) error {
	dir := FenceDir(r.cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fencing directory: %w", err)
	}
	l, err := fence.OpenLease(filepath.Join(dir, "lease"))
	if err != nil {
		return err
	}
	r.lease = l
	if pid, err := fence.Postmaster(r.pg.DataDir()); err == nil && pid == 0 {
		l.Disarm()
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the understudy binary for the watchdog: %w", err)
	}
	r.watchdog = WatchdogService(r.cfg, self)
	r.fenceSvc = services.NewManager(services.WithLogger(log), services.WithStateDir(dir))
	return nil
}

// startWatchdog starts the watchdog, or adopts the one a previous
// handler-runner left, and waits for it to poll.
func (r *Runner) startWatchdog(ctx context.Context) error {
	r.lease.HandlerBeat()
	if err := r.fenceSvc.Start(ctx, r.watchdog); err != nil {
		return fmt.Errorf("start the fencing watchdog: %w", err)
	}
	deadline := time.Now().Add(watchdogStart)
	for !r.watchdogAlive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("the fencing watchdog did not start within %v (lease: %s); see %s",
				watchdogStart, r.lease.Snapshot(), filepath.Join(FenceDir(r.cfg), "watchdog.log"))
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// beat tells the watchdog, every second, that the handler-runner lives:
// a watchdog with nothing to guard exits once it has not heard from the
// handler-runner for a while. Under systemd it also pings the unit's
// WatchdogSec=, so that a hung handler-runner is killed and restarted.
// That is recovery, not fencing: PostgreSQL stops at the lease's end
// whether or not systemd notices (the fencing watchdog above), and a
// restart on the active node changes nothing until the rejoin decides.
func (r *Runner) beat(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		r.lease.HandlerBeat()
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchdogAlive says whether the watchdog polled recently: a node without
// one may not become active.
func (r *Runner) watchdogAlive() bool {
	return fence.Now().Sub(r.lease.WatchdogSeen()) < 20*r.fencing.WatchdogPoll+time.Second
}

// stopWatchdog stops the watchdog as the handler-runner exits, unless the
// lease is still armed: then PostgreSQL may still take writes, and the
// watchdog stops it when the lease runs out.
func (r *Runner) stopWatchdog() {
	defer r.fenceSvc.Close()
	if r.lease.Deadline() != 0 {
		r.log.Warn("leaving the fencing watchdog running: the lease is still armed", "lease", r.lease.Snapshot())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.fenceSvc.Stop(ctx, r.watchdog); err != nil {
		r.log.Warn("cannot stop the fencing watchdog", "err", err)
	}
}
