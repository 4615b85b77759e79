package haproxycfg

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is everything the rendered configuration depends on.
type Config struct {
	// Cluster names the cluster in the header comment; may be empty.
	Cluster string
	// Source says where the nodes came from ("profile prod", "flags"), in
	// the header comment; may be empty.
	Source string
	// PostgresBind is where HAProxy takes PostgreSQL connections, as
	// "ADDR:PORT" or ":PORT" (every address).
	PostgresBind string
	// App is the managed application's frontend; nil for none.
	App *App
	// CAFile is the cluster CA's certificate on the HAProxy host: the checks
	// verify the nodes' API certificates against it. Empty: the checks use
	// plain HTTP (nodes without TLS, tests only).
	CAFile string
	// Nodes are the servers of every backend, in this order.
	Nodes []Node
	// Checks are the health check timings; see ChecksFor.
	Checks Checks
	// MaxConn is HAProxy's global maxconn; 0 is DefaultMaxConn.
	MaxConn int
}

// App is a frontend for the application the cluster runs on its active
// node: HAProxy takes connections at Bind and passes them, as TCP, to
// Port on the active node.
type App struct {
	Bind string
	Port int
}

// Node is one node of the cluster, a server in every backend.
type Node struct {
	// Name is the node's name: the server's name in HAProxy, and the name
	// its API certificate must carry (a DNS SAN of every node certificate).
	Name string
	// Address is the host PostgreSQL (and the application) listen on.
	Address      string
	PostgresPort int
	// APIAddress is the host the node's API listens on, when it is not
	// Address; APIPort is its port.
	APIAddress string
	APIPort    int
}

// DefaultMaxConn bounds HAProxy's connections in all. PostgreSQL's own
// max_connections (100 by default) is the tighter bound; this one only
// keeps HAProxy from sizing itself by the file descriptor limit.
const DefaultMaxConn = 1000

// Timeouts of the proxied connections. PostgreSQL connections live long and
// may sit idle (pools, LISTEN): an idle connection is cut after IdleTimeout,
// and the TCP keepalives (clitcpka, srvtcpka) find a peer that vanished.
const (
	ConnectTimeout = 3 * time.Second
	IdleTimeout    = 30 * time.Minute
)

// serverName is what HAProxy accepts as a server name and what a node
// certificate's DNS SAN can hold.
var serverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate returns every problem of c, joined; nil when Render can use it.
func (c Config) Validate() error {
	var errs []error
	if err := checkBind("the PostgreSQL frontend's address", c.PostgresBind); err != nil {
		errs = append(errs, err)
	}
	if c.App != nil {
		if err := checkBind("the application frontend's address", c.App.Bind); err != nil {
			errs = append(errs, err)
		}
		if c.App.Port < 1 || c.App.Port > 65535 {
			errs = append(errs, fmt.Errorf("the application's port on the nodes is %d; give a port from 1 to 65535", c.App.Port))
		}
	}
	if strings.ContainsAny(c.CAFile, " \t\n\"'#\\") {
		errs = append(errs, fmt.Errorf("CA file %q has a space, quote, # or backslash, which an HAProxy configuration would have to escape; copy the CA certificate to a plain path", c.CAFile))
	}
	if len(c.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes; name at least one"))
	}
	var seen []string
	for _, n := range c.Nodes {
		if !serverName.MatchString(n.Name) {
			errs = append(errs, fmt.Errorf("node name %q: HAProxy takes letters, digits, '.', '_' and '-' in a server name", n.Name))
		}
		if slices.Contains(seen, n.Name) {
			errs = append(errs, fmt.Errorf("node %s is named twice", n.Name))
		}
		seen = append(seen, n.Name)
		if n.Address == "" || badHost(n.Address) || badHost(n.APIAddress) {
			errs = append(errs, fmt.Errorf("node %s: address %q (API %q) is not a host name or IP address", n.Name, n.Address, n.APIAddress))
		}
		if n.PostgresPort < 1 || n.PostgresPort > 65535 || n.APIPort < 1 || n.APIPort > 65535 {
			errs = append(errs, fmt.Errorf("node %s: PostgreSQL port %d, API port %d: each must be from 1 to 65535", n.Name, n.PostgresPort, n.APIPort))
		}
	}
	if err := c.Checks.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func checkBind(what, bind string) error {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("%s %q: %w; write ADDR:PORT or :PORT", what, bind, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%s %q: port %q is not from 1 to 65535", what, bind, port)
	}
	if badHost(host) {
		return fmt.Errorf("%s %q: %q is not an address", what, bind, host)
	}
	return nil
}

// badHost reports whether h has what no host name or address has and an
// HAProxy configuration line would misread.
func badHost(h string) bool { return strings.ContainsAny(h, " \t\n\"'#\\/") }

// Render returns the HAProxy configuration for c, or what is wrong with c.
func Render(c Config) (string, error) {
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("haproxy configuration: %w", err)
	}
	maxConn := c.MaxConn
	if maxConn == 0 {
		maxConn = DefaultMaxConn
	}
	var b strings.Builder
	b.WriteString(header(c))
	fmt.Fprintf(&b, `
global
    maxconn %d
    log stdout format raw local0

defaults
    mode tcp
    log global
    option tcplog
    option clitcpka
    option srvtcpka
    timeout connect %s
    timeout client %s
    timeout server %s
    timeout check %s
    # %s
    default-server %s
`, maxConn, dur(ConnectTimeout), dur(IdleTimeout), dur(IdleTimeout), dur(c.Checks.Timeout), c.Checks.comment(), defaultServer(c))
	tls := c.CAFile != ""
	writeProxy(&b, "postgres", c.PostgresBind, c.Nodes, tls, func(n Node) int { return n.PostgresPort })
	if c.App != nil {
		writeProxy(&b, "app", c.App.Bind, c.Nodes, tls, func(Node) int { return c.App.Port })
	}
	return b.String(), nil
}

func header(c Config) string {
	var b strings.Builder
	b.WriteString("# HAProxy in front of the understudy cluster")
	if c.Cluster != "" {
		fmt.Fprintf(&b, " %q", c.Cluster)
	}
	b.WriteString(", written by `understudy haproxy-config`")
	if c.Source != "" {
		fmt.Fprintf(&b, " from %s", c.Source)
	}
	b.WriteString(".\n# Each frontend sends its clients to the one node whose GET /status answers 200:\n# the active. Why each setting: understudy's README, \"HAProxy in front\".\n")
	if c.CAFile == "" {
		b.WriteString("# The nodes' APIs are plain HTTP: the checks cannot tell a node from an impostor.\n")
	}
	return b.String()
}

func defaultServer(c Config) string {
	ch := c.Checks
	s := fmt.Sprintf("inter %s fastinter %s downinter %s fall %d rise %d on-marked-down shutdown-sessions",
		dur(ch.Inter), dur(ch.FastInter), dur(ch.DownInter), ch.Fall, ch.Rise)
	if c.CAFile != "" {
		s += " check-ssl verify required ca-file " + c.CAFile
	}
	return s
}

func writeProxy(b *strings.Builder, name, bind string, nodes []Node, tls bool, port func(Node) int) {
	fmt.Fprintf(b, `
frontend %s
    bind %s
    default_backend %s

backend %s
    option httpchk GET /status
    http-check expect status 200
`, name, bind, name, name)
	for _, n := range nodes {
		fmt.Fprintf(b, "    server %s %s check port %d", n.Name, net.JoinHostPort(n.Address, strconv.Itoa(port(n))), n.APIPort)
		if n.APIAddress != "" && n.APIAddress != n.Address {
			fmt.Fprintf(b, " addr %s", n.APIAddress)
		}
		if tls {
			// The node's certificate carries its name: the check talks to
			// the node this line names, not to whichever node of the
			// cluster has the address now.
			fmt.Fprintf(b, " check-sni %s verifyhost %s", n.Name, n.Name)
		}
		b.WriteString("\n")
	}
}

// dur writes d in HAProxy's units: whole minutes as m, whole seconds as s,
// else milliseconds.
func dur(d time.Duration) string {
	switch {
	case d >= time.Minute && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
