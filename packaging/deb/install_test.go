package deb

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
)

// TestDebInstallStartRemovePurge installs the package with apt-get on a
// SystemdHost whose / is an overlay of the machine's (the machine's own /
// is never written), creates a cluster with `cluster start` from the
// installed binaries, then removes and purges the package and checks what
// each leaves, as Debian policy has it.
func TestDebInstallStartRemovePurge(t *testing.T) {
	p := deb(t)
	testenv.RequireIntegration(t)
	_, hadPackage := os.Stat("/usr/lib/understudy")
	dir := testenv.TempDir(t, "deb")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, filepath.Base(p))
	copyFile(t, p, pkg)
	const addr = "127.0.0.91"
	ports := testenv.FreePortsOn(t, addr, 7) // consul https, serf, server; postgres; api; syncthing; its api
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "understudy.hcl")
	hcl := fmt.Sprintf(`cluster { name = "deb" }
node {
  name    = "d1"
  address = %q
}
consul {
  scheme  = "https"
  address = "%s:%d"
}
postgres { port = %d }
api { listen = "%s:%d" }
syncthing {
  port     = %d
  api_port = %d
}
files "shared" { path = %q }
`, addr, addr, ports[0], ports[3], addr, ports[4], ports[5], ports[6], shared)
	if err := os.WriteFile(conf, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}

	h := testenv.BootSystemdOverlay(t, "deb")
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", pkg)
	if _, err := os.Stat("/usr/lib/understudy"); err == nil && hadPackage != nil {
		t.Fatal("the package reached the machine's own /usr/lib/understudy")
	}
	// What postinst made, and no unit enabled.
	h.Run(t, "getent", "passwd", lifecycle.ConsulUser)
	if got := strings.TrimSpace(h.Run(t, "stat", "-c", "%U %a", "/var/lib/understudy/consul")); got != lifecycle.ConsulUser+" 700" {
		t.Fatalf("/var/lib/understudy/consul: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(h.UnitDir(), "*", "understudy-*")); len(left) > 0 {
		t.Fatalf("the package enabled units: %v", left)
	}

	h.Run(t, "install", "-m", "0644", conf, "/etc/understudy/understudy.hcl")
	out := h.Run(t, "/usr/bin/understudy", "cluster", "start", "--processes", "systemd",
		"--consul-serf-port", strconv.Itoa(ports[1]), "--consul-server-port", strconv.Itoa(ports[2]))
	t.Logf("cluster start:\n%s", out)
	// The units run the installed programs; Consul as its own user.
	for unit, bin := range map[string]string{
		lifecycle.ConsulProcess:        "/usr/lib/understudy/bin/consul",
		lifecycle.SyncthingProcess:     "/usr/lib/understudy/bin/syncthing",
		lifecycle.CheckRunnerProcess:   "/usr/bin/understudy",
		lifecycle.HandlerRunnerProcess: "/usr/bin/understudy",
	} {
		exec, err := h.Property(unit+".service", "ExecStart")
		if err != nil || !strings.Contains(exec, "path="+bin+" ") {
			t.Errorf("%s runs %q (%v), want %s", unit, exec, err, bin)
		}
		if st, _ := h.Property(unit+".service", "ActiveState"); st != "active" {
			t.Errorf("%s is %s\n%s", unit, st, h.Journal(unit+".service", 30))
		}
	}
	pid, _ := h.Property(lifecycle.ConsulProcess+".service", "MainPID")
	if user := strings.TrimSpace(h.Run(t, "ps", "-o", "user=", "-p", pid)); user != lifecycle.ConsulUser {
		t.Errorf("the Consul agent runs as %q, want %s", user, lifecycle.ConsulUser)
	}
	if t.Failed() {
		t.FailNow()
	}

	// remove: the node stopped (prerm), its data, the user and the
	// configuration left.
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q", "understudy")
	for _, unit := range lifecycle.ProcessNames {
		if st, _ := h.Property(unit+".service", "ActiveState"); st == "active" {
			t.Errorf("after remove %s is still active", unit)
		}
	}
	for _, f := range []string{"/var/lib/understudy/cluster.json", "/etc/understudy/understudy.hcl"} {
		h.Run(t, "test", "-e", f)
	}
	h.Run(t, "getent", "passwd", lifecycle.ConsulUser)
	if _, err := h.Command(t.Context(), "test", "-e", "/usr/bin/understudy").CombinedOutput(); err == nil {
		t.Error("after remove /usr/bin/understudy is still there")
	}

	// purge: the data, the user, the configuration and the units cluster
	// start wrote gone.
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "understudy")
	for _, f := range []string{"/var/lib/understudy", "/var/log/understudy", "/etc/understudy", "/etc/systemd/system/understudy-consul.service"} {
		if _, err := h.Command(t.Context(), "test", "-e", f).CombinedOutput(); err == nil {
			t.Errorf("after purge %s is still there", f)
		}
	}
	if _, err := h.Command(t.Context(), "getent", "passwd", lifecycle.ConsulUser).CombinedOutput(); err == nil {
		t.Errorf("after purge the user %s is still there", lifecycle.ConsulUser)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
