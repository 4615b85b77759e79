package deb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestDebInstallStartRemovePurge installs the package with apt-get on three
// SystemdHosts whose / is an overlay of the machine's (the machine's own /
// is never written), makes them a cluster from the installed binaries
// (cluster start on the first, cluster token there, cluster join on the
// other two), powers the active node off and finds every acknowledged row
// on the node that took over, then removes and purges the package on a
// standby and checks what each leaves, as Debian policy has it.
func TestDebInstallStartRemovePurge(t *testing.T) {
	p := deb(t)
	testenv.RequireIntegration(t)
	ctx := context.Background()
	_, hadPackage := os.Stat("/usr/lib/understudy")
	dir := testenv.TempDir(t, "deb")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, filepath.Base(p))
	copyFile(t, p, pkg)

	// Three nodes, so that Consul keeps its quorum when one goes; each on
	// a loopback address of its own (the hosts share the machine's
	// network).
	var nodes []*debNode
	for i, name := range []string{"d1", "d2", "d3"} {
		nodes = append(nodes, installNode(t, dir, pkg, name, fmt.Sprintf("127.0.0.%d", 91+i)))
	}
	if _, err := os.Stat("/usr/lib/understudy"); err == nil && hadPackage != nil {
		t.Fatal("the package reached the machine's own /usr/lib/understudy")
	}
	a := nodes[0]
	t.Logf("cluster start:\n%s", a.lifecycle(t, "cluster", "start"))
	a.requireInstalledUnits(t)

	// A token of its own for the joins: cluster token on the active, with
	// the configuration in /etc/understudy as an operator runs it.
	out := a.understudy(t, "cluster", "token")
	token := regexp.MustCompile(`ust1\.\S+`).FindString(out)
	fp := regexp.MustCompile(`sha256:[0-9a-f]+`).FindString(out)
	if token == "" || fp == "" {
		t.Fatalf("cluster token printed no token or fingerprint:\n%s", out)
	}
	tokenFile := filepath.Join(dir, "join-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		t.Logf("cluster join on %s:\n%s", n.name, n.lifecycle(t, "cluster", "join", a.apiAddr(), "--token-file", tokenFile, "--ca-fingerprint", fp))
		n.requireInstalledUnits(t)
	}

	// Healthy: a leads, three Consul servers vote, and both others are
	// standbys streaming from it.
	testenv.Eventually(t, 60*time.Second, func() error {
		var cs nodeapi.ClusterStatus
		if err := a.get(t, "/v1/status/cluster", &cs); err != nil {
			return err
		}
		if cs.Leader != a.name || len(cs.Members) != 3 {
			return fmt.Errorf("leader %q, %d members", cs.Leader, len(cs.Members))
		}
		if h := cs.Consul; h == nil || h.Voters != 3 || h.HealthyVoters != 3 {
			return fmt.Errorf("consul servers %+v, want 3 healthy voters", h)
		}
		for _, n := range nodes[1:] {
			if err := n.streaming(t); err != nil {
				return err
			}
		}
		return nil
	})

	// A writer inserts rows on the active's PostgreSQL, each acknowledged
	// before the next, and the active's host loses power while it writes.
	// Synchronous mode: every acknowledged row is on the synchronous
	// standby, the only node that may take over.
	conn, err := pgx.Connect(ctx, postgres.ConnString(a.cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create table t (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64 // the last row acknowledged; rows 1..acked all were
	stopped := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := conn.Exec(ictx, "insert into t values ($1)", i)
			cancel()
			if err != nil {
				stopped <- fmt.Errorf("insert %d: %w", i, err)
				return
			}
			acked.Store(i)
		}
	}()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := acked.Load(); n < 200 {
			return fmt.Errorf("%d rows acknowledged", n)
		}
		return nil
	})
	a.h.PowerOff(t)
	select {
	case err := <-stopped:
		t.Logf("the writer stopped with the power: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the writer still writes 30s after the active's host lost power")
	}
	last := acked.Load()

	var active, standby *debNode
	testenv.Eventually(t, 90*time.Second, func() error {
		for i, n := range nodes[1:] {
			if n.get(t, "/status", nil) == nil {
				active, standby = n, nodes[2-i]
				return nil
			}
		}
		return errors.New("neither d2 nor d3 is active")
	})
	t.Logf("%s is active after %s was powered off; %d rows were acknowledged", active.name, a.name, last)
	testenv.Eventually(t, 30*time.Second, func() error {
		c, err := pgx.Connect(ctx, postgres.ConnString(active.cfg.Postgres))
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		// A row in flight at the power loss (committed, its
		// acknowledgement lost) may be there too.
		var n, top int64
		if err := c.QueryRow(ctx, "select count(*) filter (where id <= $1), coalesce(max(id), 0) from t", last).Scan(&n, &top); err != nil {
			return err
		}
		if n != last || top > last+1 {
			t.Fatalf("the new active %s has %d of the %d rows acknowledged (ids up to %d)", active.name, n, last, top)
		}
		return nil
	})
	testenv.Eventually(t, 60*time.Second, func() error { return standby.streaming(t) })

	// remove: the node stopped (prerm), its programs gone, its data, the
	// user and the configuration left.
	h := standby.h
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q", "understudy")
	for _, unit := range lifecycle.ProcessNames {
		if st, _ := h.Property(unit+".service", "ActiveState"); st == "active" {
			t.Errorf("after remove %s is still active", unit)
		}
	}
	if out, err := h.Command(ctx, "pgrep", "-u", "postgres", "-x", "postgres").CombinedOutput(); err == nil {
		t.Errorf("after remove PostgreSQL still runs: %s", out)
	}
	for _, f := range []string{"/usr/bin/understudy", "/usr/lib/understudy/bin/consul", "/usr/lib/understudy/bin/syncthing"} {
		if _, err := h.Command(ctx, "test", "-e", f).CombinedOutput(); err == nil {
			t.Errorf("after remove %s is still there", f)
		}
	}
	for _, f := range []string{"/var/lib/understudy/cluster.json", "/var/lib/understudy/postgres/PG_VERSION",
		"/etc/understudy/understudy.hcl", "/etc/systemd/system/understudy-consul.service"} {
		h.Run(t, "test", "-e", f)
	}
	h.Run(t, "getent", "passwd", lifecycle.ConsulUser)
	h.Run(t, "getent", "passwd", lifecycle.SyncthingUser)

	// purge: the data, the logs, the user, the configuration and the
	// units cluster join wrote gone.
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "understudy")
	for _, f := range []string{"/var/lib/understudy", "/var/log/understudy", "/etc/understudy", "/etc/systemd/system/understudy-consul.service"} {
		if _, err := h.Command(ctx, "test", "-e", f).CombinedOutput(); err == nil {
			t.Errorf("after purge %s is still there", f)
		}
	}
	for _, u := range []string{lifecycle.ConsulUser, lifecycle.SyncthingUser} {
		if _, err := h.Command(ctx, "getent", "passwd", u).CombinedOutput(); err == nil {
			t.Errorf("after purge the user %s is still there", u)
		}
	}
	if units, _ := h.Command(ctx, "systemctl", "list-unit-files", "--no-legend", "understudy-*").CombinedOutput(); strings.Contains(string(units), "understudy-") {
		t.Errorf("after purge systemd still knows units:\n%s", units)
	}
}

// debNode is a node on an overlay SystemdHost with the package installed
// and its configuration in /etc/understudy/understudy.hcl.
type debNode struct {
	name         string
	h            *testenv.SystemdHost
	serf, server int // its Consul agent's gossip and server ports
	// cfg is the node's configuration as the test reaches its files: its
	// node.data_dir (the default, /var/lib/understudy) under the host's
	// root, so that the test connects with the node's certificates.
	cfg *config.Config
	nc  *nodeapi.NodeClient
}

// installNode boots an overlay host, installs the package there with
// apt-get, checks what postinst made, and puts the node's configuration
// in place. PostgreSQL runs in synchronous mode: a failover loses no
// acknowledged row.
func installNode(t *testing.T, dir, pkg, name, addr string) *debNode {
	t.Helper()
	ports := testenv.FreePortsOn(t, addr, 7) // consul https, serf, server; postgres; api; syncthing; its api
	shared := filepath.Join(dir, "shared-"+name)
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	hcl := func(dataDir string) string {
		return fmt.Sprintf(`cluster { name = "deb" }
node {
  name    = %q
  address = %q
  %s
}
consul {
  scheme  = "https"
  address = "%s:%d"
}
postgres {
  port        = %d
  synchronous = true
}
api { listen = "%s:%d" }
syncthing {
  port     = %d
  api_port = %d
}
files "shared" { path = %q }
`, name, addr, dataDir, addr, ports[0], ports[3], addr, ports[4], ports[5], ports[6], shared)
	}
	conf := filepath.Join(dir, name+".hcl")
	if err := os.WriteFile(conf, []byte(hcl("")), 0o644); err != nil {
		t.Fatal(err)
	}

	h := testenv.BootSystemdOverlay(t, "deb-"+name)
	h.Run(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", pkg)
	// What postinst made, and no unit enabled.
	h.Run(t, "getent", "passwd", lifecycle.ConsulUser)
	h.Run(t, "getent", "passwd", lifecycle.SyncthingUser)
	if got := strings.TrimSpace(h.Run(t, "stat", "-c", "%U %a", "/var/lib/understudy/consul")); got != lifecycle.ConsulUser+" 700" {
		t.Fatalf("/var/lib/understudy/consul on %s: %q", name, got)
	}
	if left, _ := filepath.Glob(filepath.Join(h.UnitDir(), "*", "understudy-*")); len(left) > 0 {
		t.Fatalf("the package enabled units on %s: %v", name, left)
	}
	h.Run(t, "install", "-m", "0644", conf, "/etc/understudy/understudy.hcl")

	seen := filepath.Join(dir, name+"-as-the-test-sees-it.hcl")
	dataDir := fmt.Sprintf("data_dir = %q", filepath.Join(h.Root(), "var/lib/understudy"))
	if err := os.WriteFile(seen, []byte(hcl(dataDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(seen)
	if err != nil {
		t.Fatal(err)
	}
	return &debNode{name: name, h: h, serf: ports[1], server: ports[2], cfg: cfg}
}

// understudy runs the installed understudy on the node's host.
func (n *debNode) understudy(t *testing.T, args ...string) string {
	t.Helper()
	return n.h.Run(t, "/usr/bin/understudy", args...)
}

// lifecycle runs cluster start or join with the node's Consul ports, its
// processes as systemd units.
func (n *debNode) lifecycle(t *testing.T, args ...string) string {
	t.Helper()
	return n.understudy(t, append(args, "--processes", "systemd",
		"--consul-serf-port", strconv.Itoa(n.serf), "--consul-server-port", strconv.Itoa(n.server))...)
}

func (n *debNode) apiAddr() string { return strings.TrimPrefix(n.cfg.APIURL(), "https://") }

// requireInstalledUnits fails unless the node's units run the installed
// programs, are active, and the Consul agent and Syncthing run as users of
// their own.
func (n *debNode) requireInstalledUnits(t *testing.T) {
	t.Helper()
	for unit, bin := range map[string]string{
		lifecycle.ConsulProcess:        "/usr/lib/understudy/bin/consul",
		lifecycle.SyncthingProcess:     "/usr/lib/understudy/bin/syncthing",
		lifecycle.CheckRunnerProcess:   "/usr/bin/understudy",
		lifecycle.HandlerRunnerProcess: "/usr/bin/understudy",
		lifecycle.ConsulWatcherProcess: "/usr/bin/understudy",
	} {
		exec, err := n.h.Property(unit+".service", "ExecStart")
		if err != nil || !strings.Contains(exec, "path="+bin+" ") {
			t.Errorf("on %s %s runs %q (%v), want %s", n.name, unit, exec, err, bin)
		}
		if st, _ := n.h.Property(unit+".service", "ActiveState"); st != "active" {
			t.Errorf("on %s %s is %s\n%s", n.name, unit, st, n.h.Journal(unit+".service", 30))
		}
	}
	for unit, want := range map[string]string{lifecycle.ConsulProcess: lifecycle.ConsulUser, lifecycle.SyncthingProcess: lifecycle.SyncthingUser} {
		pid, _ := n.h.Property(unit+".service", "MainPID")
		if user := strings.TrimSpace(n.h.Run(t, "ps", "-o", "user=", "-p", pid)); user != want {
			t.Errorf("on %s %s runs as %q, want %s", n.name, unit, user, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// get asks the node's API, with the node's own certificate.
func (n *debNode) get(t *testing.T, path string, out any) error {
	t.Helper()
	if n.nc == nil {
		nc, err := lifecycle.NodeClient(n.cfg)
		if err != nil {
			return err
		}
		n.nc = nc
	}
	if err := n.nc.Do(context.Background(), n.cfg.APIURL(), http.MethodGet, path, nil, out, 2*time.Second); err != nil {
		return fmt.Errorf("%s%s: %w", n.cfg.APIURL(), path, err)
	}
	return nil
}

// streaming says why the node is not a standby streaming from the active.
func (n *debNode) streaming(t *testing.T) error {
	t.Helper()
	var st nodeapi.NodeStatus
	if err := n.get(t, "/v1/status/node", &st); err != nil {
		return err
	}
	if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming {
		return fmt.Errorf("%s is %s, streaming %v", n.name, st.Role, st.Postgres.Streaming)
	}
	return nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
