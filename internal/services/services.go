package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/understudy-ha/understudy/internal/config"
)

// Status is whether a service runs, with what its backend said about it.
type Status struct {
	Running bool
	// Detail is the unit's state ("active", "failed"), the status
	// command's exit code and last line of output, or for a supervised
	// process "running, pid 1234, restarts 2" or "not running: exited 3
	// at 2025-01-02T15:04:05Z".
	Detail string
}

// Manager runs services through the backend each one's configuration names.
// The systemd connection is opened on first use, so a node without systemd
// services never needs D-Bus. A supervised process (config.Service.Command)
// is supervised by the Manager that started it, until Stop or Close; its
// Status can be asked of any Manager with the same state directory.
type Manager struct {
	log      *slog.Logger
	stateDir string // "" = supervised services are an error
	netns    string // the network namespace supervised processes start in; "" = ours

	mu      sync.Mutex
	systemd *dbus.Conn
	sups    map[string]*supervisor // supervised services, by name
	ops     map[string]*sync.Mutex // serialises Start and Stop per name
}

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets where a Manager logs what it does on its own: the
// restarts of supervised processes. The default is slog.Default(). Give it
// the caller's logger, with the caller's component and node attributes.
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) {
		if l != nil {
			m.log = l
		}
	}
}

// WithStateDir sets the directory of supervised processes' pid, state,
// lock and log files, such as <node.data_dir>/services. Every Manager that
// asks about the same services, in any process, must be given the same
// directory: it is how the check-runner sees what the handler-runner runs.
// It is created on the first Start or Stop.
func WithStateDir(dir string) Option { return func(m *Manager) { m.stateDir = dir } }

// WithNetns starts supervised processes in the network namespace at path
// (/run/netns/NAME) rather than the caller's: the dev cluster's nodes are
// hosts of their own. What they start in turn stays in it.
func WithNetns(path string) Option { return func(m *Manager) { m.netns = path } }

// NewManager returns a Manager; Close releases what it holds.
func NewManager(opts ...Option) *Manager {
	m := &Manager{log: slog.Default(), sups: map[string]*supervisor{}, ops: map[string]*sync.Mutex{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Close releases the D-Bus connection and ends the supervision of every
// supervised process WITHOUT stopping the processes: they keep running,
// their pid and state files stay, and the next Manager with the same state
// directory adopts each one in Start (supervising it by polling, since it
// is not its child) or stops it in Stop.
//
// Why: Close runs when the handler-runner exits, and a restart of the
// handler-runner (an upgrade, a crash) on the active node must not take the
// active-only workload down with it. A process left unsupervised until the
// next handler-runner starts is the lesser harm: the node is then not
// managed at all, and the new handler-runner's reconcile either adopts the
// process (active) or stops it (standby). Losing the active role is not a
// reason to rely on Close: the daemon's fencing calls Stop before it exits.
// Note that systemd kills every process of a unit's cgroup when it stops
// or restarts the unit unless the unit says KillMode=process; the processes
// survive a handler-runner restart only where that is configured.
//
// Call Close after every Start and Stop has returned.
func (m *Manager) Close() {
	m.mu.Lock()
	sups := m.sups
	m.sups = map[string]*supervisor{}
	if m.systemd != nil {
		m.systemd.Close()
		m.systemd = nil
	}
	m.mu.Unlock()
	for _, s := range sups {
		s.end()
		s.lock.Close()
		if pid := s.pid(); pid != 0 {
			m.log.Info("left service running unsupervised", "service", s.svc.Name, "pid", pid)
		} else {
			m.log.Info("left service stopped: supervision ended before its restart", "service", s.svc.Name)
		}
	}
}

// Status asks whether svc runs. For a supervised process it reads the
// state directory and /proc, so any Manager with the same state directory,
// in any process, gets the same answer as the one that supervises it.
func (m *Manager) Status(ctx context.Context, svc config.Service) (Status, error) {
	if len(svc.Command) > 0 {
		return m.processStatus(svc)
	}
	if svc.SystemdUnit != "" {
		return m.unitStatus(ctx, svc.SystemdUnit)
	}
	out, code, err := run(ctx, svc.Status)
	if err != nil {
		return Status{}, fmt.Errorf("status of service %s: %w", svc.Name, err)
	}
	detail := fmt.Sprintf("status command exited %d", code)
	if out != "" {
		detail += ": " + out
	}
	return Status{Running: code == 0, Detail: detail}, nil
}

// Start starts svc and returns once its backend has accepted the start. A
// supervised process has started once Start returns nil, and is restarted
// whenever it exits until Stop or Close; Start of a supervised service that
// runs already is a no-op.
func (m *Manager) Start(ctx context.Context, svc config.Service) error {
	if len(svc.Command) > 0 {
		return m.startProcess(svc)
	}
	if svc.SystemdUnit != "" {
		return m.unitJob(ctx, svc.SystemdUnit, "start")
	}
	return runOK(ctx, "start", svc)
}

// Stop stops svc and returns once it has stopped. A supervised process is no
// longer restarted, and its process group gets SIGTERM, then SIGKILL when
// ctx is done or after 10s, whichever is first; Stop returns once no
// process of the group lives. It also stops a process that a previous
// Manager left running (see Close). Stop of a stopped service is a no-op.
func (m *Manager) Stop(ctx context.Context, svc config.Service) error {
	if len(svc.Command) > 0 {
		return m.stopProcess(ctx, svc)
	}
	if svc.SystemdUnit != "" {
		return m.unitJob(ctx, svc.SystemdUnit, "stop")
	}
	return runOK(ctx, "stop", svc)
}

func runOK(ctx context.Context, verb string, svc config.Service) error {
	argv := svc.Start
	if verb == "stop" {
		argv = svc.Stop
	}
	out, code, err := run(ctx, argv)
	if err != nil {
		return fmt.Errorf("%s service %s: %w", verb, svc.Name, err)
	}
	if code != 0 {
		return fmt.Errorf("%s service %s: %s exited %d: %s", verb, svc.Name, argv[0], code, out)
	}
	return nil
}

// run runs argv and returns its exit code and the last line of its output.
// err is set only when the command could not be run at all.
func run(ctx context.Context, argv []string) (lastLine string, code int, err error) {
	if len(argv) == 0 {
		return "", 0, errors.New("no command configured")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		code = exit.ExitCode()
	default:
		return "", 0, fmt.Errorf("run %s: %w", argv[0], err)
	}
	return lastNonEmptyLine(buf.String()), code, nil
}

func lastNonEmptyLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (m *Manager) conn(ctx context.Context) (*dbus.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.systemd != nil && m.systemd.Connected() {
		return m.systemd, nil
	}
	// The system bus, else (as root) systemd's private socket: a host
	// without a D-Bus daemon is still managed.
	c, err := dbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd over D-Bus (is systemd running on this host?): %w", err)
	}
	m.systemd = c
	return c, nil
}

func (m *Manager) unitStatus(ctx context.Context, unit string) (Status, error) {
	c, err := m.conn(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("status of unit %s: %w", unit, err)
	}
	p, err := c.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return Status{}, fmt.Errorf("status of unit %s: %w", unit, err)
	}
	state := strings.Trim(p.Value.String(), `"`)
	return Status{Running: state == "active", Detail: "unit " + state}, nil
}

// unitJob starts or stops a unit and waits for systemd's job to finish, so a
// caller that stops a service before promoting another node knows it stopped.
func (m *Manager) unitJob(ctx context.Context, unit, verb string) error {
	c, err := m.conn(ctx)
	if err != nil {
		return fmt.Errorf("%s unit %s: %w", verb, unit, err)
	}
	done := make(chan string, 1)
	if verb == "start" {
		_, err = c.StartUnitContext(ctx, unit, "replace", done)
	} else {
		_, err = c.StopUnitContext(ctx, unit, "replace", done)
	}
	if err != nil {
		return fmt.Errorf("%s unit %s: %w", verb, unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("%s unit %s: systemd job ended %q; see journalctl -u %s", verb, unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s unit %s: %w", verb, unit, ctx.Err())
	}
}
