package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// systemdNode is a node on a host whose init is systemd, driven through the
// CLI as an operator does it.
type systemdNode struct {
	*tnode
	host  *testenv.SystemdHost
	ports nodePorts
	files string // its files "shared" block's directory
}

func newSystemdNode(t *testing.T, name, addr string) *systemdNode {
	t.Helper()
	shared := testenv.TempDir(t, "shared-"+name)
	cfg, ports := nodeConfig(t, name, addr, fmt.Sprintf(`syncthing {
  binary   = %q
  port     = %d
  api_port = %d
}
files "shared" { path = %q }
service "app" {
  systemd_unit = "app.service"
  active_only  = true
}`, testenv.SyncthingBinary(t), testenv.FreePortOn(t, addr), testenv.FreePort(t), shared))
	// The Consul agent's unit runs as a user of its own, which must be able
	// to enter node.data_dir (TempDir makes it 0700).
	if err := os.Chmod(cfg.Node.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Booted after the node's directories were made, so that its power goes
	// off (every process of the node killed) before they are removed.
	h := testenv.BootSystemd(t, name)
	// The managed application: a unit of the host's, run on the active only.
	app := "[Unit]\nDescription=the managed application (test)\n[Service]\nExecStart=/bin/sleep infinity\n"
	if err := os.WriteFile(filepath.Join(h.UnitDir(), "app.service"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	return &systemdNode{tnode: &tnode{cfg: cfg}, host: h, ports: ports, files: shared}
}

// cli runs understudy on the node's host with the node's configuration
// (and Consul ports, for cluster start and join), and fails the test when
// it fails.
func (n *systemdNode) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.try(t, args...)
	if err != nil {
		t.Fatalf("understudy %s on %s: %v", strings.Join(args[:2], " "), n.host.Name, err)
	}
	return out
}

// try runs understudy as cli does and returns how it ended.
func (n *systemdNode) try(t *testing.T, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--config", n.cfg.Path)
	if args[0] == "cluster" {
		args = append(args, "--consul", testenv.ConsulBinary(t),
			"--consul-serf-port", strconv.Itoa(n.ports.serf), "--consul-server-port", strconv.Itoa(n.ports.server))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := n.host.Command(ctx, testenv.Understudy(t), args...).CombinedOutput()
	t.Logf("[%s] understudy %s:\n%s", n.host.Name, args[1], out)
	return string(out), err
}

// requireUnits fails unless each of the node's processes (Syncthing among
// them: the node has a files block) runs as a unit that is enabled
// (started at boot) and active.
func (n *systemdNode) requireUnits(t *testing.T) {
	t.Helper()
	for _, p := range lifecycle.ProcessNames {
		unit := p + ".service"
		for prop, want := range map[string]string{"UnitFileState": "enabled", "ActiveState": "active"} {
			if got, err := n.host.Property(unit, prop); err != nil || got != want {
				t.Fatalf("on %s: %s %s=%q (%v), want %q\n%s", n.host.Name, unit, prop, got, err, want, n.host.Journal(unit, 30))
			}
		}
	}
	for unit, want := range map[string]string{lifecycle.ConsulProcess: lifecycle.ConsulUser, lifecycle.SyncthingProcess: lifecycle.SyncthingUser} {
		pid, _ := n.host.Property(unit+".service", "MainPID") // as the host sees it, for its ps
		if user := strings.TrimSpace(n.host.Run(t, "ps", "-o", "user=", "-p", pid)); user != want {
			t.Fatalf("on %s %s runs as %q, want %s", n.host.Name, unit, user, want)
		}
	}
}

// appRuns fails unless the node's app.service, its active-only service,
// is active exactly when want.
func (n *systemdNode) appRuns(t *testing.T, want bool) {
	t.Helper()
	st, err := n.host.Property("app.service", "ActiveState")
	if err != nil || (st == "active") != want {
		t.Fatalf("on %s: app.service is %q (%v), want running %v", n.host.Name, st, err, want)
	}
}

// restarted waits until systemd runs unit with a main PID other than old.
func (n *systemdNode) restarted(t *testing.T, unit string, old int) int {
	t.Helper()
	var pid int
	err := testenv.WaitFor(context.Background(), 30*time.Second, func() error {
		if pid = n.host.MainPID(t, unit); pid == 0 || pid == old {
			return fmt.Errorf("%s: main PID %d", unit, pid)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("systemd did not restart %s on %s: %v\n%s", unit, n.host.Name, err, n.host.Journal(unit, 30))
	}
	return pid
}

// streamingStandby waits until the node says it is a standby streaming
// from the active.
func (n *systemdNode) streamingStandby(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		var st nodeapi.NodeStatus
		if err := n.get(t, "/v1/status/node", &st); err != nil {
			return err
		}
		if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming {
			return fmt.Errorf("%s is %s, streaming %v", n.cfg.Node.Name, st.Role, st.Postgres.Streaming)
		}
		return nil
	})
}

// TestClusterOnSystemdHosts: on hosts whose init is systemd, cluster start
// and cluster join run the node's processes as enabled systemd units. After
// the command has exited, systemd restarts a process that dies, the journal
// holds the daemons' output, and a host that loses power comes back into
// the cluster with no command run: its rows and files catch up. node stop
// on the active hands over and node start brings it back as a standby. An
// active-only service that is a unit of the host runs on the active only.
func TestClusterOnSystemdHosts(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	// Three nodes, so that Consul keeps its quorum while one is down.
	a := newSystemdNode(t, "a", "127.0.0.84")
	b := newSystemdNode(t, "b", "127.0.0.85")
	c := newSystemdNode(t, "c", "127.0.0.86")

	// A start that fails after the Consul agent's unit was installed (a
	// stray file where Syncthing's home goes) leaves no unit, enabled or
	// running, behind, and the file it did not create; once the file is
	// gone, start succeeds.
	stray := a.cfg.SyncthingHome()
	if err := os.WriteFile(stray, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := a.try(t, "cluster", "start", "--processes", "systemd"); err == nil || !strings.Contains(out, "starting the Consul agent") {
		t.Fatalf("cluster start with a stray file where Syncthing's home goes: %v\n%s", err, out)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Fatalf("the failed start removed the stray file it did not create: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(a.host.UnitDir(), "*", "understudy-*")); len(left) > 0 {
		t.Fatalf("a failed start left links to its units: %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(a.host.UnitDir(), "understudy-*")); len(left) > 0 {
		t.Fatalf("a failed start left units: %v", left)
	}
	if units := a.host.Run(t, "systemctl", "list-units", "--all", "--no-legend", "understudy-*"); strings.TrimSpace(units) != "" {
		t.Fatalf("a failed start left units loaded:\n%s", units)
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}

	out := a.cli(t, "cluster", "start", "--processes", "systemd")
	token := regexp.MustCompile(`ust1\.\S+`).FindString(out)
	fp := regexp.MustCompile(`sha256:[0-9a-f]+`).FindString(out)
	if token == "" || fp == "" || !strings.Contains(out, "journalctl -u 'understudy-*'") {
		t.Fatalf("cluster start printed no token, fingerprint or journalctl hint:\n%s", out)
	}
	a.requireUnits(t)
	if err := a.get(t, "/status", nil); err != nil {
		t.Fatalf("a after cluster start: %v", err)
	}
	// The units run this node's own paths (a data_dir of the test's), not
	// the packaged defaults.
	if exec, _ := a.host.Property(lifecycle.CheckRunnerProcess+".service", "ExecStart"); !strings.Contains(exec, a.cfg.Path) {
		t.Fatalf("check-runner unit runs %s, want --config %s", exec, a.cfg.Path)
	}

	a.appRuns(t, true)

	// --processes auto: systemd, since it is the hosts' init.
	for _, n := range []*systemdNode{b, c} {
		tokenFile := filepath.Join(filepath.Dir(n.cfg.Path), "join-token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		n.cli(t, "cluster", "join", strings.TrimPrefix(a.cfg.APIURL(), "https://"), "--token-file", tokenFile, "--ca-fingerprint", fp)
		n.requireUnits(t)
		n.streamingStandby(t, 30*time.Second)
		n.appRuns(t, false)
	}
	// The consul-watcher runs as a unit on every node: each node's API
	// serves its view, every server reached.
	for _, n := range []*systemdNode{a, b, c} {
		testenv.Eventually(t, 30*time.Second, func() error {
			var v cluster.Partition
			if err := n.get(t, "/v1/status/partition", &v); err != nil {
				return err
			}
			if v.State != cluster.PartitionMajority || v.Servers != 3 || v.ReachedServers != 3 || v.Stale {
				return fmt.Errorf("%s's partition view: %s, %d/%d servers reached, stale %v: %+v", n.cfg.Node.Name, v.State, v.ReachedServers, v.Servers, v.Stale, v.Peers)
			}
			return nil
		})
	}

	conn, err := pgx.Connect(ctx, postgres.ConnString(a.cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create table t (id int primary key); insert into t values (1)"); err != nil {
		t.Fatal(err)
	}
	waitRowsAndFile(t, a, b, 1, "one")

	// A daemon that dies is restarted by systemd, not by any command.
	hr := lifecycle.HandlerRunnerProcess + ".service"
	old := b.host.MainPID(t, hr)
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.restarted(t, hr, old)
	b.streamingStandby(t, 30*time.Second)
	if j := b.host.Journal(hr, 200); len(regexp.MustCompile(`(?m)understudy\[\d+\]: starting$`).FindAllString(j, -1)) < 2 {
		t.Fatalf("the journal of %s on b does not show the daemon starting twice:\n%s", hr, j)
	}
	// A hung one (SIGSTOP) stops sending WATCHDOG=1: systemd kills it
	// after WatchdogSec= and starts it again.
	old = b.host.MainPID(t, hr)
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b.restarted(t, hr, old)
	b.streamingStandby(t, 30*time.Second)
	// SIGABRT makes the Go runtime print every goroutine's stack (what
	// an operator wants of a real hang): look past it.
	if j := b.host.Journal(hr, 5000); !strings.Contains(j, "Watchdog timeout") {
		t.Fatalf("the journal of %s on b does not show systemd's watchdog at work:\n%s", hr, j[max(0, len(j)-4000):])
	}

	// Power loss on c: every process of the host dies at once. At boot
	// systemd starts the enabled units, and c is a standby again, with the
	// rows and files written while it was down.
	c.host.Reboot(t)
	if _, err := conn.Exec(ctx, "insert into t values (2)"); err != nil {
		t.Fatal(err)
	}
	c.requireUnitsWithin(t, time.Minute)
	c.streamingStandby(t, time.Minute)
	waitRowsAndFile(t, a, c, 2, "two")

	// node stop on the active: its units stop and stay enabled, and
	// another node takes over at once; node start brings a back as a
	// standby.
	a.cli(t, "node", "stop")
	for _, p := range lifecycle.ProcessNames {
		unit := p + ".service"
		if st, _ := a.host.Property(unit, "ActiveState"); st != "inactive" {
			t.Errorf("after node stop: %s is %s", unit, st)
		}
		if st, _ := a.host.Property(unit, "UnitFileState"); st != "enabled" {
			t.Errorf("after node stop: %s is %s, want still enabled", unit, st)
		}
	}
	a.appRuns(t, false)
	var next *systemdNode
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, n := range []*systemdNode{b, c} {
			if n.get(t, "/status", nil) == nil {
				next = n
				return nil
			}
		}
		return errors.New("neither b nor c is active")
	})
	// The active-only service follows the active role (started once the
	// node is active: wait for it).
	testenv.Eventually(t, 10*time.Second, func() error {
		if st, _ := next.host.Property("app.service", "ActiveState"); st != "active" {
			return fmt.Errorf("app.service on the new active %s is %s", next.host.Name, st)
		}
		return nil
	})
	a.cli(t, "node", "start")
	a.requireUnits(t)
	a.streamingStandby(t, time.Minute)
}

// requireUnitsWithin waits for requireUnits to hold, as after a boot.
func (n *systemdNode) requireUnitsWithin(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		var bad []string
		for _, p := range lifecycle.ProcessNames {
			if st, _ := n.host.Property(p+".service", "ActiveState"); st != "active" {
				bad = append(bad, p+" "+st)
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("on %s, units not active: %v", n.host.Name, bad)
		}
		return nil
	})
	n.requireUnits(t)
}

// waitRowsAndFile writes a file into the active a's mirrored directory, as
// an application's user would (not Syncthing's, mode 0600), and waits until
// b has it, owned by the same user, and rows rows of the table t.
func waitRowsAndFile(t *testing.T, a, b *systemdNode, rows int, name string) {
	t.Helper()
	ctx := context.Background()
	const appUID, appGID = 4242, 4343
	path := filepath.Join(a.files, name)
	if err := os.WriteFile(path, []byte(name), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, appUID, appGID); err != nil {
		t.Fatal(err)
	}
	bc := b.cfg.Postgres
	testenv.Eventually(t, 60*time.Second, func() error {
		conn, err := pgx.Connect(ctx, postgres.ConnString(bc))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from t").Scan(&n); err != nil {
			return err
		}
		if n != rows {
			return fmt.Errorf("b has %d rows of t, want %d", n, rows)
		}
		if got, err := os.ReadFile(filepath.Join(b.files, name)); err != nil || string(got) != name {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("b has no file %s yet", name)
			}
			return fmt.Errorf("b's file %s: %q %v", name, got, err)
		}
		fi, err := os.Stat(filepath.Join(b.files, name))
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != appUID || st.Gid != appGID {
			return fmt.Errorf("b's file %s is owned by %d:%d, want %d:%d as on the active", name, st.Uid, st.Gid, appUID, appGID)
		}
		return nil
	})
}
