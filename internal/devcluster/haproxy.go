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
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/freeport"
	"github.com/understudy-ha/understudy/internal/haproxycfg"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/wait"
)

// haproxyConfig is what `understudy haproxy-config` prints for this
// cluster (package haproxycfg): PostgreSQL connections go to the node whose
// /status answers 200, checked over HTTPS against the cluster CA with the
// check timings derived from the nodes' fencing timings, and connections to
// a node that stops answering 200 are cut, so a client never keeps writing
// to a demoted node.
func haproxyConfig(s *State) (string, error) {
	if len(s.Nodes) == 0 {
		return "", errors.New("haproxy configuration: the dev cluster has no nodes")
	}
	// Every node of a dev cluster has the same timing; the first one's file
	// says what it is.
	cfg, err := config.Load(s.Nodes[0].Config)
	if err != nil {
		return "", fmt.Errorf("haproxy configuration: %w", err)
	}
	c := haproxycfg.Config{
		Cluster: cfg.Cluster.Name, Source: "understudy dev up", PostgresBind: s.HAProxy.Frontend,
		CAFile: s.CAFile, Checks: haproxycfg.ChecksFor(cfg.Fencing()), MaxConn: 200,
	}
	for _, n := range s.Nodes {
		u, err := url.Parse(n.APIURL)
		if err != nil {
			return "", fmt.Errorf("haproxy configuration: node %s's API URL %q: %w", n.Name, n.APIURL, err)
		}
		apiPort, err := strconv.Atoi(u.Port())
		if err != nil {
			return "", fmt.Errorf("haproxy configuration: node %s's API URL %q has no port", n.Name, n.APIURL)
		}
		c.Nodes = append(c.Nodes, haproxycfg.Node{Name: n.Name, Address: n.PostgresHost, PostgresPort: n.PostgresPort, APIAddress: u.Hostname(), APIPort: apiPort})
	}
	return haproxycfg.Render(c)
}

func startHAProxy(s *State, bin string) error {
	ports, err := freeport.Pick("127.0.0.1", 1)
	if err != nil {
		return err
	}
	s.HAProxy.Frontend = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.HAProxy.Config = filepath.Join(s.Dir, "haproxy.cfg")
	text, err := haproxyConfig(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.HAProxy.Config, []byte(text), 0o644); err != nil {
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
