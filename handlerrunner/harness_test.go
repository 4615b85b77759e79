package handlerrunner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/handlerrunner"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/replication/files"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// tnode is one node of a test cluster: its Consul server, its configuration
// and the two daemons, run as the real binary so that a test can SIGKILL a
// whole node.
type tnode struct {
	name    string
	consul  *testenv.Consul
	addr    string
	cfg     *config.Config
	cfgPath string
	inst    *postgres.Instance
	checks  *testenv.Process
	handler *testenv.Process
	watcher *testenv.Process
	// syncthing runs on a node with files blocks, as cluster start or join
	// would run it.
	syncthing *testenv.Process
	// host is the node's network namespace in a cluster of hosts
	// (newHostCluster); nil on loopback.
	host *testenv.Host
}

// tcluster is three nodes on loopback: a three-server Consul cluster, one
// server per node, PostgreSQL owned by each node's handler-runner.
type tcluster struct {
	t        testing.TB
	nodes    []*tnode
	bin      string
	profiles string // the CLI's profiles directory, made on first use
}

// extraHCL adds to node i's configuration: fields of its node, consul and
// postgres blocks, and blocks of its own.
type extraHCL struct {
	node, consul, postgres, blocks string
}

func newCluster(t testing.TB, extra func(i int) extraHCL) *tcluster {
	t.Helper()
	testenv.RequireIntegration(t)
	return startCluster(t, nil, extra)
}

// newHostCluster is newCluster on three hosts with network stacks of their
// own (testenv.Net), for partitions: PostgreSQL and the API on their
// default ports, trusting the hosts' subnet (the test writes from the
// bridge's address).
func newHostCluster(t testing.TB, extra func(i int) extraHCL) (*tcluster, *testenv.Net) {
	t.Helper()
	testenv.RequireNetns(t)
	net := testenv.NewNet(t, "n1", "n2", "n3")
	return startCluster(t, net, func(i int) extraHCL {
		var x extraHCL
		if extra != nil {
			x = extra(i)
		}
		subnet := net.Gate[:strings.LastIndexByte(net.Gate, '.')] + ".0/24"
		x.postgres += fmt.Sprintf("\n  pg_hba = [\"host all all %s trust\", \"host replication all %s trust\"]", subnet, subnet)
		return x
	}), net
}

func startCluster(t testing.TB, net *testenv.Net, extra func(i int) extraHCL) *tcluster {
	t.Helper()
	c := &tcluster{t: t, bin: testenv.Understudy(t)}
	var servers []*testenv.Consul
	if net != nil {
		servers = testenv.StartConsulClusterOn(t, net.Hosts)
	} else {
		servers = testenv.StartConsulCluster(t, 3)
	}
	for i, s := range servers {
		name := fmt.Sprintf("n%d", i+1)
		dir := testenv.TempDir(t, name)
		pgPort, apiPort := 5432, 8008
		if net == nil {
			pgPort, apiPort = testenv.FreePortOn(t, s.Addr), testenv.FreePortOn(t, s.Addr)
		}
		var x extraHCL
		if extra != nil {
			x = extra(i)
		}
		text := fmt.Sprintf(`cluster { name = "t" }
node {
  name     = %q
  address  = %q
  data_dir = %q
  %s
}
consul {
  address = %q
  %s
}
postgres {
  port = %d
  %s
}
checks { interval = "1s" }
api    { listen = "%s:%d" }
logging { dir = %q }
%s
`, name, s.Addr, dir, x.node, s.HTTPAddr, x.consul, pgPort, x.postgres, s.Addr, apiPort, filepath.Join(dir, "log"), x.blocks)
		path := filepath.Join(dir, "understudy.hcl")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("configuration of %s: %v", name, err)
		}
		n := &tnode{name: name, consul: s, addr: s.Addr, cfg: cfg, cfgPath: path,
			inst: postgres.NewInstance(cfg.Postgres, name, slog.New(slog.DiscardHandler))}
		if net != nil {
			n.host = net.Hosts[i]
		}
		c.nodes = append(c.nodes, n)
		// Registered before the daemons start, so it runs after they
		// stopped: a standby's PostgreSQL outlives its handler-runner by
		// design, and the test must leave nothing running.
		t.Cleanup(func() { n.stopPostgres(t); n.killWatchdog() })
	}
	// n1 is the seed: the only node with data; the others clone from it.
	if err := c.nodes[0].inst.Init(context.Background()); err != nil {
		t.Fatalf("initdb on n1: %v", err)
	}
	for _, n := range c.nodes {
		c.startDaemons(n)
	}
	return c
}

func (c *tcluster) startDaemons(n *tnode) {
	c.t.Helper()
	if len(n.cfg.Files) > 0 {
		home := n.cfg.SyncthingHome()
		if err := files.Prepare(files.Setup{Home: home, NodeName: n.name, Listen: n.cfg.SyncthingListen(), APIAddress: n.cfg.SyncthingAPI()}); err != nil {
			c.t.Fatalf("syncthing home of %s: %v", n.name, err)
		}
		argv := files.Command(testenv.SyncthingBinary(c.t), home)
		n.syncthing = testenv.StartProcess(c.t, n.name+" syncthing", exec.Command(argv[0], argv[1:]...))
	}
	n.checks = c.startDaemon(n, "check-runner")
	n.handler = c.startDaemon(n, "handler-runner")
	// The third daemon, as on every real node: among other things it
	// brings a server back into the gossip pool after a partition.
	n.watcher = c.startDaemon(n, "consul-watcher")
}

// startDaemon starts one of n's daemons, the first time or again after it
// was killed (as systemd would).
func (c *tcluster) startDaemon(n *tnode, daemon string) *testenv.Process {
	return testenv.StartProcess(c.t, n.name+" "+daemon, n.command(c.bin, daemon, "--config", n.cfgPath))
}

// command runs a program on the node: in its host's namespace, if it has
// one.
func (n *tnode) command(name string, args ...string) *exec.Cmd {
	if n.host != nil {
		return n.host.Command(context.Background(), name, args...)
	}
	return exec.Command(name, args...)
}

// stopPostgres stops the node's postmaster by its PID, whatever state the
// test left it in.
func (n *tnode) stopPostgres(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pid, running, err := n.inst.Running(ctx)
	if err != nil || !running {
		return
	}
	if err := n.inst.Stop(ctx, "immediate"); err != nil {
		t.Logf("cleanup: stop postgres of %s: %v; killing pid %d", n.name, err, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// watchdogPID is the PID of the node's fencing watchdog, 0 when none runs.
func (n *tnode) watchdogPID() int {
	b, err := os.ReadFile(handlerrunner.WatchdogPIDFile(n.cfg.Node.DataDir))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmd), "watchdog") {
		return 0
	}
	return pid
}

// killWatchdog kills the node's watchdog: the handler-runner leaves it
// running when it dies or exits with the lease armed.
func (n *tnode) killWatchdog() {
	if pid := n.watchdogPID(); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// postmasterPID is the PID of the node's running postmaster.
func (n *tnode) postmasterPID(t testing.TB) int {
	t.Helper()
	pid, running, err := n.inst.Running(context.Background())
	if err != nil || !running {
		t.Fatalf("postgres of %s is not running (%v)", n.name, err)
	}
	return pid
}

// killNode SIGKILLs everything of the node: its Consul server, both
// daemons and PostgreSQL.
func (c *tcluster) killNode(n *tnode) {
	c.t.Helper()
	pid := n.postmasterPID(c.t)
	n.consul.Kill(c.t)
	_ = n.handler.Kill()
	_ = n.checks.Kill()
	_ = n.watcher.Kill()
	n.killWatchdog()
	if n.syncthing != nil {
		_ = n.syncthing.Kill()
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func (n *tnode) apiURL() string { return n.cfg.APIURL() }

var client = &http.Client{Timeout: 500 * time.Millisecond}

// statusCode is what HAProxy would see at /status; 0 when the node does not
// answer.
func (n *tnode) statusCode() int {
	resp, err := client.Get(n.apiURL() + "/status")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (n *tnode) nodeStatus() (nodeapi.NodeStatus, error) {
	var st nodeapi.NodeStatus
	resp, err := client.Get(n.apiURL() + "/v1/status/node")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// active returns the one node answering /status 200, or an error saying
// what each answered.
func (c *tcluster) active() (*tnode, error) {
	var got []string
	var act []*tnode
	for _, n := range c.nodes {
		code := n.statusCode()
		got = append(got, fmt.Sprintf("%s:%d", n.name, code))
		if code == http.StatusOK {
			act = append(act, n)
		}
	}
	if len(act) != 1 {
		return nil, fmt.Errorf("want exactly one /status 200, got %s", strings.Join(got, " "))
	}
	return act[0], nil
}

// waitHealthy waits until one node is active and every other one is a
// standby streaming from it with a Consul session (its checks pass: it can
// be elected), and returns the active.
func (c *tcluster) waitHealthy(timeout time.Duration, except ...*tnode) *tnode {
	c.t.Helper()
	var act *tnode
	testenv.Eventually(c.t, timeout, func() (err error) {
		act, err = c.healthy(except...)
		return err
	})
	return act
}

// healthy returns the active node if the cluster is as waitHealthy waits
// for it to be, else what is missing.
func (c *tcluster) healthy(except ...*tnode) (*tnode, error) {
	a, err := c.active()
	if err != nil {
		return nil, err
	}
	// The active's own view too: a /status 200 and standbys still streaming
	// from it are what a node whose session just ended shows for a moment
	// before it fences.
	st, err := a.nodeStatus()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", a.name, err)
	}
	if st.Role != nodeapi.RoleActive || !st.HasSession {
		return nil, fmt.Errorf("%s: answers /status 200 but its role is %s, session %v; want active with a session", a.name, st.Role, st.HasSession)
	}
	want := fmt.Sprintf("%s:%d", a.addr, a.cfg.Postgres.Port)
	for _, n := range c.nodes {
		if n == a || contains(except, n) {
			continue
		}
		st, err := n.nodeStatus()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", n.name, err)
		}
		if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming || st.Postgres.Upstream != want || !st.HasSession {
			return nil, fmt.Errorf("%s: role %s, streaming %v from %q, session %v; want a standby streaming from %s (%s) with a session",
				n.name, st.Role, st.Postgres.Streaming, st.Postgres.Upstream, st.HasSession, a.name, want)
		}
	}
	return a, nil
}

func contains(ns []*tnode, n *tnode) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

// seedRow creates the table the writers use, with row 1, on the active node
// and waits until the standbys stream it.
func (c *tcluster) seedRow(act *tnode) {
	c.t.Helper()
	act.exec(c.t, "create table rows (id int primary key)")
	act.exec(c.t, "insert into rows values (1)")
	c.waitHealthy(30 * time.Second)
}

func (n *tnode) conn(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=1 sslmode=disable",
		n.addr, n.cfg.Postgres.Port))
}

func (n *tnode) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.conn(ctx)
	if err != nil {
		t.Fatalf("connect to postgres of %s: %v", n.name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s on %s: %v", sql, n.name, err)
	}
}

// write inserts one row on n, as a client would; nil when acknowledged.
func (n *tnode) write(ctx context.Context, id int) error {
	conn, err := n.conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "insert into rows (id) values ($1)", id)
	return err
}

// ids reads every row id on n.
func (n *tnode) ids(t testing.TB) map[int]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.conn(ctx)
	if err != nil {
		t.Fatalf("connect to postgres of %s: %v", n.name, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "select id from rows")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	return out
}

// sampler asks every node's /status every 100 ms for the whole test and
// fails the test if two nodes ever answer 200 in the same sample.
type sampler struct {
	mu         sync.Mutex
	samples    int
	violations []string
	seen       bool // an active node was seen: gaps count from then on
	ever       map[string]bool
	noneSince  time.Time
	longestGap time.Duration
}

func (c *tcluster) sample() *sampler {
	s := &sampler{ever: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			codes := make([]int, len(c.nodes))
			var wg sync.WaitGroup
			for i, n := range c.nodes {
				wg.Go(func() { codes[i] = n.statusCode() })
			}
			wg.Wait()
			s.add(c.nodes, codes, time.Now())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	c.t.Cleanup(func() {
		cancel()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.noneSince.IsZero() { // a gap still open when the test ended
			s.longestGap = max(s.longestGap, time.Since(s.noneSince))
		}
		c.t.Logf("/status sampler: %d samples, longest time without an active node %v", s.samples, s.longestGap.Round(time.Millisecond))
		for _, v := range s.violations {
			c.t.Errorf("two active nodes at once: %s", v)
		}
	})
	return s
}

func (s *sampler) add(nodes []*tnode, codes []int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	var ok []string
	for i, code := range codes {
		if code == http.StatusOK {
			ok = append(ok, nodes[i].name)
		}
	}
	if len(ok) > 1 {
		s.violations = append(s.violations, fmt.Sprintf("%s at %s", strings.Join(ok, " and "), now.Format("15:04:05.000")))
	}
	s.seen = s.seen || len(ok) > 0
	for _, name := range ok {
		s.ever[name] = true
	}
	switch {
	case !s.seen:
	case len(ok) == 0 && s.noneSince.IsZero():
		s.noneSince = now
	case len(ok) > 0 && !s.noneSince.IsZero():
		s.longestGap = max(s.longestGap, now.Sub(s.noneSince))
		s.noneSince = time.Time{}
	}
}

// waitWritable waits until some node other than old answers /status 200 and
// takes a write, and returns it with the time that took from since.
func (c *tcluster) waitWritable(old *tnode, since time.Time, timeout time.Duration) (*tnode, time.Duration) {
	c.t.Helper()
	var act *tnode
	var took time.Duration
	id := 1_000_000
	testenv.Eventually(c.t, timeout, func() error {
		a, err := c.active()
		if err != nil {
			return err
		}
		if a == old {
			return errors.New(old.name + " is still the active node")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		id++
		if err := a.write(ctx, id); err != nil {
			return fmt.Errorf("write on the new active %s: %v", a.name, err)
		}
		act, took = a, time.Since(since)
		return nil
	})
	return act, took
}

// everActive reports whether the node answered /status 200 in any sample.
func (s *sampler) everActive(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ever[name]
}

// metrics is the node's /metrics as Prometheus scrapes it.
func (n *tnode) metrics(t testing.TB) string {
	t.Helper()
	resp, err := client.Get(n.apiURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parallelSafe marks a test that checks what the API and the CLI answer
// and which node is chosen, not how fast a failover is, as one that may
// run beside another such test. Go runs parallel tests after every serial
// one has ended, so they never share the machine with a test of failover
// timing (nor with another package's: make test runs -p 1); two run at
// once on two cores, which takes about two minutes off `make test`.
func parallelSafe(t *testing.T) {
	t.Parallel()
}

// waitConsulWhole waits until every node's Consul server is a voter of the
// Raft configuration again. After a cut, autopilot removes the cut-off
// server; the consul-watcher's rejoin brings it back into the gossip pool
// once the cut heals, and autopilot makes it a voter after its
// stabilization time (10 s). A test that cuts a second node before then
// leaves two voters that cannot lose one.
func (c *tcluster) waitConsulWhole(act *tnode) {
	c.t.Helper()
	cc := act.consul.Client(c.t)
	start := time.Now()
	testenv.Eventually(c.t, 60*time.Second, func() error {
		rc, err := cc.Operator().RaftGetConfiguration(&api.QueryOptions{RequireConsistent: true})
		if err != nil {
			return err
		}
		var voters []string
		for _, s := range rc.Servers {
			if s.Voter {
				voters = append(voters, s.Node)
			}
		}
		if len(voters) != len(c.nodes) {
			return fmt.Errorf("raft voters %v, want %d", voters, len(c.nodes))
		}
		return nil
	})
	c.t.Logf("consul whole again: %d voters, %v after the heal was seen", len(c.nodes), time.Since(start).Round(time.Millisecond))
}
