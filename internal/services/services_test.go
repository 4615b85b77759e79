package services

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// The exec backend runs real commands: a service whose state is a file.
func TestExecBackend(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "running")
	svc := config.Service{
		Name:   "demo",
		Start:  []string{"touch", flag},
		Stop:   []string{"rm", "-f", flag},
		Status: []string{"sh", "-c", "test -e " + flag + " || { echo not running; exit 3; }"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := NewManager()
	defer m.Close()

	st, err := m.Status(ctx, svc)
	if err != nil || st.Running {
		t.Fatalf("before start: status %+v, err %v; want not running", st, err)
	}
	if !strings.Contains(st.Detail, "exited 3") || !strings.Contains(st.Detail, "not running") {
		t.Fatalf("before start: detail %q should give the exit code and output", st.Detail)
	}
	if err := m.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx, svc); err != nil || !st.Running {
		t.Fatalf("after start: status %+v, err %v; want running", st, err)
	}
	if err := m.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Fatalf("stop did not run: %v", err)
	}
}

func TestExecBackendErrors(t *testing.T) {
	ctx := context.Background()
	m := NewManager()
	_, err := m.Status(ctx, config.Service{Name: "x", Status: []string{"/nonexistent/status"}})
	if err == nil || !strings.Contains(err.Error(), "status of service x") {
		t.Fatalf("missing binary: err %v, want one naming the service", err)
	}
	err = m.Start(ctx, config.Service{Name: "y", Start: []string{"sh", "-c", "echo boom; exit 2"}})
	if err == nil || !strings.Contains(err.Error(), "exited 2: boom") {
		t.Fatalf("failing start: err %v, want exit code and output", err)
	}
}

func TestSystemdUnavailableIsAnError(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd runs here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewManager().Status(ctx, config.Service{Name: "u", SystemdUnit: "u.service"})
	if err == nil || !strings.Contains(err.Error(), "D-Bus") {
		t.Fatalf("err %v, want one that says systemd cannot be reached", err)
	}
}

func TestPIDAlive(t *testing.T) {
	if !PIDAlive(os.Getpid()) {
		t.Fatal("this test process is not alive")
	}
	for _, pid := range []int{0, -1, 1 << 30} {
		if PIDAlive(pid) {
			t.Errorf("PIDAlive(%d) = true", pid)
		}
	}
}
