package services

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestSystemdUnitBackend: against a real systemd, InstallUnit leaves a unit
// enabled and not started; Start and Stop wait for systemd's jobs and
// Status follows them; a unit that cannot start is an error naming
// journalctl; RemoveUnit leaves nothing behind, and removing it again is
// no error. It runs on a testenv.SystemdHost, where the Manager finds
// systemd as on any host (no D-Bus daemon there: its private socket).
func TestSystemdUnitBackend(t *testing.T) {
	if !testenv.InsideSystemdHost() {
		testenv.BootSystemd(t, "units").RunTest(t)
		return
	}
	m := NewManager()
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	show := func(unit, prop string) string {
		out, err := exec.Command("systemctl", "show", "--value", "-p", prop, unit).CombinedOutput()
		if err != nil {
			t.Fatalf("systemctl show %s: %v: %s", unit, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	const name = "understudy-test.service"
	unit := "[Service]\nExecStart=/bin/sleep 600\n\n[Install]\nWantedBy=multi-user.target\n"
	if err := m.InstallUnit(ctx, UnitDir, name, []byte(unit)); err != nil {
		t.Fatal(err)
	}
	if st := show(name, "UnitFileState"); st != "enabled" {
		t.Fatalf("after InstallUnit: UnitFileState %q, want enabled", st)
	}
	svc := config.Service{Name: "test", SystemdUnit: name}
	if st, err := m.Status(ctx, svc); err != nil || st.Running {
		t.Fatalf("installed, not started: %+v %v", st, err)
	}
	if err := m.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx, svc); err != nil || !st.Running || st.Detail != "unit active" {
		t.Fatalf("after Start: %+v %v", st, err)
	}
	pid, _ := strconv.Atoi(show(name, "MainPID"))
	if err := m.Stop(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// Dead, or a zombie: systemd may send the end of the job before it
	// has reaped the process.
	if PIDAlive(pid) {
		t.Fatalf("the unit's process %d lives after Stop returned", pid)
	}
	if st, err := m.Status(ctx, svc); err != nil || st.Running {
		t.Fatalf("after Stop: %+v %v", st, err)
	}

	broken := config.Service{Name: "broken", SystemdUnit: "understudy-broken.service"}
	if err := m.InstallUnit(ctx, UnitDir, broken.SystemdUnit, []byte("[Service]\nType=oneshot\nExecStart=/bin/false\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, broken); err == nil || !strings.Contains(err.Error(), "journalctl -u understudy-broken.service") {
		t.Fatalf("Start of a unit that fails: %v, want an error naming journalctl", err)
	}

	if err := m.Start(ctx, svc); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name, broken.SystemdUnit} {
		if err := m.RemoveUnit(ctx, UnitDir, n); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(UnitDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still in %s: %v", n, UnitDir, err)
		}
		if st := show(n, "LoadState"); st != "not-found" {
			t.Fatalf("after RemoveUnit %s: LoadState %q, want not-found", n, st)
		}
		if st := show(n, "ActiveState"); st != "inactive" {
			t.Fatalf("after RemoveUnit %s: ActiveState %q, want inactive", n, st)
		}
		if err := m.RemoveUnit(ctx, UnitDir, n); err != nil {
			t.Fatalf("RemoveUnit of a removed unit: %v", err)
		}
	}
	if wants, _ := os.ReadDir(filepath.Join(UnitDir, "multi-user.target.wants")); len(wants) != 0 {
		t.Fatalf("multi-user.target.wants keeps %d links after RemoveUnit", len(wants))
	}
}
