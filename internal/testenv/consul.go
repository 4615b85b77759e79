package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/understudy-ha/understudy/internal/config"
)

// consulStartTimeout bounds the wait for an agent's API and a leader; an
// agent on loopback has both in well under a second.
const consulStartTimeout = 30 * time.Second

// Consul is one real Consul agent running as a server on a loopback address.
type Consul struct {
	NodeName string // the agent's -node
	Addr     string // the IP it binds every port to
	HTTPAddr string // "IP:PORT" of its HTTP API
	// DataDir is its -data-dir; "" for a dev agent, which keeps everything
	// in memory and forgets it on restart.
	DataDir string
	// Process is the running agent; Start replaces it.
	Process *Process

	bin      string
	args     []string
	serfPort int
	host     *Host // the network namespace it runs in; nil on loopback
}

// ConsulOption changes how StartConsulDev starts its agent.
type ConsulOption func(*consulSpec)

type consulSpec struct {
	node       string
	ip         string
	persistent bool
}

// Persistent runs the agent as a single server with a data directory
// (-server -bootstrap-expect=1) instead of in -dev mode, so that Restart
// keeps the KV store, sessions and catalog.
func Persistent() ConsulOption { return func(s *consulSpec) { s.persistent = true } }

// NodeName names the agent's node (default "dev").
func NodeName(name string) ConsulOption { return func(s *consulSpec) { s.node = name } }

// BindAddr binds the agent to another loopback address (default 127.0.0.1).
func BindAddr(ip string) ConsulOption { return func(s *consulSpec) { s.ip = ip } }

// StartConsulDev starts one Consul server, a cluster of its own, and returns
// once its HTTP API answers and it has elected itself leader. By default it
// runs in -dev mode: fast, in memory, nothing kept across Restart.
func StartConsulDev(t testing.TB, opts ...ConsulOption) *Consul {
	t.Helper()
	spec := consulSpec{node: "dev", ip: "127.0.0.1"}
	for _, o := range opts {
		o(&spec)
	}
	var c *Consul
	if spec.persistent {
		c = newConsul(t, spec.node, spec.ip, "-server", "-bootstrap-expect=1")
	} else {
		c = newConsul(t, spec.node, spec.ip, "-dev")
	}
	c.Start(t)
	return c
}

// StartConsulCluster starts n Consul servers that form one cluster and
// returns once every one of them sees the same leader, n Raft peers and n
// live members. Server i binds to 127.0.0.(10+i) with ports of its own and
// is node "node-i", so a test can tell nodes apart by address as on a real
// network.
func StartConsulCluster(t testing.TB, n int) []*Consul {
	t.Helper()
	if n < 1 || n > 100 {
		t.Fatalf("StartConsulCluster: n = %d, want 1..100", n)
	}
	servers := make([]*Consul, n)
	for i := range servers {
		servers[i] = newConsul(t, fmt.Sprintf("node-%d", i), fmt.Sprintf("127.0.0.%d", 10+i),
			"-server", "-bootstrap-expect="+strconv.Itoa(n))
	}
	return startCluster(t, servers)
}

// startCluster starts servers as one cluster, each joining the others, and
// waits until they agree.
func startCluster(t testing.TB, servers []*Consul) []*Consul {
	t.Helper()
	for i, c := range servers {
		for j, other := range servers {
			if j != i {
				c.args = append(c.args, "-retry-join="+addr(other.Addr, other.serfPort))
			}
		}
	}
	StartServers(t, servers...)
	waitRunning(t, consulStartTimeout, procsOf(servers), func() error { return ClusterConverged(servers) })
	return servers
}

// StartConsulClusterOn starts one Consul server on each host, Consul's
// default ports on the host's address (each host has ports of its own),
// and returns once they form one cluster as StartConsulCluster's do. args
// are more flags for every agent (say -encrypt=KEY).
func StartConsulClusterOn(t testing.TB, hosts []*Host, args ...string) []*Consul {
	t.Helper()
	servers := make([]*Consul, len(hosts))
	for i, h := range hosts {
		servers[i] = newConsulAt(t, h.Name, h.IP, []int{8500, 8301, 8300}, h,
			append([]string{"-server", "-bootstrap-expect=" + strconv.Itoa(len(hosts))}, args...)...)
	}
	return startCluster(t, servers)
}

// newConsul prepares an agent on ip with free ports; nothing runs yet.
func newConsul(t testing.TB, node, ip string, mode ...string) *Consul {
	t.Helper()
	return newConsulAt(t, node, ip, FreePortsOn(t, ip, 3), nil, mode...)
}

// newConsulAt prepares an agent on ip with ports (http, serf_lan, server:
// Raft and RPC), inside host when it is not nil.
func newConsulAt(t testing.TB, node, ip string, ports []int, host *Host, mode ...string) *Consul {
	t.Helper()
	bin := consulBinary(t)
	c := &Consul{NodeName: node, Addr: ip, HTTPAddr: addr(ip, ports[0]), bin: bin, serfPort: ports[1], host: host}
	c.args = append([]string{"agent"}, mode...)
	c.args = append(c.args,
		"-node="+node,
		"-bind="+ip, "-client="+ip,
		"-http-port="+strconv.Itoa(ports[0]),
		"-serf-lan-port="+strconv.Itoa(ports[1]),
		"-server-port="+strconv.Itoa(ports[2]),
		// Ports the tests never use are turned off rather than given free
		// numbers: fewer ports, fewer collisions between parallel agents.
		// -1 disables DNS, gRPC and (on a server) the WAN pool.
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-serf-wan-port=-1",
		"-log-level=info",
		// Consul asks checkpoint-api.hashicorp.com for updates by default;
		// traffic of a test stays on loopback.
		"-hcl=disable_update_check = true",
	)
	if mode[0] != "-dev" {
		c.DataDir = tempDir(t, "consul-"+node)
		c.args = append(c.args,
			"-data-dir="+c.DataDir,
			// Raft's production timing is 5x slower; 1 is what Consul
			// recommends for production hardware and keeps elections in
			// tests to about a second. -dev sets its own, faster timing.
			fmt.Sprintf("-hcl=performance { raft_multiplier = %d }", config.Default().Consul.RaftMultiplier),
			// Retry a failed join every second, not every 30: the servers
			// of a cluster start together and the first tries fail.
			"-retry-interval=1s",
			// understudy's default gossip timing for a LAN of a few
			// nodes (the consul block's gossip_*): a dead node's
			// serfHealth fails in about 2.5 s instead of about 5 s, and a
			// node kill's failover bound with it (config.Bounds).
			func() string {
				g := config.Default().Consul
				return fmt.Sprintf("-hcl=gossip_lan { probe_interval = %q probe_timeout = %q suspicion_mult = %d }",
					g.GossipProbeInterval, g.GossipProbeTimeout, g.GossipSuspicionMult)
			}(),
		)
	}
	return c
}

// launch starts the agent without waiting for it.
func (c *Consul) launch(t testing.TB) {
	t.Helper()
	if c.Process != nil && c.Process.running() {
		// The old agent would answer the waits for the new one.
		t.Fatalf("consul %s: Start while it (pid %d) still runs", c.NodeName, c.Process.PID())
	}
	// SIGTERM makes a server exit without leaving the cluster (its
	// leave_on_terminate is false), as a crash or a restart would; SIGINT
	// would leave gracefully and change the membership the test set up.
	cmd := exec.Command(c.bin, c.args...)
	if c.host != nil {
		cmd = c.host.Command(context.Background(), c.bin, c.args...)
	}
	p, err := startProcess(t, "consul "+c.NodeName, cmd, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	c.Process = p
}

// Start starts the agent again, after Stop or Kill, with the same ports,
// node name and data directory, and waits until its API answers and it
// knows a leader. To bring back a cluster that lost its quorum, start its
// servers together with StartServers.
func (c *Consul) Start(t testing.TB) {
	t.Helper()
	StartServers(t, c)
}

// StartServers starts stopped agents together and waits until each of them
// answers and knows a leader: a cluster whose servers all stopped elects
// one only when enough of them run at once.
func StartServers(t testing.TB, servers ...*Consul) {
	t.Helper()
	procs := make([]*Process, len(servers))
	for i, c := range servers {
		c.launch(t)
		procs[i] = c.Process
	}
	waitRunning(t, consulStartTimeout, procs, func() error {
		var errs []error
		for _, c := range servers {
			errs = append(errs, c.knowsLeader())
		}
		return errors.Join(errs...)
	})
}

func (c *Consul) knowsLeader() error {
	leader, err := c.client(2 * time.Second).Status().Leader()
	if err != nil {
		return fmt.Errorf("consul %s: %w", c.NodeName, err)
	}
	if leader == "" {
		return fmt.Errorf("consul %s: no leader yet", c.NodeName)
	}
	return nil
}

// Stop stops the agent with SIGTERM (SIGKILL after 10s): it exits without
// leaving the cluster.
func (c *Consul) Stop(t testing.TB) {
	t.Helper()
	if err := c.Process.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Kill kills the agent with SIGKILL, as a crash would.
func (c *Consul) Kill(t testing.TB) {
	t.Helper()
	if err := c.Process.Kill(); err != nil {
		t.Fatal(err)
	}
}

// Restart stops the agent and starts it again on the same ports and data
// directory, and waits for a leader. A dev agent comes back empty.
func (c *Consul) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Client returns an API client of this agent.
func (c *Consul) Client(t testing.TB) *api.Client {
	t.Helper()
	return c.client(0)
}

// client opens a connection per request: pooled connections go stale across
// Restart, and Go retries only idempotent requests on them, so a PUT right
// after a restart would fail. timeout 0 is none, for blocking queries.
func (c *Consul) client(timeout time.Duration) *api.Client {
	client, err := api.NewClient(&api.Config{
		Address:    c.HTTPAddr,
		Scheme:     "http",
		HttpClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout},
	})
	if err != nil {
		// NewClient fails only on a bad address scheme or TLS files,
		// neither of which is set here.
		panic(fmt.Sprintf("testenv: consul client for %s: %v", c.HTTPAddr, err))
	}
	return client
}

func procsOf(servers []*Consul) []*Process {
	procs := make([]*Process, len(servers))
	for i, c := range servers {
		procs[i] = c.Process
	}
	return procs
}

// ClusterConverged returns nil when every agent of servers answers, names
// the same leader, has all of them as Raft peers and sees them all alive;
// otherwise an error saying what is missing.
func ClusterConverged(servers []*Consul) error {
	var errs []error
	leaders := map[string]bool{}
	for _, c := range servers {
		if err := agentConverged(c.client(2*time.Second), len(servers), leaders); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.NodeName, err))
		}
	}
	if len(leaders) > 1 {
		errs = append(errs, fmt.Errorf("servers disagree on the leader: %v", leaders))
	}
	return errors.Join(errs...)
}

func agentConverged(client *api.Client, n int, leaders map[string]bool) error {
	leader, err := client.Status().Leader()
	if err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader")
	}
	leaders[leader] = true
	peers, err := client.Status().Peers()
	if err != nil {
		return err
	}
	if len(peers) != n {
		return fmt.Errorf("%d raft peers %v, want %d", len(peers), peers, n)
	}
	members, err := client.Agent().Members(false)
	if err != nil {
		return err
	}
	alive := 0
	for _, m := range members {
		if m.Status == 1 { // AgentMemberAlive, a constant api only documents
			alive++
		}
	}
	if alive != n {
		return fmt.Errorf("%d of %d members alive, want %d", alive, len(members), n)
	}
	return nil
}

// tempDir makes a directory under /tmp for one process and removes it at
// the end of the test. Not t.TempDir: its parents are private to the test's
// user (0700), where PostgreSQL's user cannot reach, and its long paths
// overflow the 107 bytes of a Unix socket path.
func tempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "understudy-"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the process that uses it starts, so it runs after
	// that process is stopped (cleanups run last-in, first-out).
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(dir)
}

// TempDir is a directory under /tmp that every user can reach (PostgreSQL
// runs as the postgres user), removed when the test ends, after the
// processes started later in the test have stopped.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	return tempDir(t, prefix)
}
