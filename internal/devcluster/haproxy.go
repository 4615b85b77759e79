package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/freeport"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/wait"
)

// haproxyConfig sends PostgreSQL connections to the node whose /status
// answers 200, checked over HTTPS against the cluster CA every 500 ms;
// connections to a node that stops
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
		fmt.Fprintf(&b, "    server %s %s check port %s check-ssl verify required ca-file %s\n", n.Name,
			net.JoinHostPort(n.PostgresHost, strconv.Itoa(n.PostgresPort)), u.Port(), s.CAFile)
	}
	return b.String()
}

func startHAProxy(s *State, bin string) error {
	ports, err := freeport.Pick("127.0.0.1", 1)
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
	// Ready when the frontend accepts connections.
	return wait.Until(context.Background(), 10*time.Second, func() error {
		if !services.PIDAlive(pid) {
			return fmt.Errorf("haproxy exited; see %s", filepath.Join(s.Dir, "haproxy.log"))
		}
		c, err := net.DialTimeout("tcp", s.HAProxy.Frontend, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// waitHAProxy waits until connections through HAProxy reach the active
// node's PostgreSQL, three in a row: HAProxy takes every server for up until
// its first checks have run, so the first connections may land on a
// standby.
func waitHAProxy(ctx context.Context, s *State) error {
	ok := 0
	return wait.Until(ctx, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := connect(cctx, s)
		if err != nil {
			ok = 0
			return err
		}
		defer c.Close(cctx)
		var standby bool
		if err := c.QueryRow(cctx, "select pg_is_in_recovery()").Scan(&standby); err != nil {
			ok = 0
			return err
		}
		if standby {
			ok = 0
			return errors.New("haproxy still sends connections to a standby")
		}
		if ok++; ok < 3 {
			return errors.New("haproxy reached the active node; checking again")
		}
		return nil
	})
}
