package devcluster

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// haproxyConfig sends PostgreSQL connections to the node whose /status
// answers 200, checked every 500 ms; connections to a node that stops
// answering 200 are cut (on-marked-down shutdown-sessions), so a client never
// keeps writing to a demoted node.
func haproxyConfig(s *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# understudy dev cluster: PostgreSQL on the active node
global
    maxconn 200

defaults
    mode    tcp
    timeout connect 2s
    timeout client  30m
    timeout server  30m

frontend postgres
    bind %s
    default_backend active

backend active
    option httpchk
    http-check send meth GET uri /status
    http-check expect status 200
    default-server inter 500ms fall 1 rise 1 on-marked-down shutdown-sessions
`, s.HAProxy.Frontend)
	for _, n := range s.Nodes {
		u, _ := url.Parse(n.APIURL)
		fmt.Fprintf(&b, "    server %s %s check port %s\n", n.Name,
			net.JoinHostPort(n.PostgresHost, strconv.Itoa(n.PostgresPort)), u.Port())
	}
	return b.String()
}

func startHAProxy(s *State, bin string) error {
	ports, err := freePorts("127.0.0.1", 1)
	if err != nil {
		return err
	}
	s.HAProxy.Frontend = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.HAProxy.Config = filepath.Join(s.Dir, "haproxy.cfg")
	if err := os.WriteFile(s.HAProxy.Config, []byte(haproxyConfig(s)), 0o644); err != nil {
		return err
	}
	// -db: stay in the foreground of its own session, so the PID is
	// HAProxy's and `dev down` stops it.
	pid, err := startDetached(filepath.Join(s.Dir, "haproxy.log"), nil, bin, "-db", "-f", s.HAProxy.Config)
	if err != nil {
		return err
	}
	s.HAProxy.PID = pid
	return nil
}
