package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// Options of `dev up`.
type Options struct {
	Dir   string // where everything lives; created
	Nodes int    // 1 to 9
	// Understudy, Consul and HAProxy are the programs to run; Defaults
	// fills them in.
	Understudy, Consul, HAProxy string
	// Out receives progress lines for the operator.
	Out io.Writer
}

// Defaults fills in the programs: this binary, bin/consul beside it (what
// `make deps` builds) or on PATH, and Debian's haproxy.
func (o *Options) Defaults() error {
	if o.Understudy == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Understudy = exe
	}
	if o.Consul == "" {
		p, err := lifecycle.FindConsul(o.Understudy)
		if err != nil {
			return err
		}
		o.Consul = p
	}
	if o.HAProxy == "" {
		p, err := exec.LookPath("haproxy")
		if err != nil {
			if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
				return errors.New("haproxy not found; install it with `apt-get install haproxy` (or run `make deps`)")
			}
			p = "/usr/sbin/haproxy"
		}
		o.HAProxy = p
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// Timeouts of `dev up`.
const (
	consulTimeout  = 60 * time.Second
	clusterTimeout = 180 * time.Second
)

// Up builds and starts a dev cluster of o.Nodes nodes in o.Dir and returns
// once one node is active and every other one streams from it. On failure
// it stops whatever it started.
func Up(ctx context.Context, o Options) (_ *State, err error) {
	if err := o.Defaults(); err != nil {
		return nil, err
	}
	if o.Nodes < 1 || o.Nodes > 9 {
		return nil, fmt.Errorf("--nodes %d: a dev cluster has 1 to 9 nodes", o.Nodes)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if s, err := Load(dir); err == nil {
		if s.running() {
			return nil, fmt.Errorf("a dev cluster already runs in %s; see `understudy dev status --dir %s`, or stop it with `understudy dev down --dir %s`", dir, dir, dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	// PostgreSQL runs as the postgres user when we are root: it must reach
	// the node directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	s := &State{Dir: dir, Cluster: "dev"}
	defer func() {
		if err != nil {
			_ = s.save()
			_ = Down(s, false)
		}
	}()
	for i := range o.Nodes {
		n, err := layoutNode(dir, i)
		if err != nil {
			return nil, err
		}
		s.Nodes = append(s.Nodes, n)
	}
	for i := range s.Nodes {
		if err := writeConfig(s, i); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(o.Out, "starting %d consul servers\n", len(s.Nodes))
	for i := range s.Nodes {
		if err := startConsul(s, i, o.Consul); err != nil {
			return nil, err
		}
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	if err := waitConsul(ctx, s); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "initialising postgres on %s (the others clone it)\n", s.Nodes[0].Name)
	cfg, err := config.Load(s.Nodes[0].Config)
	if err != nil {
		return nil, err
	}
	if err := postgres.NewInstance(cfg.Postgres, cfg.Node.Name, slog.New(slog.DiscardHandler)).Init(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "starting check-runner and handler-runner on every node\n")
	for i := range s.Nodes {
		if err := startDaemons(s, i, o.Understudy); err != nil {
			return nil, err
		}
	}
	if err := startHAProxy(s, o.HAProxy); err != nil {
		return nil, err
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "waiting for an active node and %d streaming standbys\n", len(s.Nodes)-1)
	if err := WaitHealthy(ctx, s, clusterTimeout); err != nil {
		return nil, err
	}
	s.refresh()
	return s, s.save()
}

// layoutNode chooses node i's address, ports and directories.
func layoutNode(dir string, i int) (Node, error) {
	name := "n" + strconv.Itoa(i+1)
	addr := "127.0.0." + strconv.Itoa(11+i)
	ports, err := freePorts(addr, 5) // consul http, serf, server; postgres; api
	if err != nil {
		return Node{}, err
	}
	ndir := filepath.Join(dir, name)
	for _, d := range []string{ndir, filepath.Join(ndir, "logs"), filepath.Join(ndir, "consul")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Node{}, err
		}
	}
	return Node{
		Name: name, Address: addr, Dir: ndir, Config: filepath.Join(ndir, "understudy.hcl"),
		ConsulHTTP: net.JoinHostPort(addr, strconv.Itoa(ports[0])), SerfPort: ports[1], ServerPort: ports[2],
		PostgresHost: addr, PostgresPort: ports[3], PostgresData: filepath.Join(ndir, "postgres"),
		APIURL: "http://" + net.JoinHostPort(addr, strconv.Itoa(ports[4])),
	}, nil
}

func writeConfig(s *State, i int) error {
	n := s.Nodes[i]
	api := n.APIURL[len("http://"):]
	hcl := fmt.Sprintf(`# understudy dev cluster: node %s
cluster { name = %q }
node {
  name     = %q
  address  = %q
  data_dir = %q
}
consul {
  address = %q
}
postgres {
  port     = %d
  data_dir = %q
}
checks { interval = "1s" }
api    { listen = %q }
`, n.Name, s.Cluster, n.Name, n.Address, n.Dir, n.ConsulHTTP, n.PostgresPort, n.PostgresData, api)
	if err := os.WriteFile(n.Config, []byte(hcl), 0o644); err != nil {
		return err
	}
	if _, err := config.Load(n.Config); err != nil {
		return fmt.Errorf("generated configuration of %s: %w", n.Name, err)
	}
	return nil
}

// consulArgs runs node i's Consul server: bound to the node's address only,
// the other servers to join, no DNS, gRPC or WAN; the Raft and gossip timing
// understudy uses for a LAN of a few nodes (README, "Failover bounds").
func consulArgs(s *State, i int, bin string) []string {
	n := s.Nodes[i]
	_, httpPort, _ := net.SplitHostPort(n.ConsulHTTP)
	args := []string{bin, "agent", "-server", "-bootstrap-expect=" + strconv.Itoa(len(s.Nodes)),
		"-node=" + n.Name, "-bind=" + n.Address, "-client=" + n.Address,
		"-http-port=" + httpPort, "-serf-lan-port=" + strconv.Itoa(n.SerfPort), "-server-port=" + strconv.Itoa(n.ServerPort),
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1", "-serf-wan-port=-1",
		"-data-dir=" + filepath.Join(n.Dir, "consul"), "-retry-interval=1s", "-log-level=info",
		"-hcl=disable_update_check = true",
		"-hcl=performance { raft_multiplier = 1 }",
		`-hcl=gossip_lan { probe_interval = "500ms" probe_timeout = "250ms" suspicion_mult = 3 }`,
	}
	for j, o := range s.Nodes {
		if j != i {
			args = append(args, "-retry-join="+net.JoinHostPort(o.Address, strconv.Itoa(o.SerfPort)))
		}
	}
	return args
}

func startConsul(s *State, i int, bin string) error {
	n := &s.Nodes[i]
	pid, err := startDetached(filepath.Join(n.Dir, "logs", "consul.log"), nil, consulArgs(s, i, bin)...)
	if err != nil {
		return err
	}
	n.PIDs.Consul = pid
	return nil
}

func startDaemons(s *State, i int, bin string) error {
	n := &s.Nodes[i]
	var err error
	if n.PIDs.CheckRunner, err = startDetached(filepath.Join(n.Dir, "logs", "check-runner.log"), nil,
		bin, "check-runner", "--config", n.Config); err != nil {
		return err
	}
	n.PIDs.HandlerRunner, err = startDetached(filepath.Join(n.Dir, "logs", "handler-runner.log"), nil,
		bin, "handler-runner", "--config", n.Config)
	return err
}

// waitConsul waits until every server knows the Raft leader.
func waitConsul(ctx context.Context, s *State) error {
	return poll(ctx, consulTimeout, func() error {
		for _, n := range s.Nodes {
			leader, err := get(ctx, "http://"+n.ConsulHTTP+"/v1/status/leader")
			if err != nil {
				return fmt.Errorf("consul of %s: %w (see %s)", n.Name, err, filepath.Join(n.Dir, "logs", "consul.log"))
			}
			if leader == `""` || leader == "" {
				return fmt.Errorf("consul of %s has no leader yet", n.Name)
			}
		}
		return nil
	})
}

// poll calls f every 200 ms until it returns nil or timeout passes, and
// returns f's last error then.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var httpc = &http.Client{Timeout: 2 * time.Second}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// freePorts returns n distinct ports free for TCP and UDP on ip (Consul's
// Serf uses both on one number), holding each until all are chosen.
func freePorts(ip string, n int) ([]int, error) {
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			return nil, fmt.Errorf("no free port on %s", ip)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", ip, err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	return ports, nil
}
