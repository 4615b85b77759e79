package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/haproxycfg"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// haproxyOpts are haproxy-config's flags.
type haproxyOpts struct {
	profile      string
	bind         string
	appBind      string
	appPort      int
	caFile       string
	nodes        []string
	postgresPort int
	apiPort      int
	configPath   string
}

func newHAProxyConfigCmd() *cobra.Command {
	o := &haproxyOpts{}
	cmd := &cobra.Command{
		Use:   "haproxy-config",
		Short: "Print an HAProxy configuration that sends clients to the active node",
		Long: `haproxy-config prints a complete HAProxy configuration for the cluster: a
frontend for PostgreSQL (--bind) and, with --app-bind and --app-port, one for
the application the cluster runs on its active node; each sends its clients
to the one node whose GET /status answers 200, checked over HTTPS against the
cluster CA. The README's "HAProxy in front" explains every setting.

The nodes come from the cluster, through the profile (--profile, else
$UNDERSTUDY_PROFILE, else "dev", else the local node), or, with --node, from
the command line without asking anyone.

Examples:
  understudy haproxy-config --profile prod --ca-file /etc/haproxy/understudy-ca.pem > /etc/haproxy/haproxy.cfg
  understudy haproxy-config --node mgr-1=10.0.0.5 --node mgr-2=10.0.0.6 --node mgr-3=10.0.0.7 \
      --ca-file /etc/haproxy/understudy-ca.pem --app-bind :443 --app-port 443
  haproxy -c -f /etc/haproxy/haproxy.cfg && systemctl reload haproxy`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.config(cmd.Context())
			if err != nil {
				return err
			}
			text, err := haproxycfg.Render(c)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), text)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.profile, "profile", "", "the cluster profile to ask for the nodes (see understudy profile list)")
	f.StringVar(&o.bind, "bind", ":5432", "where HAProxy takes PostgreSQL connections: ADDR:PORT or :PORT")
	f.StringVar(&o.appBind, "app-bind", "", "where HAProxy takes the application's connections (ADDR:PORT or :PORT); with --app-port")
	f.IntVar(&o.appPort, "app-port", 0, "the application's port on the nodes; with --app-bind")
	f.StringVar(&o.caFile, "ca-file", "", "the cluster CA's certificate on the HAProxy host (default: the profile's CA file)")
	f.StringArrayVar(&o.nodes, "node", nil, "NAME=HOST, repeatable: render for these nodes without asking the cluster")
	f.IntVar(&o.postgresPort, "postgres-port", 5432, "PostgreSQL's port on nodes given with --node (and on members whose record lacks it)")
	f.IntVar(&o.apiPort, "api-port", 8008, "the API's port on nodes given with --node")
	f.StringVar(&o.configPath, "config", "", "a node's configuration file, whose consul.lock_delay and leader_lease the check timings follow (default: "+config.DefaultPath+" when readable, else the defaults)")
	return cmd
}

// config is what to render: the flags, and the nodes from --node or from
// the cluster. The check timings follow the fencing timings of --config, or
// of this machine's node configuration, else the defaults' (the cluster's
// API does not say a node's lock delay).
func (o *haproxyOpts) config(ctx context.Context) (haproxycfg.Config, error) {
	fencing := config.Default().Fencing()
	switch {
	case o.configPath != "":
		nc, err := config.Load(o.configPath)
		if err != nil {
			return haproxycfg.Config{}, err
		}
		fencing = nc.Fencing()
	default:
		if nc, err := config.Load(config.DefaultPath); err == nil {
			fencing = nc.Fencing()
		}
	}
	c := haproxycfg.Config{PostgresBind: o.bind, CAFile: o.caFile, Checks: haproxycfg.ChecksFor(fencing)}
	switch {
	case o.appBind != "" && o.appPort != 0:
		c.App = &haproxycfg.App{Bind: o.appBind, Port: o.appPort}
	case o.appBind != "" || o.appPort != 0:
		return c, errors.New("--app-bind and --app-port go together: where HAProxy takes the application's connections, and the application's port on the nodes; e.g. --app-bind :443 --app-port 443")
	}
	if len(o.nodes) > 0 {
		if o.profile != "" {
			return c, errors.New("--node and --profile exclude each other: --node renders for the nodes given, --profile asks the cluster")
		}
		if o.caFile == "" {
			return c, errors.New("--ca-file is needed with --node: the path of the cluster CA's certificate (ca.pem of a node's certificate directory) on the HAProxy host")
		}
		for _, spec := range o.nodes {
			name, host, ok := strings.Cut(spec, "=")
			if !ok || name == "" || host == "" {
				return c, fmt.Errorf("--node %q: write NAME=HOST, e.g. --node mgr-1=10.0.0.5", spec)
			}
			c.Nodes = append(c.Nodes, haproxycfg.Node{Name: name, Address: host, PostgresPort: o.postgresPort, APIPort: o.apiPort})
		}
		c.Source = "flags"
		return c, nil
	}
	return c, o.fromCluster(ctx, &c)
}

// fromCluster fills c's nodes and cluster from the members the cluster's
// API lists. It is the command's one use of the API client.
func (o *haproxyOpts) fromCluster(ctx context.Context, c *haproxycfg.Config) error {
	p, err := nodeapi.SelectProfile(o.profile)
	if err != nil {
		return err
	}
	cs, err := nodeapi.New(p).ClusterStatus(ctx)
	if err != nil {
		return fmt.Errorf("ask the cluster for its nodes: %w; or give them with --node NAME=HOST", err)
	}
	c.Cluster, c.Source = cs.Cluster, "profile "+p.Name
	tls := false
	for _, m := range cs.Members {
		u, err := url.Parse(m.APIURL)
		if err != nil || m.APIURL == "" || u.Port() == "" {
			return fmt.Errorf("member %s has no usable API URL (%q) in its record; is its check-runner running? Or give the nodes with --node NAME=HOST", m.Name, m.APIURL)
		}
		apiPort, _ := strconv.Atoi(u.Port())
		tls = tls || u.Scheme == "https"
		n := haproxycfg.Node{Name: m.Name, Address: m.Address, PostgresPort: m.PostgresPort, APIAddress: u.Hostname(), APIPort: apiPort}
		if n.Address == "" {
			n.Address = n.APIAddress
		}
		if n.PostgresPort == 0 {
			n.PostgresPort = o.postgresPort
		}
		c.Nodes = append(c.Nodes, n)
	}
	switch {
	case tls && c.CAFile == "":
		c.CAFile = p.CAFile
		if c.CAFile == "" {
			return fmt.Errorf("the nodes' APIs are HTTPS and profile %s names no CA file: give --ca-file, the path of the cluster CA's certificate on the HAProxy host", p.Name)
		}
	case !tls && c.CAFile != "":
		return fmt.Errorf("--ca-file %s, but the nodes' APIs are plain HTTP (%s): leave --ca-file out", c.CAFile, hostsOf(c.Nodes))
	}
	return nil
}

func hostsOf(nodes []haproxycfg.Node) string {
	var hs []string
	for _, n := range nodes {
		hs = append(hs, net.JoinHostPort(n.APIAddress, strconv.Itoa(n.APIPort)))
	}
	return strings.Join(hs, ", ")
}
