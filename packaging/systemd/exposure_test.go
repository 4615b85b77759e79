package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// exposureBound is the highest `systemd-analyze security` exposure each
// shipped unit may have (issue 13): Consul and Syncthing, which need no
// power over the node, 5.0; the daemons that run PostgreSQL and drive
// systemd, and any unit added here without a bound of its own, 6.0.
var exposureBound = map[string]float64{
	"understudy-consul.service":    5.0,
	"understudy-syncthing.service": 5.0,
}

const defaultExposureBound = 6.0

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)

// exposure is systemd-analyze's overall exposure of the unit file path.
func exposure(t *testing.T, path string) float64 {
	t.Helper()
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=true %s: %v\n%s", path, err, out)
	}
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security %s printed no overall exposure:\n%s", path, out)
	}
	v, err := strconv.ParseFloat(string(m[2]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUnitsExposure keeps every unit in this directory, as shipped and as
// cluster start renders it for a node under /tmp (PrivateTmp= off), at or
// below its exposure bound, measured by systemd's own analyzer.
func TestUnitsExposure(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("no systemd-analyze: apt-get install -y systemd (make deps does)")
	}
	units, err := filepath.Glob("*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units here: %v", err)
	}
	dir := t.TempDir()
	for _, u := range units {
		bound, ok := exposureBound[u]
		if !ok {
			bound = defaultExposureBound
		}
		name := strings.TrimSuffix(u, ".service")
		argv := []string{"/tmp/n/bin/" + name, "--config", "/tmp/n/understudy.hcl"}
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		var writable []string
		if strings.Contains(string(b), "\nReadWritePaths=") {
			writable = []string{"/tmp/n"}
		}
		rendered, err := Unit(name, Spec{Argv: argv, Writable: writable})
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, u)
		if err := os.WriteFile(tmp, rendered, 0o644); err != nil {
			t.Fatal(err)
		}
		for what, path := range map[string]string{"shipped": u, "rendered for a node under /tmp": tmp} {
			got := exposure(t, path)
			t.Logf("%s (%s): exposure %.1f, bound %.1f", u, what, got, bound)
			if got > bound {
				out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", path).CombinedOutput()
				t.Errorf("%s (%s): exposure %.1f, above its bound %.1f:\n%s", u, what, got, bound, out)
			}
		}
	}
}
