package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/dbus"

	"github.com/understudy-ha/understudy/internal/config"
)

// Status is whether a service runs, with what its backend said about it.
type Status struct {
	Running bool
	// Detail is the unit's state ("active", "failed") or the status
	// command's exit code and last line of output.
	Detail string
}

// Manager runs services through the backend each one's configuration names.
// The systemd connection is opened on first use, so a node without systemd
// services never needs D-Bus.
type Manager struct {
	mu      sync.Mutex
	systemd *dbus.Conn
}

// NewManager returns a Manager; Close releases its D-Bus connection.
func NewManager() *Manager { return &Manager{} }

// Close releases the D-Bus connection, if one was opened.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.systemd != nil {
		m.systemd.Close()
		m.systemd = nil
	}
}

// Status asks whether svc runs.
func (m *Manager) Status(ctx context.Context, svc config.Service) (Status, error) {
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

// Start starts svc and returns once its backend has accepted the start.
func (m *Manager) Start(ctx context.Context, svc config.Service) error {
	if svc.SystemdUnit != "" {
		return m.unitJob(ctx, svc.SystemdUnit, "start")
	}
	return runOK(ctx, "start", svc)
}

// Stop stops svc and returns once it has stopped.
func (m *Manager) Stop(ctx context.Context, svc config.Service) error {
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
	c, err := dbus.NewSystemConnectionContext(ctx)
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
