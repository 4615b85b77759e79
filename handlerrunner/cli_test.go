package handlerrunner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// cli runs the understudy CLI with a profile of the test cluster.
func (c *tcluster) cli(t testing.TB, args ...string) (string, error) {
	t.Helper()
	profiles := filepath.Join(c.profileDir(t), "profiles.json")
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.apiURL())
	}
	if _, err := os.Stat(profiles); err != nil {
		add := exec.Command(c.bin, "profile", "add", "t", "--nodes", strings.Join(urls, ","))
		add.Env = append(os.Environ(), "UNDERSTUDY_PROFILES="+profiles)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("profile add: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(c.bin, append(args, "--profile", "t")...)
	cmd.Env = append(os.Environ(), "UNDERSTUDY_PROFILES="+profiles)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *tcluster) profileDir(t testing.TB) string {
	if c.profiles == "" {
		c.profiles = t.TempDir()
	}
	return c.profiles
}

// TestRemoveAStoppedStandby: `cluster nodes remove` of a standby takes it out
// of Consul's members and Raft peers, its slot and the member list, and the
// cluster goes on with two nodes; a running node and the active are refused.
func TestRemoveAStoppedStandby(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	c.sample()
	act := c.waitHealthy(startTimeout)
	var gone, stays *tnode
	for _, n := range c.nodes {
		switch {
		case n == act:
		case gone == nil:
			gone = n
		default:
			stays = n
		}
	}
	if out, err := c.cli(t, "cluster", "nodes", "remove", act.name); err == nil || !strings.Contains(out, "set another node active first") {
		t.Fatalf("remove of the active %s: %v\n%s", act.name, err, out)
	}
	if out, err := c.cli(t, "cluster", "nodes", "remove", gone.name); err == nil || !strings.Contains(out, "still running") {
		t.Fatalf("remove of the running %s: %v\n%s", gone.name, err, out)
	}

	c.killNode(gone)
	// Its Consul server may have been the Raft leader: the cluster elects
	// another before it can change anything.
	c.waitHealthy(30*time.Second, gone)
	testenv.Eventually(t, 30*time.Second, func() error {
		leader, err := act.consul.Client(t).Status().Leader()
		if err != nil || leader == "" {
			return fmt.Errorf("no consul leader yet (%v)", err)
		}
		return nil
	})
	if out, err := c.cli(t, "cluster", "nodes", "remove", gone.name); err != nil {
		t.Fatalf("remove of the stopped %s: %v\n%s", gone.name, err, out)
	}

	capi := act.consul.Client(t)
	testenv.Eventually(t, 20*time.Second, func() error {
		members, err := capi.Agent().Members(false)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Name == gone.consul.NodeName {
				return fmt.Errorf("%s still a consul member (status %d)", m.Name, m.Status)
			}
		}
		rc, err := capi.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		if len(rc.Servers) != 2 || slices.ContainsFunc(rc.Servers, func(s *api.RaftServer) bool { return s.Node == gone.consul.NodeName }) {
			return fmt.Errorf("raft peers %v", servers(rc.Servers))
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, func() error {
		var slots []string
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := act.conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "select slot_name from pg_replication_slots")
		if err != nil {
			return err
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			slots = append(slots, s)
		}
		if slices.Contains(slots, "understudy_"+gone.name) {
			return fmt.Errorf("slot of %s still there: %v", gone.name, slots)
		}
		return nil
	})
	out, err := c.cli(t, "cluster", "nodes", "list", "-o", "json")
	if err != nil {
		t.Fatalf("nodes list: %v\n%s", err, out)
	}
	var listed []struct{ Name string }
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("nodes list -o json: %v\n%s", err, out)
	}
	if len(listed) != 2 || slices.ContainsFunc(listed, func(m struct{ Name string }) bool { return m.Name == gone.name }) {
		t.Fatalf("nodes list after the removal: %s", out)
	}

	// Two nodes go on: writes on the active, the other standby streams, and
	// a switchover still works.
	act.exec(t, "create table after_remove (id int)")
	c.waitHealthy(30*time.Second, gone)
	if out, err := c.cli(t, "cluster", "set-active", stays.name); err != nil {
		t.Fatalf("set-active %s with two nodes: %v\n%s", stays.name, err, out)
	}
	if got := c.waitHealthy(60*time.Second, gone); got != stays {
		t.Fatalf("active is %s, want %s", got.name, stays.name)
	}
	st, err := stays.nodeStatus()
	if err != nil || st.Role != nodeapi.RoleActive {
		t.Fatalf("%s: %+v %v", stays.name, st, err)
	}
}

func servers(ss []*api.RaftServer) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Node)
	}
	return out
}

// TestNodeOptionsAtRuntime: `cluster nodes update` changes a node's check
// TTL multiplier, priority and nofailover without a restart, and without a
// flap of its checks; a nofailover node is refused as a switchover target
// until the option is lifted.
func TestNodeOptionsAtRuntime(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	c.sample()
	act := c.waitHealthy(startTimeout)
	var s *tnode
	for _, n := range c.nodes {
		if n != act {
			s = n
			break
		}
	}
	out, err := c.cli(t, "cluster", "nodes", "update", s.name,
		"--option", "nofailover=true", "--option", "check_ttl_multiplier=3", "--option", "priority=7")
	if err != nil {
		t.Fatalf("nodes update: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		st, err := s.nodeStatus()
		if err != nil {
			return err
		}
		m := c.member(t, s.name)
		if !st.NoFailover || st.Priority != 7 || !m.NoFailover || m.Priority != 7 || m.TTLMultiplier != 3 {
			return fmt.Errorf("%s: status nofailover %v priority %d; member record nofailover %v priority %d ttl_multiplier %d",
				s.name, st.NoFailover, st.Priority, m.NoFailover, m.Priority, m.TTLMultiplier)
		}
		if !st.HasSession {
			return fmt.Errorf("%s lost its session: its checks flapped on the new TTL", s.name)
		}
		return nil
	})
	if out, err := c.cli(t, "cluster", "set-active", s.name); err == nil || !strings.Contains(out, "nofailover") {
		t.Fatalf("set-active to a nofailover node: %v\n%s", err, out)
	}
	if out, err := c.cli(t, "cluster", "nodes", "update", s.name, "--option", "nofailover=false"); err != nil {
		t.Fatalf("nodes update: %v\n%s", err, out)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st, err := s.nodeStatus(); err != nil || st.NoFailover {
			return fmt.Errorf("%s still nofailover (%v)", s.name, err)
		}
		return nil
	})
	if out, err := c.cli(t, "cluster", "set-active", s.name); err != nil {
		t.Fatalf("set-active %s: %v\n%s", s.name, err, out)
	}
	if got := c.waitHealthy(60 * time.Second); got != s {
		t.Fatalf("active is %s, want %s", got.name, s.name)
	}
}
