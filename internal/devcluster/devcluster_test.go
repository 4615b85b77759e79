package devcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/devcluster"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestDevUpStatusDemoDown is what a new user does: `dev up`, `dev status -o
// json`, `dev demo` (a node killed, the failover, rows intact, the node
// back), `dev down`, with nothing left running.
func TestDevUpStatusDemoDown(t *testing.T) {
	testenv.RequireIntegration(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not found; install it with: apt-get install -y haproxy (make deps does)")
	}
	bin := testenv.Understudy(t)
	dir := filepath.Join(testenv.TempDir(t, "dev"), "cluster")
	o := devcluster.Options{Understudy: bin, Consul: testenv.ConsulBinary(t), Syncthing: testenv.SyncthingBinary(t), Nodes: 3, Dir: dir}
	ctx := context.Background()
	s, err := devcluster.Up(ctx, o)
	if err != nil {
		// A failed up keeps the logs; they go before the directory does.
		logs, _ := filepath.Glob(filepath.Join(dir, "*", "services", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			t.Logf("%s:\n%s", l, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		t.Fatalf("dev up: %v", err)
	}
	t.Cleanup(func() {
		if s, err := devcluster.Load(dir); err == nil {
			_ = devcluster.Down(s, false)
		}
	})

	// dev status -o json, as a script reads it.
	out, err := exec.Command(bin, "dev", "status", "--dir", dir, "-o", "json").Output()
	if err != nil {
		t.Fatalf("dev status: %v", err)
	}
	var st devcluster.State
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("dev status -o json: %v\n%s", err, out)
	}
	if len(st.Nodes) != 3 || st.HAProxy.Frontend == "" || st.HAProxy.PID == 0 {
		t.Fatalf("dev status -o json: %s", out)
	}
	for _, n := range st.Nodes {
		p := n.PIDs
		if p.Consul == 0 || p.Postgres == 0 || p.CheckRunner == 0 || p.HandlerRunner == 0 || p.Syncthing == 0 || n.APIURL == "" || n.PostgresPort == 0 || n.Files["shared"] == "" {
			t.Fatalf("node %s in dev status: %+v", n.Name, n)
		}
	}

	var demo bytes.Buffer
	if err := devcluster.Demo(ctx, s, o, &demo); err != nil {
		hlog, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
		t.Fatalf("dev demo: %v\n%s\nhaproxy.log:\n%s", err, demo.String(), hlog)
	}
	t.Logf("dev demo:\n%s", demo.String())
	if !strings.Contains(demo.String(), "rows intact") || !strings.Contains(demo.String(), "is back, streaming from") {
		t.Fatalf("dev demo output: %s", demo.String())
	}

	final, err := devcluster.Load(dir) // the PIDs after the demo restarted a node
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "dev", "down", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("dev down: %v\n%s", err, out)
	}
	for _, n := range final.Nodes {
		for _, pid := range []int{n.PIDs.Consul, n.PIDs.Postgres, n.PIDs.CheckRunner, n.PIDs.HandlerRunner, final.HAProxy.PID} {
			if services.PIDAlive(pid) {
				t.Errorf("pid %d of %s still runs after dev down", pid, n.Name)
			}
		}
	}
	if _, err := devcluster.Load(dir); err == nil {
		t.Errorf("dev down left %s", dir)
	}
}
