package devcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/devcluster"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestDevUpStatusDemoDown is what a new user does: `dev up`, `dev status -o
// json`, `dev demo` (a node killed, the failover, rows intact, the node
// back), `dev down`, with nothing left running; on loopback, and with the
// nodes in network namespaces, where partitions and frozen daemons are
// tried too.
func TestDevUpStatusDemoDown(t *testing.T) {
	t.Run("loopback", func(t *testing.T) { testDev(t, "off") })
	t.Run("netns", func(t *testing.T) {
		testenv.RequireNetns(t)
		testDev(t, "on")
	})
}

func testDev(t *testing.T, netns string) {
	testenv.RequireIntegration(t)
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not found; install it with: apt-get install -y haproxy (make deps does)")
	}
	bin := testenv.Understudy(t)
	dir := filepath.Join(testenv.TempDir(t, "dev"), "cluster")
	o := devcluster.Options{Understudy: bin, Consul: testenv.ConsulBinary(t), Syncthing: testenv.SyncthingBinary(t), Nodes: 3, Dir: dir, Netns: netns}
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
		if p.Consul == 0 || p.Postgres == 0 || p.CheckRunner == 0 || p.HandlerRunner == 0 || p.ConsulWatcher == 0 || p.Syncthing == 0 || n.APIURL == "" || n.PostgresPort == 0 || n.Files["shared"] == "" {
			t.Fatalf("node %s in dev status: %+v", n.Name, n)
		}
	}

	testHAProxyConfigCommand(t, bin, &st)
	// The consul-watchers dev up runs: cluster status shows every node in
	// the majority, reaching the three servers.
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := exec.Command(bin, "cluster", "status", "--profile", "devtest").CombinedOutput()
		if err != nil {
			return fmt.Errorf("cluster status: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "partitions (partition_mode fence, minority_timeout 5s):") ||
			strings.Count(string(out), "reaches 3/3 servers") != 3 {
			return fmt.Errorf("cluster status shows no three nodes in the majority:\n%s", out)
		}
		return nil
	})

	var demo bytes.Buffer
	if err := devcluster.Demo(ctx, s, o, &demo); err != nil {
		hlog, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
		t.Fatalf("dev demo: %v\n%s\nhaproxy.log:\n%s", err, demo.String(), hlog)
	}
	t.Logf("dev demo:\n%s", demo.String())
	if !strings.Contains(demo.String(), "rows intact") || !strings.Contains(demo.String(), "is back, streaming from") {
		t.Fatalf("dev demo output: %s", demo.String())
	}

	if netns == "on" {
		if st.Net == nil || len(st.Net.Hosts) != 3 || st.Nodes[0].Netns == "" {
			t.Fatalf("dev status -o json shows no network namespaces: %s", out)
		}
		testFaults(t, bin, dir)
	}

	final, err := devcluster.Load(dir) // the PIDs after the demo restarted a node
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "dev", "down", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("dev down: %v\n%s", err, out)
	}
	for _, n := range final.Nodes {
		for _, pid := range []int{n.PIDs.Consul, n.PIDs.Postgres, n.PIDs.CheckRunner, n.PIDs.HandlerRunner, n.PIDs.ConsulWatcher, final.HAProxy.PID} {
			if services.PIDAlive(pid) {
				t.Errorf("pid %d of %s still runs after dev down", pid, n.Name)
			}
		}
	}
	if _, err := devcluster.Load(dir); err == nil {
		t.Errorf("dev down left %s", dir)
	}
	if final.Net != nil {
		list, _ := exec.Command("ip", "netns", "list").Output()
		for _, h := range final.Net.Hosts {
			if strings.Contains(string(list), h.NS) {
				t.Errorf("dev down left the network namespace %s", h.NS)
			}
		}
	}
}

// testFaults drives a dev cluster in network namespaces as an operator
// would, through the CLI: the active partitioned off (another node takes
// over, the old one's PostgreSQL takes no write once it has), healed; the
// active's daemons frozen (the same), thawed. Each time the cluster is
// whole again afterwards.
func testFaults(t *testing.T, bin, dir string) {
	ctx := context.Background()
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--dir", dir)...).CombinedOutput()
		if err != nil {
			t.Fatalf("understudy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, fault := range [][]string{{"partition"}, {"freeze", "--what", "daemons"}} {
		s, err := devcluster.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		a, err := devcluster.Active(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		old := s.Nodes[a]
		cli(append([]string{"dev", fault[0], old.Name}, fault[1:]...)...)
		if fault[0] == "partition" {
			if st := cli("dev", "status"); !strings.Contains(st, "partition: "+old.Name+" receives nothing from") {
				t.Fatalf("dev status after dev partition %s:\n%s", old.Name, st)
			}
		}
		var next int
		testenv.Eventually(t, 30*time.Second, func() error {
			b, err := devcluster.Active(ctx, s)
			if err != nil {
				return err
			}
			if b == a {
				return fmt.Errorf("%s is still active", old.Name)
			}
			next = b
			return nil
		})
		// Checked where the data is: once the new active answers, the
		// old one's PostgreSQL takes no write.
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(wctx, fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable&connect_timeout=2", old.PostgresHost, old.PostgresPort))
		if err == nil {
			_, err = conn.Exec(wctx, "create table if not exists fenced (id int)")
			conn.Close(wctx)
		}
		cancel()
		if err == nil {
			t.Fatalf("%s (%s) took a write after %s took over", old.Name, fault[0], s.Nodes[next].Name)
		}
		t.Logf("%s %s: %s took over; %s refuses writes (%v)", fault[0], old.Name, s.Nodes[next].Name, old.Name, err)
		if fault[0] == "partition" {
			// Its consul-watcher says so, asked by cluster status.
			testenv.Eventually(t, 15*time.Second, func() error {
				out, err := exec.Command(bin, "cluster", "status", "--profile", "devtest").CombinedOutput()
				if err != nil || !strings.Contains(string(out), "  "+old.Name+"  MINORITY since") {
					return fmt.Errorf("cluster status does not show %s in the minority (%v):\n%s", old.Name, err, out)
				}
				return nil
			})
		}
		if fault[0] == "partition" {
			cli("dev", "heal")
		} else {
			cli("dev", "thaw", old.Name)
		}
		if err := devcluster.WaitHealthy(ctx, s, 2*time.Minute); err != nil {
			t.Fatalf("after %s of %s was undone: %v", fault[0], old.Name, err)
		}
	}
}

// testHAProxyConfigCommand asks the running cluster, as an operator would
// through a profile, for its HAProxy configuration: the servers are those
// the dev cluster's own HAProxy runs with (the same generator).
func testHAProxyConfigCommand(t *testing.T, bin string, st *devcluster.State) {
	t.Setenv("UNDERSTUDY_PROFILES", filepath.Join(t.TempDir(), "profiles.json"))
	var nodes []string
	for _, n := range st.Nodes {
		nodes = append(nodes, strings.TrimPrefix(n.APIURL, "https://"))
	}
	if out, err := exec.Command(bin, "profile", "add", "devtest", "--nodes", strings.Join(nodes, ","),
		"--ca", st.CAFile, "--cert", st.OperatorCert, "--key", st.OperatorKey).CombinedOutput(); err != nil {
		t.Fatalf("profile add: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "haproxy-config", "--profile", "devtest", "--bind", st.HAProxy.Frontend).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy-config: %v\n%s", err, out)
	}
	running, err := os.ReadFile(st.HAProxy.Config)
	if err != nil {
		t.Fatal(err)
	}
	var servers int
	for _, line := range strings.Split(string(running), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server ") {
			servers++
			if !strings.Contains(string(out), line+"\n") {
				t.Errorf("haproxy-config --profile devtest lacks the dev cluster's %q:\n%s", line, out)
			}
		}
	}
	if servers != len(st.Nodes) {
		t.Errorf("the dev cluster's HAProxy has %d servers, want %d:\n%s", servers, len(st.Nodes), running)
	}
}
