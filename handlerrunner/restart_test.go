package handlerrunner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestRollingRestartAppliesAPendingParameter: a parameter PostgreSQL reads
// only at start, set cluster-wide, reaches every node with `cluster restart
// --all --pending`: standbys first, then one switchover. A client writing
// all along through whichever node answers /status 200 (as HAProxy routes)
// sees one pause, within the switchover bound, and loses nothing.
func TestRollingRestartAppliesAPendingParameter(t *testing.T) {
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	c.seedRow(act)
	cli := func(wantOK bool, args ...string) string {
		t.Helper()
		out, err := c.cli(t, args...)
		if (err == nil) != wantOK {
			t.Fatalf("understudy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out := cli(false, "cluster", "restart", act.name); !strings.Contains(out, "is the active node") {
		t.Fatalf("restart of the active %s by name:\n%s", act.name, out)
	}
	cli(true, "cluster", "config", "set", "postgres.parameters.max_connections=150")

	w := c.startWriter()
	w.waitMore(t, 10)
	before := eventKinds(t, cli(true, "cluster", "history", "--limit", "500", "-o", "json"))
	sessions := c.sessions(act)
	out := cli(true, "cluster", "restart", "--all", "--pending")
	t.Logf("cluster restart --all --pending:\n%s", out)
	w.waitMore(t, 10) // on the new active
	acked := w.finish()

	now := c.waitHealthy(rejoinTimeout)
	if now == act {
		t.Errorf("%s is still the active after a restart of every node", act.name)
	}
	// A planned restart is no failure: each standby kept its Consul
	// session through it (the new active took the lock with its own).
	after := c.sessions(now)
	for _, n := range c.nodes {
		if n != act && (sessions[n.name] == "" || after[n.name] != sessions[n.name]) {
			t.Errorf("%s's consul session went from %q to %q across its planned restart; its checks must not fail it", n.name, sessions[n.name], after[n.name])
		}
	}
	if m := missing(acked, now.ids(t)); len(m) > 0 {
		t.Errorf("%d acknowledged rows missing on %s: %v", len(m), now.name, m[:min(len(m), 10)])
	}
	// The bound: a switchover (README, at most 1.34 s measured) plus the
	// writer finding the new active (a connection a second at most).
	w.atMostOnePause(t, 4*time.Second, "the rolling restart")
	t.Logf("%d rows acknowledged", len(acked))

	for _, n := range c.nodes {
		if v, err := show(n, "max_connections"); err != nil || v != "150" {
			t.Errorf("%s shows max_connections = %q (%v) after the rolling restart, want 150", n.name, v, err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, n := range c.nodes {
			st, err := n.nodeStatus()
			if err != nil || st.Parameters == nil || len(st.Parameters.PendingRestart) > 0 {
				return fmt.Errorf("%s: parameters state %+v (%v), want nothing pending", n.name, st.Parameters, err)
			}
		}
		return nil
	})
	kinds := eventKinds(t, cli(true, "cluster", "history", "--limit", "500", "-o", "json"))
	for k, n := range before {
		kinds[k] -= n
	}
	if kinds[cluster.EventSwitchover] != 1 || kinds[cluster.EventRestart] != 2 || kinds[cluster.EventFailover] != 0 {
		t.Errorf("the rolling restart recorded %v; want one switchover, two restarts (the standbys) and no failover", kinds)
	}

	// Nothing waits any more: a second run restarts nothing.
	out = cli(true, "cluster", "restart", "--all", "--pending")
	if strings.Count(out, "nothing waits for a restart") != len(c.nodes) {
		t.Errorf("a second restart --all --pending:\n%s", out)
	}
}

// TestLoweringAParameterRestartsTheActiveFirst: a parameter a standby needs
// at least the primary's value of, lowered cluster-wide, reaches every node
// with `cluster restart --all --pending`: the active first, in place (a
// switchover would make a standby still running the higher value the
// primary, and a standby restarted first would run less than its primary),
// then the standbys. The active stays the active, writes pause once, for
// its restart, nothing acknowledged is lost, and every standby streams
// again. A standby restarted by name before the active is refused and left
// running: it would not start.
func TestLoweringAParameterRestartsTheActiveFirst(t *testing.T) {
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	c.seedRow(act)
	cli := func(args ...string) string {
		t.Helper()
		out, err := c.cli(t, args...)
		if err != nil {
			t.Fatalf("understudy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	was, err := show(act, "max_connections")
	if err != nil {
		t.Fatal(err)
	}
	cli("cluster", "config", "set", "postgres.parameters.max_connections=60")
	testenv.Eventually(t, 10*time.Second, func() error {
		st, err := act.nodeStatus()
		if err != nil || st.Parameters == nil || !slices.Equal(st.Parameters.Lowered, []string{"max_connections"}) {
			return fmt.Errorf("%s: parameters state %+v (%v), want max_connections lowered (from %s)", act.name, st.Parameters, err, was)
		}
		return nil
	})

	// A standby restarted first would not start: refused, with what to
	// do, and the standby left running.
	var sb *tnode
	for _, n := range c.nodes {
		if n != act {
			sb = n
			break
		}
	}
	out, err := c.cli(t, "cluster", "restart", sb.name)
	if err == nil || !strings.Contains(out, "max_connections = 60 (the primary's: "+was+")") || !strings.Contains(out, "understudy cluster restart --all") {
		t.Errorf("cluster restart %s before the active: %v\n%s\nwant a refusal naming max_connections and cluster restart --all", sb.name, err, out)
	}
	if st, err := sb.nodeStatus(); err != nil || !st.Postgres.Streaming {
		t.Errorf("%s after the refused restart: streaming %v (%v), want still streaming", sb.name, st.Postgres.Streaming, err)
	}

	w := c.startWriter()
	w.waitMore(t, 10)
	before := eventKinds(t, cli("cluster", "history", "--limit", "500", "-o", "json"))
	out = cli("cluster", "restart", "--all", "--pending")
	t.Logf("cluster restart --all --pending:\n%s", out)
	if !strings.Contains(out, act.name+" (active): max_connections lowered: restarting in place first") {
		t.Errorf("the restart did not say it restarts the active %s in place first:\n%s", act.name, out)
	}
	w.waitMore(t, 10)
	acked := w.finish()

	if now := c.waitHealthy(rejoinTimeout); now != act {
		t.Errorf("%s is the active after the restart, want %s still", now.name, act.name)
	}
	if m := missing(acked, act.ids(t)); len(m) > 0 {
		t.Errorf("%d acknowledged rows missing on %s: %v", len(m), act.name, m[:min(len(m), 10)])
	}
	w.atMostOnePause(t, 4*time.Second, "the active's restart in place")
	t.Logf("%d rows acknowledged", len(acked))
	for _, n := range c.nodes {
		if v, err := show(n, "max_connections"); err != nil || v != "60" {
			t.Errorf("%s shows max_connections = %q (%v) after the restart, want 60", n.name, v, err)
		}
	}
	kinds := eventKinds(t, cli("cluster", "history", "--limit", "500", "-o", "json"))
	for k, n := range before {
		kinds[k] -= n
	}
	if kinds[cluster.EventRestart] != 3 || kinds[cluster.EventSwitchover] != 0 || kinds[cluster.EventFailover] != 0 {
		t.Errorf("the restart recorded %v; want three restarts and no switchover or failover", kinds)
	}
}

// sessions returns each node's handler-runner session, as the servers
// have them.
func (c *tcluster) sessions(via *tnode) map[string]string {
	c.t.Helper()
	ss, _, err := via.consul.Client(c.t).Session().List(&api.QueryOptions{RequireConsistent: true})
	if err != nil {
		c.t.Fatalf("list consul sessions: %v", err)
	}
	ids := map[string]string{}
	for _, s := range ss {
		for _, n := range c.nodes {
			if s.Name == "understudy-handler-runner "+n.name {
				ids[n.name] = s.ID
			}
		}
	}
	return ids
}

// eventKinds counts the events of history -o json by kind.
func eventKinds(t *testing.T, raw string) map[string]int {
	t.Helper()
	var hist []cluster.Event
	if err := json.Unmarshal([]byte(raw), &hist); err != nil {
		t.Fatalf("history -o json: %v\n%s", err, raw)
	}
	kinds := map[string]int{}
	for _, e := range hist {
		kinds[e.Kind]++
	}
	return kinds
}

// TestReinitRepairsADamagedStandby: a standby whose table file was
// overwritten (its PostgreSQL fails reading it) is cloned afresh with
// `cluster reinit`: it streams again, answers with every row, and its old
// data directory is kept aside where the event says.
func TestReinitRepairsADamagedStandby(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	c.seedRow(act)
	act.exec(t, "insert into rows select generate_series(2, 2000)")
	var sb *tnode
	for _, n := range c.nodes {
		if n != act {
			sb = n
			break
		}
	}
	count := func(n *tnode) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := n.conn(ctx)
		if err != nil {
			return 0, err
		}
		defer conn.Close(ctx)
		var k int
		err = conn.QueryRow(ctx, "select count(*) from rows").Scan(&k)
		return k, err
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if k, err := count(sb); err != nil || k != 2000 {
			return fmt.Errorf("%s has %d rows (%v), want 2000", sb.name, k, err)
		}
		return nil
	})
	// A checkpoint on both, so that the standby's restart below replays no
	// full-page image that would repair the page.
	act.exec(t, "checkpoint")
	sb.exec(t, "checkpoint")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := sb.conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rel string
	if err := conn.QueryRow(ctx, "select pg_relation_filepath('rows')").Scan(&rel); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	file := filepath.Join(sb.inst.DataDir(), rel)
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.cli(t, "cluster", "restart", sb.name) // its buffers go: the page is read from the file
	if k, err := count(sb); err == nil {
		t.Fatalf("%s still counts %d rows after its table file was overwritten: the damage did not take", sb.name, k)
	} else {
		t.Logf("%s damaged: %v", sb.name, err)
	}

	out, err := c.cli(t, "cluster", "reinit", sb.name, "--timeout", "2m")
	if err != nil {
		t.Fatalf("cluster reinit %s: %v\n%s", sb.name, err, out)
	}
	t.Logf("cluster reinit %s:\n%s", sb.name, out)
	if k, err := count(sb); err != nil || k != 2000 {
		t.Fatalf("%s after the reinit has %d rows (%v), want 2000", sb.name, k, err)
	}
	aside, _ := filepath.Glob(sb.inst.DataDir() + ".old-*")
	if len(aside) != 1 || !strings.Contains(out, aside[0]) {
		t.Errorf("old data directories %v; want one, named in the CLI's output:\n%s", aside, out)
	}
	if _, err := c.cli(t, "cluster", "reinit", act.name); err == nil {
		t.Errorf("reinit of the active %s was not refused", act.name)
	}
	if now := c.waitHealthy(rejoinTimeout); now != act {
		t.Errorf("the active moved from %s to %s during a standby's reinit", act.name, now.name)
	}
}
