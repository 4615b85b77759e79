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
	"sync"
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

	// The demo runs once, on the hosts `make demo` makes as root (netns
	// auto); its steps do not depend on the network, and the loopback
	// cluster's minute goes to the rolling restart instead.
	if netns == "on" {
		var demo bytes.Buffer
		if err := devcluster.Demo(ctx, s, o, &demo); err != nil {
			hlog, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
			t.Fatalf("dev demo: %v\n%s\nhaproxy.log:\n%s", err, demo.String(), hlog)
		}
		t.Logf("dev demo:\n%s", demo.String())
		if !strings.Contains(demo.String(), "rows intact") || !strings.Contains(demo.String(), "is back, streaming from") {
			t.Fatalf("dev demo output: %s", demo.String())
		}
	}
	testSwitchoverThroughHAProxy(t, bin, dir)
	if netns == "off" {
		testRollingRestartThroughHAProxy(t, bin, dir)
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

// testSwitchoverThroughHAProxy moves the active role with the CLI, as an
// operator would through the profile testHAProxyConfigCommand saved, and
// checks that a client of the HAProxy the generator configured reaches the
// new active's PostgreSQL afterwards, with every row written before.
func testSwitchoverThroughHAProxy(t *testing.T, bin, dir string) {
	ctx := context.Background()
	s, err := devcluster.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := devcluster.WaitHealthy(ctx, s, 2*time.Minute); err != nil {
		t.Fatalf("before the switchover: %v", err)
	}
	a, err := devcluster.Active(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	target := s.Nodes[(a+1)%len(s.Nodes)]
	write := func(id int) (host string, port int, err error) {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		conn, err := pgx.Connect(wctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", s.HAProxy.Frontend))
		if err != nil {
			return "", 0, err
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(wctx, "create table if not exists switched (id int primary key)"); err != nil {
			return "", 0, err
		}
		if _, err := conn.Exec(wctx, "insert into switched values ($1) on conflict do nothing", id); err != nil {
			return "", 0, err
		}
		err = conn.QueryRow(wctx, "select coalesce(host(inet_server_addr()), ''), coalesce(inet_server_port(), 0)").Scan(&host, &port)
		return host, port, err
	}
	addr := func(n devcluster.Node) string { return fmt.Sprintf("%s:%d", n.PostgresHost, n.PostgresPort) }
	if host, port, err := write(1); err != nil || fmt.Sprintf("%s:%d", host, port) != addr(s.Nodes[a]) {
		t.Fatalf("write through haproxy before the switchover reached %s:%d, not the active %s (%s): %v", host, port, s.Nodes[a].Name, addr(s.Nodes[a]), err)
	}
	if out, err := exec.Command(bin, "cluster", "set-active", target.Name, "--profile", "devtest").CombinedOutput(); err != nil {
		t.Fatalf("cluster set-active %s: %v\n%s", target.Name, err, out)
	}
	var seen string
	testenv.Eventually(t, 30*time.Second, func() error {
		host, port, err := write(2)
		seen = fmt.Sprintf("%s:%d", host, port)
		if err != nil {
			return err
		}
		if seen != addr(target) {
			return fmt.Errorf("haproxy sent the write to %s, not to %s's PostgreSQL (%s)", seen, target.Name, addr(target))
		}
		return nil
	})
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(wctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", s.HAProxy.Frontend))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(wctx, "select count(*) from switched").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the switchover to %s (%s), haproxy's active holds %d of the 2 rows: %v", target.Name, seen, n, err)
	}
	t.Logf("switchover %s -> %s: haproxy reaches %s", s.Nodes[a].Name, target.Name, seen)
}

// testRollingRestartThroughHAProxy sets a parameter PostgreSQL reads at
// start only and restarts every node for it (cluster restart --all
// --pending) while a client writes through HAProxy all along: the writes
// pause once, for the switchover, and no acknowledged row is lost.
func testRollingRestartThroughHAProxy(t *testing.T, bin, dir string) {
	ctx := context.Background()
	s, err := devcluster.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := devcluster.WaitHealthy(ctx, s, 2*time.Minute); err != nil {
		t.Fatalf("before the rolling restart: %v", err)
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--profile", "devtest")...).CombinedOutput()
		if err != nil {
			t.Fatalf("understudy %s: %v\n%s\n%s", strings.Join(args, " "), err, out, diagnostics(bin, s))
		}
		return string(out)
	}
	cli("cluster", "config", "set", "postgres.parameters.max_connections=120")

	dsn := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", s.HAProxy.Frontend)
	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, "create table if not exists rolling (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx)
	var mu sync.Mutex
	var acked []int
	var at []time.Time
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conn *pgx.Conn
		for id := 1; wctx.Err() == nil; id++ {
			if conn == nil {
				cctx, cancel := context.WithTimeout(wctx, time.Second)
				conn, _ = pgx.Connect(cctx, dsn)
				cancel()
			}
			if conn != nil {
				ectx, cancel := context.WithTimeout(wctx, time.Second)
				_, err := conn.Exec(ectx, "insert into rolling values ($1)", id)
				cancel()
				if err == nil {
					mu.Lock()
					acked, at = append(acked, id), append(at, time.Now())
					mu.Unlock()
				} else {
					conn.Close(ctx)
					conn = nil
				}
			}
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	defer func() { stop(); <-done }()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testenv.Eventually(t, 10*time.Second, func() error {
		if count() < 10 {
			return fmt.Errorf("%d rows through haproxy", count())
		}
		return nil
	})
	out := cli("cluster", "restart", "--all", "--pending")
	n := count()
	testenv.Eventually(t, 15*time.Second, func() error {
		if count() < n+10 {
			return fmt.Errorf("%d rows through haproxy after the restart", count()-n)
		}
		return nil
	})
	stop()
	<-done

	// The bound: the switchover (README: at most 1.34 s measured) and
	// HAProxy marking the new active up, with room for a busy machine.
	const bound = 5 * time.Second
	var gaps []time.Duration
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d > 500*time.Millisecond {
			gaps = append(gaps, d)
		}
	}
	if len(gaps) > 1 || (len(gaps) == 1 && gaps[0] > bound) {
		t.Errorf("writes through haproxy paused %v during the rolling restart; want one pause under %v\n%s", gaps, bound, out)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var have int
	if err := c.QueryRow(ctx, "select count(*) from rolling where id = any($1)", acked).Scan(&have); err != nil || have != len(acked) {
		t.Fatalf("the active holds %d of the %d rows acknowledged through haproxy: %v", have, len(acked), err)
	}
	var maxConn string
	if err := c.QueryRow(ctx, "show max_connections").Scan(&maxConn); err != nil || maxConn != "120" {
		t.Errorf("the active shows max_connections %q (%v) after the rolling restart, want 120", maxConn, err)
	}
	t.Logf("rolling restart through haproxy: %d rows, pauses over 500 ms %v\n%s", len(acked), gaps, out)
}

// diagnostics is what a failed step of a dev cluster test prints beside
// its own error: the cluster's recent history and every warning or error
// its handler-runners and check-runners logged, so that a failover nobody
// asked for can be told from a slow one.
func diagnostics(bin string, s *devcluster.State) string {
	var b strings.Builder
	out, err := exec.Command(bin, "cluster", "history", "--profile", "devtest").CombinedOutput()
	fmt.Fprintf(&b, "understudy cluster history (err %v):\n%s\n", err, out)
	for _, n := range s.Nodes {
		for _, d := range []string{"handler-runner", "check-runner"} {
			path := filepath.Join(n.Dir, "services", "understudy-"+d+".log")
			data, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(&b, "%s: %v\n", path, err)
				continue
			}
			lines := strings.Split(string(data), "\n")
			fmt.Fprintf(&b, "%s %s, warnings and errors:\n", n.Name, d)
			shown := 0
			for i := len(lines) - 1; i >= 0 && shown < 40; i-- {
				if strings.Contains(lines[i], "level=WARN") || strings.Contains(lines[i], "level=ERROR") {
					fmt.Fprintf(&b, "  %s\n", lines[i])
					shown++
				}
			}
		}
	}
	return b.String()
}
