package handlerrunner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// ack is one row a node's PostgreSQL acknowledged to the writers.
type ack struct {
	node string
	seq  int
	at   time.Time
}

// writers write a numbered row every 20 ms straight to every node's
// PostgreSQL, as clients that bypass HAProxy would, and log each row a node
// acknowledged with the node and the time. They are how the fencing tests
// check the promise where the data is: /status answering 400 proves nothing
// about a PostgreSQL that still takes writes.
type writers struct {
	mu   sync.Mutex
	acks []ack
	stop context.CancelFunc
	done sync.WaitGroup
}

// startWriters creates the acks table on act (replicated to the standbys)
// and starts one writer per node.
func (c *tcluster) startWriters(act *tnode) *writers {
	c.t.Helper()
	act.exec(c.t, "create table if not exists acks (node text, seq int, primary key (node, seq))")
	act.exec(c.t, "create table if not exists rows (id int primary key)")
	c.waitHealthy(30 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{stop: cancel}
	for _, n := range c.nodes {
		w.done.Go(func() { w.write(ctx, n) })
	}
	c.t.Cleanup(w.halt)
	return w
}

func (w *writers) write(ctx context.Context, n *tnode) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for seq := 1; ctx.Err() == nil; seq++ {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			conn, _ = n.conn(cctx)
			cancel()
		}
		if conn != nil {
			ectx, cancel := context.WithTimeout(ctx, time.Second)
			_, err := conn.Exec(ectx, "insert into acks (node, seq) values ($1, $2)", n.name, seq)
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acks = append(w.acks, ack{node: n.name, seq: seq, at: time.Now()})
				w.mu.Unlock()
			} else if conn.IsClosed() || !strings.Contains(err.Error(), "read-only") {
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *writers) halt() {
	w.stop()
	w.done.Wait()
}

// byNode returns the acknowledged rows of each node, in time order.
func (w *writers) byNode() map[string][]ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]ack{}
	for _, a := range w.acks {
		out[a.node] = append(out[a.node], a)
	}
	for _, as := range out {
		sort.Slice(as, func(i, j int) bool { return as[i].at.Before(as[j].at) })
	}
	return out
}

// handedOver checks, after the writers stopped, that old acknowledged no
// write after act's first, and that no two nodes ever took writes at once
// (overlaps). It returns a line for the log.
func (w *writers) handedOver(t testing.TB, old, act *tnode) string {
	t.Helper()
	w.halt()
	for _, o := range w.overlaps() {
		t.Errorf("two writers: %s", o)
	}
	by := w.byNode()
	o, a := by[old.name], by[act.name]
	if len(o) == 0 || len(a) == 0 {
		t.Fatalf("writers saw %d acknowledged rows on %s and %d on %s; want both", len(o), old.name, len(a), act.name)
	}
	lastOld, firstNew := o[len(o)-1], a[0]
	if !lastOld.at.Before(firstNew.at) {
		var late []string
		for _, x := range o {
			if !x.at.Before(firstNew.at) {
				late = append(late, fmt.Sprintf("%d at %s", x.seq, x.at.Format("15:04:05.000")))
			}
		}
		t.Fatalf("two writers: %s acknowledged %d rows after %s's first at %s: %s", old.name, len(late), act.name,
			firstNew.at.Format("15:04:05.000"), strings.Join(late, ", "))
	}
	return fmt.Sprintf("%s's last acknowledged row at %s, %s's first at %s: %v with no writer",
		old.name, lastOld.at.Format("15:04:05.000"), act.name, firstNew.at.Format("15:04:05.000"),
		firstNew.at.Sub(lastOld.at).Round(time.Millisecond))
}

// longestPause returns n's acknowledged rows and the longest time between
// two of them.
func (w *writers) longestPause(n *tnode) ([]ack, time.Duration) {
	as := w.byNode()[n.name]
	var gap time.Duration
	for i := 1; i < len(as); i++ {
		gap = max(gap, as[i].at.Sub(as[i-1].at))
	}
	return as, gap
}

// writerGap splits a node's acknowledged rows into windows of
// writability: a node that takes writes acknowledges one every 20 ms, so a
// pause this long is the end of a window (a failover takes longer).
const writerGap = 500 * time.Millisecond

// overlaps says where two nodes' windows of writability overlapped: never
// two writers, over the whole run and however many failovers it saw.
func (w *writers) overlaps() []string {
	var out []string
	for _, o := range w.overlapWindows() {
		out = append(out, o.text)
	}
	return out
}

// overlap is two nodes' windows of writability that overlapped.
type overlap struct {
	at   time.Time
	span time.Duration
	text string
}

// overlapWindows is overlaps with the time and length of each.
func (w *writers) overlapWindows() []overlap {
	type window struct {
		node        string
		first, last time.Time
		rows        int
	}
	var ws []window
	for name, as := range w.byNode() {
		cur := window{node: name, first: as[0].at, last: as[0].at, rows: 1}
		for _, a := range as[1:] {
			if a.at.Sub(cur.last) > writerGap {
				ws = append(ws, cur)
				cur = window{node: name, first: a.at}
			}
			cur.last = a.at
			cur.rows++
		}
		ws = append(ws, cur)
	}
	var out []overlap
	for i, x := range ws {
		for _, y := range ws[i+1:] {
			if x.node == y.node || x.last.Before(y.first) || y.last.Before(x.first) {
				continue
			}
			from, to := later(x.first, y.first), earlier(x.last, y.last)
			out = append(out, overlap{at: from, span: to.Sub(from), text: fmt.Sprintf("%s took %d writes from %s to %s and %s %d from %s to %s",
				x.node, x.rows, x.first.Format("15:04:05.000"), x.last.Format("15:04:05.000"),
				y.node, y.rows, y.first.Format("15:04:05.000"), y.last.Format("15:04:05.000"))})
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// lost counts the rows old acknowledged that act does not have.
func (w *writers) lost(t testing.TB, old, act *tnode) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := act.conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	have := map[int]bool{}
	rows, err := conn.Query(ctx, "select seq from acks where node = $1", old.name)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		have[s] = true
	}
	n := 0
	for _, a := range w.byNode()[old.name] {
		if !have[a.seq] {
			n++
		}
	}
	return n
}

// killPostgres SIGKILLs a postmaster and every process it started.
func killPostgres(t testing.TB, pid int) {
	t.Helper()
	for _, p := range services.WithChildren(pid) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

func signal(t testing.TB, what string, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("%s %s (pid %d): %v", sig, what, pid, err)
	}
}

// TestHungDaemonsOnTheActive: both daemons of the active node SIGSTOPped,
// its Consul agent and PostgreSQL left running. Its check TTLs run out,
// Consul frees the lock, and another node is promoted; the old active's
// watchdog must have stopped its PostgreSQL first: it acknowledges no write
// after the new active's first. Thawed, it comes back as a standby.
func TestHungDaemonsOnTheActive(t *testing.T) {
	c := newCluster(t, nil)
	old := c.waitHealthy(startTimeout)
	w := c.startWriters(old)

	frozen := time.Now()
	signal(t, "handler-runner", old.handler.PID(), syscall.SIGSTOP)
	signal(t, "check-runner", old.checks.PID(), syscall.SIGSTOP)
	thaw := func() {
		_ = syscall.Kill(old.handler.PID(), syscall.SIGCONT)
		_ = syscall.Kill(old.checks.PID(), syscall.SIGCONT)
	}
	t.Cleanup(thaw)
	act, took := c.waitWritable(old, frozen, nodeKillBound)
	t.Logf("daemons of %s frozen: %s active and took a write after %v", old.name, act.name, took.Round(time.Millisecond))
	// Hold the freeze while the new active takes writes.
	time.Sleep(2 * time.Second)
	t.Log(w.handedOver(t, old, act))
	t.Logf("rows %s acknowledged that %s lacks (asynchronous replication): %d", old.name, act.name, w.lost(t, old, act))
	thaw()
	if got := c.waitHealthy(rejoinTimeout); got != act {
		t.Fatalf("active changed again: %s", got.name)
	}
}

// TestHungConsulAgentOnTheActive: the active node's Consul agent SIGSTOPped
// (what a hung agent, or the active cut off from Consul, looks like to its
// daemons). Its lease renewals stop committing; it must stop taking writes
// before the node the others promote takes its first.
func TestHungConsulAgentOnTheActive(t *testing.T) {
	c := newCluster(t, nil)
	old := c.waitHealthy(startTimeout)
	w := c.startWriters(old)

	frozen := time.Now()
	pid := old.consul.Process.PID()
	signal(t, "consul agent", pid, syscall.SIGSTOP)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	act, took := c.waitWritable(old, frozen, nodeKillBound)
	t.Logf("consul agent of %s frozen: %s active and took a write after %v", old.name, act.name, took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	signal(t, "consul agent", pid, syscall.SIGCONT)
	c.waitHealedAfter(act)
	t.Log(w.handedOver(t, old, act))
}

// TestLosingTheConsulLeadersStandbyKeepsTheActive: the standby whose
// Consul server is the Raft leader is killed whole. Consul elects another
// leader (seconds, during which no write commits); the active's lease must
// outlast that: it stays active, and its PostgreSQL takes writes
// throughout.
func TestLosingTheConsulLeadersStandbyKeepsTheActive(t *testing.T) {
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	cc := act.consul.Client(t)
	var victim *tnode
	for _, n := range c.nodes {
		if n != act {
			victim = n
			break
		}
	}
	makeConsulLeader(t, cc, victim)
	lockIndex := leaderLockIndex(t, cc)
	w := c.startWriters(act)
	s := c.sample()

	c.killNode(victim)
	killed := time.Now()
	// Wait for Consul to have a leader again, then for a few renewals.
	testenv.Eventually(t, 30*time.Second, func() error {
		l, err := cc.Status().Leader()
		if host, _, _ := net.SplitHostPort(l); err != nil || l == "" || host == victim.addr {
			return fmt.Errorf("no new consul leader yet (%q, %v)", l, err)
		}
		return nil
	})
	t.Logf("consul had a leader again %v after the kill", time.Since(killed).Round(time.Millisecond))
	waitRenewals(t, cc, act)
	w.halt()
	keptRole(t, cc, act, lockIndex)
	if s.everActive(victim.name) {
		t.Fatalf("%s answered /status 200", victim.name)
	}
	// The active's writer never went without an acknowledged row for
	// longer than a slow commit.
	as, gap := w.longestPause(act)
	if gap > time.Second {
		t.Fatalf("the active's PostgreSQL took no write for %v after the Consul leader's node was lost", gap.Round(time.Millisecond))
	}
	t.Logf("%s stayed active: %d rows acknowledged, longest gap %v", act.name, len(as), gap.Round(time.Millisecond))
}

// TestActiveKeepsItsRoleThroughAFalseFailureReport: Consul ends the active's
// session while the node is alive and healthy, what a stale failure report
// does when a node that was cut off comes back (here the session is
// destroyed through Consul's API). The active takes its lock back under its
// lease: the key names it again, held by a new session; its PostgreSQL took
// writes throughout, and no other node took one or answered /status 200.
func TestActiveKeepsItsRoleThroughAFalseFailureReport(t *testing.T) {
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	cc := act.consul.Client(t)
	w := c.startWriters(act)
	s := c.sample()
	pair, _, err := cc.KV().Get("understudy/t/leader", &api.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil || pair.Session == "" {
		t.Fatalf("read the leader key: %+v, %v", pair, err)
	}
	lost := pair.Session
	if _, err := cc.Session().Destroy(lost, nil); err != nil {
		t.Fatal(err)
	}
	destroyed := time.Now()
	var took time.Duration
	testenv.Eventually(t, 15*time.Second, func() error {
		p, _, err := cc.KV().Get("understudy/t/leader", &api.QueryOptions{RequireConsistent: true})
		if err != nil || p == nil {
			return fmt.Errorf("read the leader key: %v", err)
		}
		var l cluster.Leader
		_ = json.Unmarshal(p.Value, &l)
		if p.Session == "" || p.Session == lost {
			return fmt.Errorf("leader key held by session %q (%s)", p.Session, l.Node)
		}
		if l.Node != act.name {
			return fmt.Errorf("the leader key names %s, want %s", l.Node, act.name)
		}
		took = time.Since(destroyed)
		return nil
	})
	// A lease's worth of renewals of the lock taken back.
	renewed, _ := leaderKey(t, cc)
	testenv.Eventually(t, 10*time.Second, func() error {
		if l, _ := leaderKey(t, cc); l.Renewal < renewed.Renewal+12 {
			return fmt.Errorf("renewal %d of the leader key, want %d", l.Renewal, renewed.Renewal+12)
		}
		return nil
	})
	w.halt()
	for _, o := range w.overlaps() {
		t.Errorf("two writers: %s", o)
	}
	as, gap := w.longestPause(act)
	if gap > time.Second {
		t.Errorf("%s's PostgreSQL took no write for %v while it took its lock back", act.name, gap.Round(time.Millisecond))
	}
	for _, n := range c.nodes {
		if n == act {
			continue
		}
		if got := len(w.byNode()[n.name]); got > 0 {
			t.Errorf("%s acknowledged %d writes", n.name, got)
		}
		if s.everActive(n.name) {
			t.Errorf("%s answered /status 200", n.name)
		}
	}
	found := false
	for _, e := range act.events(t) {
		found = found || e.Kind == cluster.EventRegained && e.Node == act.name
	}
	if !found {
		t.Errorf("no regained event of %s", act.name)
	}
	t.Logf("%s took its lock back %v after its session was destroyed; %d rows acknowledged, longest gap %v",
		act.name, took.Round(time.Millisecond), len(as), gap.Round(time.Millisecond))
}

// makeConsulLeader moves Consul's Raft leadership to n's server.
func makeConsulLeader(t testing.TB, cc *api.Client, n *tnode) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		leader, err := cc.Status().Leader()
		if err != nil {
			return err
		}
		if host, _, _ := net.SplitHostPort(leader); host == n.addr {
			return nil
		}
		cfg, err := cc.Operator().RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		for _, s := range cfg.Servers {
			if s.Node == n.consul.NodeName {
				if _, err := cc.Operator().RaftLeaderTransfer(s.ID, nil); err != nil {
					return fmt.Errorf("transfer leadership to %s: %v", n.name, err)
				}
			}
		}
		return fmt.Errorf("consul leader is %s, want %s's server", leader, n.name)
	})
}

// keptRole fails the test unless the leader key still names act. Consul
// may have ended act's session on a stale failure report; act then took
// its lock back (a new lock index), which the writers' pauses measure.
// waitRenewals waits, once Consul has a leader again, past the lease of
// any renewal sent before: renewals commit again, a whole lease's worth of
// them (or the lock moved, which keptRole then reports).
func waitRenewals(t testing.TB, cc *api.Client, act *tnode) {
	t.Helper()
	renewed, _ := leaderKey(t, cc)
	testenv.Eventually(t, 30*time.Second, func() error {
		if l, _ := leaderKey(t, cc); l.Renewal < renewed.Renewal+12 && l.Node == act.name {
			return fmt.Errorf("renewal %d of the leader key, want %d", l.Renewal, renewed.Renewal+12)
		}
		return nil
	})
}

func keptRole(t testing.TB, cc *api.Client, act *tnode, lockIndex uint64) {
	t.Helper()
	l, index := leaderKey(t, cc)
	if l.Node != act.name {
		t.Fatalf("the leader key names %s: %s lost the active role", l.Node, act.name)
	}
	if index != lockIndex {
		t.Logf("%s took its lock back after Consul ended its session (lock index %d, was %d)", act.name, index, lockIndex)
	}
}

func leaderLockIndex(t testing.TB, cc *api.Client) uint64 {
	t.Helper()
	_, index := leaderKey(t, cc)
	return index
}

// leaderKey reads the leader key through cc: its value and lock index.
func leaderKey(t testing.TB, cc *api.Client) (cluster.Leader, uint64) {
	t.Helper()
	pair, _, err := cc.KV().Get("understudy/t/leader", &api.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil {
		t.Fatalf("read the leader key: %v", err)
	}
	var l cluster.Leader
	if err := json.Unmarshal(pair.Value, &l); err != nil {
		t.Fatalf("read the leader key: %v", err)
	}
	return l, pair.LockIndex
}

// TestPartitionedActive: the active cut off from both standbys, both ways
// (hosts with network stacks of their own; the test and its writers still
// reach every node). The majority promotes a standby; the old active never
// acknowledges a write after the new one's first, and after the heal it is
// a standby again. Then, on the same cluster healed, a one-way partition:
// the new active receives nothing from the standbys while they still
// receive what it sends (its gossip, its WAL stream's packets), with the
// same promise.
func TestPartitionedActive(t *testing.T) {
	c, net := newHostCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	act = testActiveCutOff(t, c, net, act, "partitioned", (*testenv.Net).Isolate)
	c.waitConsulWhole(act)
	// The writers number their rows from 1 again, per node.
	act.exec(t, "truncate acks")
	testActiveCutOff(t, c, net, act, "deafened", (*testenv.Net).Deafen)
}

// testActiveCutOff cuts old off with cut, checks the handover, heals, and
// returns the active after the heal.
func testActiveCutOff(t *testing.T, c *tcluster, net *testenv.Net, old *tnode, how string, cut func(*testenv.Net, *testenv.Host)) *tnode {
	w := c.startWriters(old)
	at := time.Now()
	cut(net, old.host)
	act, took := c.waitWritable(old, at, nodeKillBound)
	t.Logf("%s %s: %s active and took a write after %v", old.name, how, act.name, took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	net.Heal()
	now := c.waitHealedAfter(act)
	t.Log(w.handedOver(t, old, act))
	return now
}

// waitHealedAfter waits, after a partition healed (or a frozen agent was
// thawed), for one active and every other node a streaming standby. The
// active may have moved once more: the cut-off node's Consul had marked the
// others failed, and when its gossip meets theirs again Consul's leader can
// take that stale word for a moment and end the active's session before the
// node refutes it (memberlist accepts a "dead" of the same incarnation). The new active then fences as
// it must and another is elected; the writers, still running, check that
// no two nodes took writes at once then too.
func (c *tcluster) waitHealedAfter(act *tnode) *tnode {
	c.t.Helper()
	got := c.waitHealthy(rejoinTimeout)
	if got != act {
		c.t.Logf("after the heal the active moved from %s to %s (a stale failure report of the cut-off side)", act.name, got.name)
	}
	return got
}

// TestPartitionedStandby: a standby cut off both ways, the one that runs
// Consul's Raft leader. Nothing changes for the active, which keeps its
// lock and takes writes throughout; after the heal the standby streams
// again.
func TestPartitionedStandby(t *testing.T) {
	c, net := newHostCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	var standby *tnode
	for _, n := range c.nodes {
		if n != act {
			standby = n
			break
		}
	}
	cc := act.consul.Client(t)
	makeConsulLeader(t, cc, standby)
	lockIndex := leaderLockIndex(t, cc)
	w := c.startWriters(act)
	net.Isolate(standby.host)
	time.Sleep(8 * time.Second) // past failure detection, a lease and a lock delay
	w.halt()
	keptRole(t, cc, act, lockIndex)
	as, gap := w.longestPause(act)
	if len(as) == 0 || gap > time.Second {
		t.Fatalf("the active took %d writes, longest pause %v, while a standby was cut off", len(as), gap)
	}
	net.Heal()
	c.waitHealedAfter(act)
	t.Logf("%s stayed active while %s was cut off: %d rows, longest pause %v", act.name, standby.name, len(as), gap.Round(time.Millisecond))
}

// TestRewindKeepsWhatItDiscards: the active acknowledges rows its standbys
// never receive (its WAL senders frozen), then its PostgreSQL dies. A
// standby takes over without them; the old active is rewound to follow it,
// and the rows it acknowledged alone are kept aside first: a diverged event
// says where and how many, its member record lists the directory until an
// operator removes it, and pg_waldump reads the inserts there.
func TestRewindKeepsWhatItDiscards(t *testing.T) {
	c := newCluster(t, nil)
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := old.conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "select pid from pg_stat_replication")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var pid int
			if err := rows.Scan(&pid); err != nil {
				t.Fatal(err)
			}
			// Frozen, a sender sends nothing more; SIGKILL still ends it.
			signal(t, "WAL sender", pid, syscall.SIGSTOP)
			n++
		}
		if n != 2 {
			t.Fatalf("%s has %d WAL senders, want 2", old.name, n)
		}
	}()
	const lost = 5
	for i := range lost {
		old.exec(t, "insert into rows values ($1)", 100+i)
	}
	// The whole server at once, its frozen senders with it.
	killed := time.Now()
	killPostgres(t, old.postmasterPID(t))
	act, took := c.waitWritable(old, killed, postgresKillBound)
	t.Logf("postgres of %s killed with %d rows its standbys never had: %s active after %v", old.name, lost, act.name, took.Round(time.Millisecond))

	var ev cluster.Event
	testenv.Eventually(t, rejoinTimeout, func() error {
		for _, e := range act.events(t) {
			if e.Kind == cluster.EventDiverged && e.Node == old.name {
				ev = e
				return nil
			}
		}
		return fmt.Errorf("no diverged event of %s yet", old.name)
	})
	commits, _ := strconv.Atoi(ev.Details["commits"])
	if commits < lost || ev.Details["dir"] == "" {
		t.Fatalf("diverged event %+v: want at least %d commits and a directory", ev, lost)
	}
	// pg_waldump ends with an error at the end of the WAL it is given.
	dump, _ := exec.Command(filepath.Join(old.cfg.Postgres.BinDir, "pg_waldump"), "-p", ev.Details["dir"], "-t", ev.Details["timeline"], "-s", ev.Details["from"]).CombinedOutput()
	if n := strings.Count(string(dump), "desc: INSERT"); n < lost {
		t.Fatalf("%s shows %d inserts, want at least %d:\n%s", ev.Details["inspect"], n, lost, dump)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if d := c.member(t, old.name).Diverged; len(d) != 1 || d[0].Dir != ev.Details["dir"] {
			return fmt.Errorf("%s's member record lists %+v, want %s", old.name, d, ev.Details["dir"])
		}
		return nil
	})
	t.Logf("kept: %s", ev.Reason)
	if err := os.RemoveAll(ev.Details["dir"]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if d := c.member(t, old.name).Diverged; len(d) != 0 {
			return fmt.Errorf("%s's member record still lists %+v after the directory was removed", old.name, d)
		}
		return nil
	})
}
