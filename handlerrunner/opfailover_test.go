package handlerrunner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// call sends one request to n's API with body as JSON (nil: none) and
// returns the status and the decoded answer.
func call(t testing.TB, n *tnode, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.apiURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Timeout: 90 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// failover asks n for a failover to target and wants the status want.
func failoverVia(t testing.TB, n *tnode, in nodeapi.FailoverRequest, want int) map[string]any {
	t.Helper()
	if in.Timeout == "" {
		in.Timeout = "60s"
	}
	code, out := call(t, n, http.MethodPost, "/v1/cluster/failover", in)
	if code != want {
		t.Fatalf("failover %+v through %s: %d %v, want %d", in, n.name, code, out, want)
	}
	t.Logf("failover %+v through %s: %d %v", in, n.name, code, out)
	return out
}

// pauseVia pauses the cluster through n and waits until every node in
// nodes shows it.
func (c *tcluster) pauseVia(n *tnode, nodes ...*tnode) {
	c.t.Helper()
	if code, out := call(c.t, n, http.MethodPost, "/v1/cluster/pause", nodeapi.PauseRequest{Reason: "test"}); code != http.StatusOK {
		c.t.Fatalf("pause through %s: %d %v", n.name, code, out)
	}
	testenv.Eventually(c.t, 15*time.Second, func() error {
		for _, m := range nodes {
			st, err := m.nodeStatus()
			if err != nil {
				return err
			}
			if st.Paused == nil {
				return fmt.Errorf("%s does not show the pause yet", m.name)
			}
		}
		return nil
	})
}

// standbys are the nodes other than act, in order.
func (c *tcluster) standbys(act *tnode) (*tnode, *tnode) {
	var out []*tnode
	for _, n := range c.nodes {
		if n != act {
			out = append(out, n)
		}
	}
	return out[0], out[1]
}

// noActiveFor fails the test if any node answers /status 200 within d.
func (c *tcluster) noActiveFor(d time.Duration, why string) {
	c.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		for _, n := range c.nodes {
			if code := n.statusCode(); code == http.StatusOK {
				c.t.Fatalf("%s answers /status 200 %s", n.name, why)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// eventsOf are the events of kind on n.
func eventsOf(t testing.TB, n *tnode, kind string) []cluster.Event {
	var out []cluster.Event
	for _, e := range n.events(t) {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestOperatorFailoverInPausedCluster: while the active is healthy, a
// failover is refused (a switchover is the way). Paused, the active node
// killed: nothing takes over. cluster failover --to a caught-up standby
// makes it the active without --force, and writes land on it.
func TestOperatorFailoverInPausedCluster(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	s := c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)
	target, other := c.standbys(old)

	out := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name}, http.StatusConflict)
	if msg, _ := out["error"].(string); !strings.Contains(msg, "set-active") {
		t.Fatalf("failover refused with %q; want it to name the switchover (set-active)", msg)
	}

	c.pauseVia(other, c.nodes...)
	c.killNode(old)
	c.noActiveFor(10*time.Second, "while the cluster is paused and its active node was killed")
	for _, n := range []*tnode{target, other} {
		if st, err := n.nodeStatus(); err != nil || st.Role != nodeapi.RoleStandby {
			t.Fatalf("%s while paused: role %s, %v; want standby", n.name, st.Role, err)
		}
	}

	plan := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name, DryRun: true}, http.StatusOK)
	if plan["loses_data"] != false || plan["refused"] != nil {
		t.Fatalf("plan of a failover to the caught-up %s: %v; want it to lose nothing and not be refused", target.name, plan)
	}
	start := time.Now()
	res := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name}, http.StatusOK)
	if res["active"] != target.name {
		t.Fatalf("failover answered %v; want %s active", res, target.name)
	}
	act, took := c.waitWritable(old, start, 30*time.Second)
	if act != target {
		t.Fatalf("%s is active; want %s", act.name, target.name)
	}
	t.Logf("failover to %s: writable after %v", target.name, took.Round(time.Millisecond))
	if ids := target.ids(t); !ids[1] {
		t.Fatalf("row 1, written before the kill, is missing on %s", target.name)
	}
	if s.everActive(other.name) {
		t.Errorf("%s was active at some point; only %s was asked for", other.name, target.name)
	}
	evs := eventsOf(t, target, cluster.EventFailoverRequest)
	if len(evs) != 1 || evs[0].To != target.name || evs[0].From != old.name || evs[0].Details["gap_bytes"] != "0" || evs[0].Details["paused"] != "true" {
		t.Fatalf("failover-request events: %+v; want one, %s to %s with gap 0 in a paused cluster", evs, old.name, target.name)
	}
}

// TestOperatorFailoverThatWouldLoseData: in a paused cluster, the target's
// walsender on the active is frozen while the active writes, then the
// active node is killed: the target lacks those rows. A failover to it is
// refused without --force, naming the gap, and goes through with it: the
// target takes writes, and the rows it never received are gone from it.
func TestOperatorFailoverThatWouldLoseData(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)
	target, other := c.standbys(old)
	c.pauseVia(other, c.nodes...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := old.conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sender int
	if err := conn.QueryRow(ctx, "select pid from pg_stat_replication where application_name = $1", target.name).Scan(&sender); err != nil {
		t.Fatalf("walsender of %s on %s: %v", target.name, old.name, err)
	}
	if err := syscall.Kill(sender, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A stopped process outlives its postmaster's death; killed here
	// (SIGKILL ends a stopped process), and at the end whatever happens.
	t.Cleanup(func() { _ = syscall.Kill(sender, syscall.SIGKILL) })
	for id := 2; id <= 11; id++ {
		if _, err := conn.Exec(ctx, "insert into rows values ($1)", id); err != nil {
			t.Fatal(err)
		}
	}
	var written string
	if err := conn.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&written); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	lsn, err := cluster.ParseLSN(written)
	if err != nil {
		t.Fatal(err)
	}
	// The yardstick is what the active published: wait until its member
	// record shows the writes (read from a node that survives the kill).
	testenv.Eventually(t, 10*time.Second, func() error {
		var m cluster.Member
		pair, _, err := other.consul.Client(t).KV().Get("understudy/t/members/"+old.name, nil)
		if err != nil || pair == nil || json.Unmarshal(pair.Value, &m) != nil {
			return fmt.Errorf("read the member record of %s: %v", old.name, err)
		}
		if m.WriteLSN < lsn {
			return fmt.Errorf("%s's member record shows %v, the writes end at %v", old.name, m.WriteLSN, lsn)
		}
		return nil
	})
	if pos := target.position(t); pos >= lsn {
		t.Fatalf("%s is at %v, not behind the writes ending at %v: its walsender was not frozen", target.name, pos, lsn)
	}
	c.killNode(old)
	_ = syscall.Kill(sender, syscall.SIGKILL)

	// While the dead node's session still holds the lock, nobody can tell
	// it from an active cut off and still taking writes: the gap is
	// unknown, and only --force goes ahead.
	out := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name}, http.StatusConflict)
	if plan, _ := out["plan"].(map[string]any); plan["former_active_holds_lock"] == true && plan["gap_bytes"].(float64) != -1 {
		t.Fatalf("failover while %s's session holds the lock: plan %v; want the gap unknown", old.name, plan)
	}
	// Once Consul has ended its session (its agent is gone), the gap is
	// what it last published.
	testenv.Eventually(t, 30*time.Second, func() error {
		pair, _, err := other.consul.Client(t).KV().Get("understudy/t/leader", nil)
		if err != nil || pair == nil {
			return fmt.Errorf("read the leader key: %v", err)
		}
		if pair.Session != "" {
			return fmt.Errorf("the leader key is still held by %s's session %s", old.name, pair.Session)
		}
		return nil
	})
	out = failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name}, http.StatusConflict)
	msg, _ := out["error"].(string)
	plan, _ := out["plan"].(map[string]any)
	if !strings.Contains(msg, "--force") || plan["loses_data"] != true || plan["gap_bytes"].(float64) <= 0 {
		t.Fatalf("failover without --force refused with %q, plan %v; want the gap shown and --force named", msg, plan)
	}
	// The CLI shows the gap and refuses the same way; with --force it
	// asks, and without a terminal to ask on it wants --yes.
	outCLI, err := c.cli(t, "cluster", "failover", "--to", target.name)
	if err == nil || !strings.Contains(outCLI, "bytes of WAL would be lost") || !strings.Contains(outCLI, "--force") {
		t.Fatalf("cluster failover --to %s without --force: %v\n%s\nwant it refused, the gap shown and --force named", target.name, err, outCLI)
	}
	outCLI, err = c.cli(t, "cluster", "failover", "--to", target.name, "--force")
	if err == nil || !strings.Contains(outCLI, "--yes") {
		t.Fatalf("cluster failover --force without a terminal: %v\n%s\nwant it refused naming --yes", err, outCLI)
	}
	c.noActiveFor(2*time.Second, "after a refused failover in a paused cluster")

	start := time.Now()
	outCLI, err = c.cli(t, "cluster", "failover", "--to", target.name, "--force", "--yes")
	if err != nil || !strings.Contains(outCLI, target.name+" is the active node") {
		t.Fatalf("cluster failover --to %s --force --yes: %v\n%s", target.name, err, outCLI)
	}
	t.Logf("cluster failover --to %s --force --yes:\n%s", target.name, outCLI)
	act, _ := c.waitWritable(old, start, 30*time.Second)
	if act != target {
		t.Fatalf("%s is active; want %s", act.name, target.name)
	}
	ids := target.ids(t)
	if !ids[1] {
		t.Fatalf("row 1, which %s had, is missing on it", target.name)
	}
	for id := 2; id <= 11; id++ {
		if ids[id] {
			t.Fatalf("row %d is on %s, which never received it: the test did not make it behind", id, target.name)
		}
	}
	evs := eventsOf(t, target, cluster.EventFailoverRequest)
	if len(evs) != 1 || evs[0].Details["forced"] != "true" || evs[0].Details["gap_bytes"] == "0" {
		t.Fatalf("failover-request events: %+v; want one, forced, with the gap", evs)
	}
}

// TestMaintenanceNodeIsNeverChosen: a standby in maintenance, given the
// highest priority, is not chosen when the active's PostgreSQL dies (the
// other standby is), a switchover to it is refused, the active cannot be
// put in maintenance, and /metrics and the cluster status say so.
func TestMaintenanceNodeIsNeverChosen(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	s := c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)
	maint, other := c.standbys(old)

	code, out := call(t, other, http.MethodPut, "/v1/cluster/nodes/"+old.name+"/maintenance", nil)
	if msg, _ := out["error"].(string); code != http.StatusConflict || !strings.Contains(msg, "switch over first") {
		t.Fatalf("maintenance on the active %s: %d %v; want 409 saying to switch over first", old.name, code, out)
	}
	if code, out := call(t, other, http.MethodPut, "/v1/cluster/nodes/"+maint.name+"/options", map[string]any{"priority": 1000}); code != http.StatusOK {
		t.Fatalf("priority of %s: %d %v", maint.name, code, out)
	}
	if out, err := c.cli(t, "node", "maintenance", "on", maint.name, "--reason", "disk"); err != nil {
		t.Fatalf("node maintenance on %s: %v\n%s", maint.name, err, out)
	}
	testenv.Eventually(t, 15*time.Second, func() error {
		st, err := maint.nodeStatus()
		if err != nil || st.Maintenance == nil || st.Priority != 1000 {
			return fmt.Errorf("%s: maintenance %+v, priority %d, %v", maint.name, st.Maintenance, st.Priority, err)
		}
		return nil
	})
	if m := maint.metrics(t); !strings.Contains(m, "understudy_node_maintenance 1") {
		t.Errorf("/metrics of %s does not show the maintenance", maint.name)
	}
	if m := other.metrics(t); !strings.Contains(m, "understudy_node_maintenance 0") {
		t.Errorf("/metrics of %s shows a maintenance", other.name)
	}
	var cs nodeapi.ClusterStatus
	if code, out := call(t, other, http.MethodGet, "/v1/status/cluster", nil); code != http.StatusOK {
		t.Fatalf("cluster status: %d %v", code, out)
	} else if b, _ := json.Marshal(out); json.Unmarshal(b, &cs) != nil || cs.Maintenance[maint.name].Reason != "disk" {
		t.Fatalf("cluster status does not show %s in maintenance: %v", maint.name, out)
	}

	if out, err := c.cli(t, "cluster", "nodes", "list"); err != nil || !strings.Contains(out, "replica (maintenance)") {
		t.Fatalf("cluster nodes list: %v\n%s\nwant %s shown in maintenance", err, out, maint.name)
	}
	if out := switchover(t, old, maint.name, http.StatusConflict); !strings.Contains(fmt.Sprint(out["error"]), "maintenance") {
		t.Fatalf("switchover to %s refused with %v; want the maintenance named", maint.name, out)
	}

	killed := time.Now()
	if err := syscall.Kill(old.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	act, took := c.waitWritable(old, killed, postgresKillBound)
	t.Logf("postgres of %s killed: %s active after %v", old.name, act.name, took.Round(time.Millisecond))
	if act != other || s.everActive(maint.name) {
		t.Fatalf("%s became active (%s ever active: %v); want %s: %s is in maintenance", act.name, maint.name, s.everActive(maint.name), other.name, maint.name)
	}
	if ids := act.ids(t); !ids[1] {
		t.Fatalf("row 1 is missing on %s", act.name)
	}

	if code, out := call(t, other, http.MethodDelete, "/v1/cluster/nodes/"+maint.name+"/maintenance", nil); code != http.StatusOK {
		t.Fatalf("maintenance off %s: %d %v", maint.name, code, out)
	}
	evs := eventsOf(t, other, cluster.EventMaintenance)
	if len(evs) != 2 {
		t.Fatalf("maintenance events: %+v; want on and off", evs)
	}
}

// TestOperatorFailoverWhenNoStandbyIsEligible: not paused, both standbys
// further behind than maximum_lag_on_failover (their WAL senders on the
// active frozen while it writes 4 MB), the active node killed: the election
// chooses nobody. cluster failover --to one of them is refused without
// --force and, forced, makes it the active while the election is still
// trying; the other standby follows it.
func TestOperatorFailoverWhenNoStandbyIsEligible(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, func(int) extraHCL { return extraHCL{postgres: `maximum_lag_on_failover = "1MB"`} })
	c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)
	target, other := c.standbys(old)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := old.conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "select pid from pg_stat_replication")
	if err != nil {
		t.Fatal(err)
	}
	var senders []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		senders = append(senders, pid)
	}
	if len(senders) != 2 {
		t.Fatalf("%d WAL senders on %s, want 2", len(senders), old.name)
	}
	for _, pid := range senders {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	if _, err := conn.Exec(ctx, "create table filler as select g, repeat('x', 1000) as pad from generate_series(1, 4000) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	behind := max(target.position(t), other.position(t))
	testenv.Eventually(t, 10*time.Second, func() error {
		var l cluster.Leader
		pair, _, err := other.consul.Client(t).KV().Get("understudy/t/leader", nil)
		if err != nil || pair == nil || json.Unmarshal(pair.Value, &l) != nil {
			return fmt.Errorf("read the leader key: %v", err)
		}
		if l.WriteLSN < behind+2<<20 {
			return fmt.Errorf("the leader key shows %v, the standbys are at %v: not yet 2 MB apart", l.WriteLSN, behind)
		}
		return nil
	})
	c.killNode(old)
	for _, pid := range senders {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	c.noActiveFor(8*time.Second, "though every standby is further behind than maximum_lag_on_failover")

	out := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name}, http.StatusConflict)
	if msg, _ := out["error"].(string); !strings.Contains(msg, "--force") {
		t.Fatalf("failover without --force refused with %q; want --force named", msg)
	}
	start := time.Now()
	res := failoverVia(t, other, nodeapi.FailoverRequest{Target: target.name, Force: true}, http.StatusOK)
	if res["active"] != target.name {
		t.Fatalf("forced failover answered %v; want %s active", res, target.name)
	}
	act, took := c.waitWritable(old, start, 30*time.Second)
	if act != target {
		t.Fatalf("%s is active; want %s", act.name, target.name)
	}
	t.Logf("forced failover to %s: writable after %v", target.name, took.Round(time.Millisecond))
	if got := c.waitHealthy(rejoinTimeout, old); got != target {
		t.Fatalf("active changed again: %s", got.name)
	}
	if ids := target.ids(t); !ids[1] {
		t.Fatalf("row 1 is missing on %s", target.name)
	}
}
