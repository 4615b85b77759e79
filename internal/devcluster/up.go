package devcluster

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/freeport"
	"github.com/understudy-ha/understudy/internal/netns"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/lifecycle"
)

// Options of `dev up`.
type Options struct {
	Dir   string // where everything lives; created
	Nodes int    // 1 to 9
	// Understudy, Consul, Syncthing and HAProxy are the programs to run;
	// Defaults fills them in.
	Understudy, Consul, Syncthing, HAProxy string
	// Out receives progress lines for the operator.
	Out io.Writer
	// Netns is where the nodes run: "on", each in a network namespace of
	// its own (needs root, iproute2 and nftables; `dev partition` works),
	// "off" on loopback addresses, "auto" (or "") on where the machine
	// allows it.
	Netns string
	// PartitionMode is the nodes' cluster.partition_mode ("" for the
	// default, "fence"); "active-minority" needs Netns "on" to be tried
	// with `dev partition`.
	PartitionMode string
}

// Defaults fills in the programs: this binary, bin/consul and
// bin/syncthing beside it (what `make deps` builds) or on PATH, and
// Debian's haproxy.
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
	if o.Syncthing == "" {
		p, err := lifecycle.FindSyncthing(o.Understudy)
		if err != nil {
			return err
		}
		o.Syncthing = p
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
	switch o.Netns {
	case "", "auto":
		o.Netns = "off"
		if netns.Available() == nil {
			o.Netns = "on"
		}
	case "on":
		if err := netns.Available(); err != nil {
			return fmt.Errorf("--netns on: %w; use --netns off for a cluster on loopback", err)
		}
	case "off":
	default:
		return fmt.Errorf("--netns %q: write on, off or auto", o.Netns)
	}
	return nil
}

// devNet makes the dev cluster's hosts: names and a /24 of their own,
// derived from the directory, so that two dev clusters in two directories
// do not meet.
func devNet(dir string, names []string) (*netns.Net, error) {
	h := fnv.New32a()
	h.Write([]byte(dir))
	sum := h.Sum32()
	tag := fmt.Sprintf("%05x", sum&0xfffff)
	return netns.Create(netns.Spec{Bridge: "usdev" + tag, Subnet: fmt.Sprintf("10.214.%d", 20+sum%200),
		NSPrefix: "usdev-" + tag + "-", Veth: "usdv" + tag + "-", Names: names})
}

// Timeouts of `dev up`.
const clusterTimeout = 180 * time.Second

// Up builds a dev cluster of o.Nodes nodes in o.Dir with the same code as
// `cluster start` (the first node) and `cluster join` (the others): a CA,
// TLS for Consul and the API, a join token. It returns once one node is
// active and every other one streams from it. On failure it stops whatever
// it started.
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
		if s.Net != nil {
			if err := s.Net.Remove(); err != nil {
				return nil, fmt.Errorf("remove the network namespaces of the last dev cluster in %s: %w", dir, err)
			}
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
	s := &State{Dir: dir, Cluster: "dev", PartitionMode: cmp.Or(o.PartitionMode, config.PartitionFence)}
	// On failure everything stops but the directory stays: the error
	// points at the processes' logs in it. The next `dev up` (or `dev
	// down`) removes it.
	defer func() {
		if err != nil {
			_ = s.save()
			_ = Down(s, true)
			err = fmt.Errorf("%w (the processes are stopped; their logs stay in %s until `understudy dev down --dir %s`)", err, dir, dir)
		}
	}()
	var hosts []netns.Host
	if o.Netns == "on" {
		var names []string
		for i := range o.Nodes {
			names = append(names, nodeName(i))
		}
		if s.Net, err = devNet(dir, names); err != nil {
			return nil, fmt.Errorf("network namespaces for the nodes: %w (--netns off runs them on loopback)", err)
		}
		hosts = s.Net.Hosts
	}
	for i := range o.Nodes {
		var h *netns.Host
		if hosts != nil {
			h = &hosts[i]
		}
		n, err := layoutNode(dir, i, h)
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
	if err := s.save(); err != nil {
		return nil, err
	}
	first := s.Nodes[0]
	fmt.Fprintf(o.Out, "%s: cluster start\n", first.Name)
	cfg, lo, err := nodeOptions(first, o)
	if err != nil {
		return nil, err
	}
	var res lifecycle.Result
	err = inNode(first, func() (err error) {
		res, err = lifecycle.Start(ctx, cfg, lo)
		return err
	})
	lo.Services.Close()
	if err != nil {
		return nil, fmt.Errorf("cluster start on %s: %w", first.Name, err)
	}
	s.CAFile = filepath.Join(first.Dir, "tls", certs.CAFile)
	if s.OperatorCert, s.OperatorKey, err = issueOperator(s, filepath.Join(first.Dir, "tls")); err != nil {
		return nil, err
	}
	for _, n := range s.Nodes[1:] {
		fmt.Fprintf(o.Out, "%s: cluster join\n", n.Name)
		cfg, lo, err := nodeOptions(n, o)
		if err != nil {
			return nil, err
		}
		j := lifecycle.JoinOptions{Active: strings.TrimPrefix(first.APIURL, "https://"), Token: res.Token, CAFingerprint: res.CAFingerprint}
		err = inNode(n, func() error { return lifecycle.Join(ctx, cfg, lo, j) })
		lo.Services.Close()
		if err != nil {
			return nil, fmt.Errorf("cluster join on %s: %w", n.Name, err)
		}
	}
	if err := startHAProxy(s, o.HAProxy); err != nil {
		return nil, err
	}
	s.refresh()
	if err := s.save(); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "waiting for an active node and %d streaming standbys\n", len(s.Nodes)-1)
	if err := WaitHealthy(ctx, s, clusterTimeout); err != nil {
		return nil, err
	}
	if err := waitHAProxy(ctx, s); err != nil {
		return nil, err
	}
	s.refresh()
	return s, s.save()
}

// nodeOptions loads node n's configuration and the options lifecycle runs
// it with: its processes supervised from its services directory.
func nodeOptions(n Node, o Options) (*config.Config, lifecycle.Options, error) {
	cfg, err := config.Load(n.Config)
	if err != nil {
		return nil, lifecycle.Options{}, err
	}
	opts := []services.Option{services.WithStateDir(filepath.Join(n.Dir, "services")), services.WithLogger(slog.New(slog.DiscardHandler))}
	if n.Netns != "" {
		opts = append(opts, services.WithNetns(netns.Host{NS: n.Netns}.Path()))
	}
	m := services.NewManager(opts...)
	return cfg, lifecycle.Options{Consul: o.Consul, Understudy: o.Understudy, Syncthing: o.Syncthing, SerfPort: n.SerfPort, ServerPort: n.ServerPort,
		Services: m, Out: o.Out}, nil
}

// inNode runs f, which starts the node's processes (PostgreSQL with
// pg_ctl among them), inside the node's network namespace if it has one.
func inNode(n Node, f func() error) error {
	if n.Netns == "" {
		return f()
	}
	return netns.Do(netns.Host{NS: n.Netns}.Path(), f)
}

func nodeName(i int) string { return "n" + strconv.Itoa(i+1) }

// layoutNode chooses node i's address, ports and directories: on host, the
// default ports at the host's address (a host has ports of its own), else
// free ports on a loopback address of its own.
func layoutNode(dir string, i int, host *netns.Host) (Node, error) {
	name := nodeName(i)
	addr := "127.0.0." + strconv.Itoa(11+i)
	// consul https, serf, server; postgres; api; syncthing; and Syncthing's
	// REST API, which listens on 127.0.0.1 whatever the node's address.
	ports := []int{8501, 8301, 8300, 5432, 8008, 22000}
	stAPI := []int{8384}
	ns := ""
	if host != nil {
		addr, ns = host.IP, host.NS
	} else {
		var err error
		if ports, err = freeport.Pick(addr, 6); err != nil {
			return Node{}, err
		}
		if stAPI, err = freeport.Pick("127.0.0.1", 1); err != nil {
			return Node{}, err
		}
	}
	ndir := filepath.Join(dir, name)
	shared := filepath.Join(dir, name+"-shared")
	for _, d := range []string{ndir, shared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Node{}, err
		}
	}
	return Node{
		Name: name, Address: addr, Netns: ns, Dir: ndir, Config: filepath.Join(ndir, "understudy.hcl"),
		ConsulAPI: "https://" + net.JoinHostPort(addr, strconv.Itoa(ports[0])), SerfPort: ports[1], ServerPort: ports[2],
		PostgresHost: addr, PostgresPort: ports[3], PostgresData: filepath.Join(ndir, "postgres"),
		APIURL: "https://" + net.JoinHostPort(addr, strconv.Itoa(ports[4])),
		Files:  map[string]string{"shared": shared}, SyncthingPort: ports[5],
		SyncthingAPI: net.JoinHostPort("127.0.0.1", strconv.Itoa(stAPI[0])),
	}, nil
}

// writeConfig writes node i's configuration. Its postgres.pg_hba trusts
// loopback, a dev convenience: the demo (and psql, by hand) write through
// HAProxy as postgres without a certificate. understudy's own connections,
// replication included, still log in with the node certificates.
func writeConfig(s *State, i int) error {
	n := s.Nodes[i]
	hcl := fmt.Sprintf(`# understudy dev cluster: node %s
cluster {
  name           = %q
  partition_mode = %q
}
node {
  name     = %q
  address  = %q
  data_dir = %q
}
consul {
  scheme  = "https"
  address = %q
}
postgres {
  port     = %d
  data_dir = %q
  # Dev only: clients without a certificate (the demo, through HAProxy).
  pg_hba   = [%s]
}
checks { interval = "1s" }
api    { listen = %q }
syncthing {
  port     = %d
  api_port = %s
}
files "shared" { path = %q }
logging { dir = %q }
`, n.Name, s.Cluster, cmp.Or(s.PartitionMode, config.PartitionFence), n.Name, n.Address, n.Dir, strings.TrimPrefix(n.ConsulAPI, "https://"), n.PostgresPort, n.PostgresData, trusted(s),
		strings.TrimPrefix(n.APIURL, "https://"), n.SyncthingPort, strings.TrimPrefix(n.SyncthingAPI, "127.0.0.1:"), n.Files["shared"], n.Dir)
	if err := os.WriteFile(n.Config, []byte(hcl), 0o644); err != nil {
		return err
	}
	if _, err := config.Load(n.Config); err != nil {
		return fmt.Errorf("generated configuration of %s: %w", n.Name, err)
	}
	return nil
}

// trusted is the dev cluster's pg_hba lines for clients without a
// certificate: loopback, and in network namespaces the bridge's address,
// where HAProxy's and psql's connections come from.
func trusted(s *State) string {
	lines := []string{`"host all all 127.0.0.0/8 trust"`}
	if s.Net != nil {
		lines = append(lines, fmt.Sprintf(`"host all all %s/32 trust"`, s.Net.Gate))
	}
	return strings.Join(lines, ", ")
}

// issueOperator signs the dev cluster's operator certificate with the CA
// cluster start made, into the cluster's directory.
func issueOperator(s *State, tlsDir string) (certPath, keyPath string, err error) {
	ca, err := certs.ReadCA(certs.ReadPaths(tlsDir))
	if err != nil {
		return "", "", err
	}
	c, err := ca.IssueOperator("dev", 0, time.Now())
	if err != nil {
		return "", "", err
	}
	return certs.WriteOperator(s.Dir, "operator", c, true)
}

// client is a client of the dev cluster's APIs, trusting its CA and
// presenting its operator certificate.
func (s *State) client() *nodeapi.NodeClient {
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(s.CAFile); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if pair, err := tls.LoadX509KeyPair(s.OperatorCert, s.OperatorKey); err == nil {
		tc.Certificates = []tls.Certificate{pair}
	}
	return nodeapi.NewNodeClient(tc, "", "")
}
