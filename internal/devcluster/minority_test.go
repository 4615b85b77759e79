package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/netns"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/internal/wait"
)

// TestActiveMinority: a dev cluster of three nodes in network namespaces,
// partition_mode "active-minority", writers on every node's PostgreSQL
// directly, each acknowledged row logged with its node and time. Three
// partitions in turn: the active cut off (the majority written last
// stays), a standby cut off (it becomes a minority active, and is written
// last: it stays), and a three-way split (each node an active; the one
// written last stays). Each time both (all) sides take writes, /status of
// a minority active says so, and after the heal exactly one active
// remains, the one the rule chooses; every row its side acknowledged is on
// it, no row the other sides acknowledged after the cut is, and those
// sides report what they kept aside with a count of commits a client can
// check against its own log.
func TestActiveMinority(t *testing.T) {
	m := startMinorityTest(t, "minority")
	defer m.stopWriters()
	ctx, s := context.Background(), m.s
	a, _ := Active(ctx, s)

	t.Log("1: the active cut off; the majority is written last and stays")
	m.round([][]int{{a}, others(a)}, []int{0, 1})
	a, _ = Active(ctx, s)
	t.Log("2: a standby cut off; it becomes a minority active, is written last and stays")
	sb := others(a)[0]
	m.round([][]int{{sb}, others(sb)}, []int{1, 0})
	t.Log("3: a three-way split; each node is an active, the last written stays")
	m.round([][]int{{0}, {1}, {2}}, []int{2, 0, 1})
}

// startMinorityTest brings up a dev cluster of three nodes in network
// namespaces in partition_mode "active-minority", healthy, with the table
// the writers write.
func startMinorityTest(t *testing.T, name string) *minorityTest {
	testenv.RequireNetns(t)
	dir := filepath.Join(testenv.TempDir(t, name), "cluster")
	o := Options{Understudy: testenv.Understudy(t), Consul: testenv.ConsulBinary(t), Syncthing: testenv.SyncthingBinary(t),
		Nodes: 3, Dir: dir, Netns: "on", PartitionMode: config.PartitionActiveMinority, Out: testWriter{t}}
	ctx := context.Background()
	s, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("dev up: %v\n%s", err, tails(dir))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", tails(dir))
		}
		_ = Down(s, false)
	})
	if err := WaitHealthy(ctx, s, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	a, _ := Active(ctx, s)
	conn, err := pgx.Connect(ctx, pgURL(s.Nodes[a]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create table acks (node text, seq int, primary key (node, seq))`); err != nil {
		t.Fatal(err)
	}
	return &minorityTest{t: t, s: s}
}

// minorityTest drives the partitions of TestActiveMinority.
type minorityTest struct {
	t       *testing.T
	s       *State
	writers []*writer
	seq     int
}

func others(i int) []int {
	var out []int
	for j := range 3 {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// roundResult is what one partition of a round measured.
type roundResult struct {
	// actives is how long after the cut every side had an active taking
	// writes; whole how long after the heal one active and two streaming
	// standbys were left.
	actives, whole time.Duration
	// lost are the rows the sides that did not stay acknowledged after
	// the cut, kept the commits their nodes reported kept aside.
	lost, kept int
}

// round is partition with both-ways cuts between the sides.
func (m *minorityTest) round(sides [][]int, order []int) roundResult {
	return m.partition(sides, order, false)
}

// partition cuts the cluster into sides (oneWay: the first side hears
// nothing from the others, which still hear it), waits until each side
// has an active that takes writes, stops the writers side by side in order
// (the last one's side is written last and must stay), heals, and checks
// the heal where the data is.
func (m *minorityTest) partition(sides [][]int, order []int, oneWay bool) roundResult {
	t, s, ctx := m.t, m.s, context.Background()
	var res roundResult
	m.startWriters()
	before := time.Now()
	if err := wait.Until(ctx, 30*time.Second, func() error {
		if a, err := Active(ctx, s); err != nil || m.ackedSince(a, before) < 5 {
			return fmt.Errorf("the active acknowledged too few rows yet (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var hosts [][]netns.Host
	for _, side := range sides {
		var hs []netns.Host
		for _, i := range side {
			hs = append(hs, s.Net.Hosts[i])
		}
		hosts = append(hosts, hs)
	}
	for i := range hosts {
		for j := i + 1; j < len(hosts); j++ {
			cut := s.Net.Partition
			if oneWay {
				cut = s.Net.OneWay
			}
			if err := cut(hosts[i], hosts[j]); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A row acknowledged from here on cannot have left its side.
	cut := time.Now()
	// Each side's active: the one node of the side that answers /status
	// 200, and acknowledges rows after the cut.
	actives := make([]int, len(sides))
	err := wait.Until(ctx, 3*time.Minute, func() error {
		var errs []error
		for k, side := range sides {
			actives[k] = -1
			onMinority := 2*len(side) <= len(s.Nodes)
			for _, i := range side {
				code, minority := m.status(i)
				switch {
				case code != http.StatusOK:
				case minority != onMinority:
					errs = append(errs, fmt.Errorf("%s serves, minority %v, on a side of %d of %d nodes", s.Nodes[i].Name, minority, len(side), len(s.Nodes)))
				default:
					actives[k] = i
				}
			}
			if actives[k] < 0 {
				errs = append(errs, fmt.Errorf("no active on the side %v yet", names(s, side)))
			} else if m.ackedSince(actives[k], cut) < 5 {
				errs = append(errs, fmt.Errorf("%s acknowledged too few rows since the cut yet", s.Nodes[actives[k]].Name))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	res.actives = time.Since(cut)
	t.Logf("every side has an active taking writes %v after the cut: %v", res.actives.Round(time.Millisecond), names(s, actives))
	// Stop the writers side by side, each once the next side's active
	// has acknowledged rows after it: the last side written stays.
	last := time.Now()
	for n, k := range order {
		if n > 0 {
			next := actives[k]
			if err := wait.Until(ctx, 30*time.Second, func() error {
				if m.ackedSince(next, last) < 3 {
					return fmt.Errorf("%s acknowledged too few rows since the last side stopped", s.Nodes[next].Name)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		for _, i := range sides[k] {
			m.writers[i].stop()
		}
		last = time.Now()
	}
	winner := order[len(order)-1]
	heal := time.Now()
	if err := s.Net.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := WaitHealthy(ctx, s, 3*time.Minute); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	act, _ := Active(ctx, s)
	res.whole = time.Since(heal)
	t.Logf("one active (%s) and two streaming standbys %v after the heal", s.Nodes[act].Name, res.whole.Round(time.Millisecond))
	if !slices.Contains(sides[winner], act) {
		t.Fatalf("%s is the active after the heal; the side written last was %v", s.Nodes[act].Name, names(s, sides[winner]))
	}
	// One Consul cluster again, every server a voter (a cluster with a
	// server that does not vote yet cannot lose another: the next
	// partition must find it whole), no node on a minority side.
	err = wait.Until(ctx, 90*time.Second, func() error {
		ids := map[string]bool{}
		for i, n := range s.Nodes {
			var p cluster.Partition
			if err := s.client().Do(ctx, n.APIURL, http.MethodGet, "/v1/status/partition", nil, &p, apiTimeout); err != nil {
				return err
			}
			if p.Minority != nil || p.Cluster == "" || p.Servers != len(s.Nodes) || p.Raft.Voters != len(s.Nodes) {
				return fmt.Errorf("%s: cluster %q, minority %+v, %d servers, %d voters", s.Nodes[i].Name, p.Cluster, p.Minority, p.Servers, p.Raft.Voters)
			}
			ids[p.Cluster] = true
		}
		if len(ids) != 1 {
			return fmt.Errorf("the nodes are in %d consul clusters", len(ids))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Where the data is: the winner's rows all there, the others' rows
	// since the cut not, and reported.
	have := m.rows(act)
	var lost []ack
	for _, w := range m.writers {
		for _, a := range w.acked() {
			onWinner := slices.Contains(sides[winner], a.node)
			switch {
			case onWinner && !have[a.key()]:
				t.Errorf("row %s acknowledged by %s at %s, on the side that stays, is not on the active", a.key(), s.Nodes[a.node].Name, a.at.Format(time.StampMilli))
			case !onWinner && a.at.After(cut) && have[a.key()]:
				t.Errorf("row %s acknowledged by %s at %s after the cut, on a side that did not stay, is on the active", a.key(), s.Nodes[a.node].Name, a.at.Format(time.StampMilli))
			case !onWinner && a.at.After(cut):
				lost = append(lost, a)
			}
		}
	}
	commits := m.keptAside(act, cut)
	perNode := map[string]int{}
	for _, a := range lost {
		perNode[s.Nodes[a.node].Name]++
	}
	t.Logf("rows acknowledged after the cut on the sides that did not stay: %v; commits kept aside, as the nodes report them: %v", perNode, commits)
	for node, n := range perNode {
		if commits[node] < n {
			t.Errorf("%s acknowledged %d rows after the cut that are not in the database, and reports %d commits kept aside", node, n, commits[node])
		}
		res.kept += commits[node]
	}
	res.lost = len(lost)
	m.writers = nil
	return res
}

// status is node i's /status: its code and whether it says it is a
// minority active (header and body).
func (m *minorityTest) status(i int) (int, bool) {
	ans, err := m.s.client().Active(context.Background(), m.s.Nodes[i].APIURL, apiTimeout)
	var ae *nodeapi.APIError
	switch {
	case err == nil:
		return http.StatusOK, ans.Minority
	case errors.As(err, &ae):
		return ae.Status, false
	}
	return 0, false
}

// keptAside is, per node, the commits its diverged events since the cut
// report kept aside.
func (m *minorityTest) keptAside(act int, since time.Time) map[string]int {
	var evs nodeapi.EventsAnswer
	err := wait.Until(context.Background(), 30*time.Second, func() error {
		return m.s.client().Do(context.Background(), m.s.Nodes[act].APIURL, http.MethodGet, "/v1/events?limit=1000", nil, &evs, apiTimeout)
	})
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs.Events {
		if e.Kind == cluster.EventDiverged && e.Time.After(since) {
			n, _ := strconv.Atoi(e.Details["commits"])
			out[e.Node] += n
			m.t.Logf("event: %s %s: %s %v", e.Node, e.Kind, e.Reason, e.Details)
		}
		if e.Kind == cluster.EventPartition && e.Time.After(since.Add(-10*time.Second)) {
			m.t.Logf("event: %s %s %s: %s", e.Time.Format(time.StampMilli), e.Node, e.Details["state"], e.Reason)
		}
	}
	return out
}

// rows are the rows on node i, by key.
func (m *minorityTest) rows(i int) map[string]bool {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL(m.s.Nodes[i]))
	if err != nil {
		m.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rs, err := conn.Query(ctx, `select node, seq from acks`)
	if err != nil {
		m.t.Fatal(err)
	}
	out := map[string]bool{}
	for rs.Next() {
		var node string
		var seq int
		if err := rs.Scan(&node, &seq); err != nil {
			m.t.Fatal(err)
		}
		out[node+"/"+strconv.Itoa(seq)] = true
	}
	if rs.Err() != nil {
		m.t.Fatal(rs.Err())
	}
	return out
}

func (m *minorityTest) ackedSince(i int, since time.Time) int {
	n := 0
	for _, a := range m.writers[i].acked() {
		if a.at.After(since) {
			n++
		}
	}
	return n
}

// startWriters writes to every node's PostgreSQL directly, a row every
// 50 ms, logging each acknowledged row.
func (m *minorityTest) startWriters() {
	m.seq += 100000
	m.writers = nil
	for i := range m.s.Nodes {
		w := &writer{node: i, name: m.s.Nodes[i].Name, url: pgURL(m.s.Nodes[i]), seq: m.seq, done: make(chan struct{}), stopped: make(chan struct{})}
		m.writers = append(m.writers, w)
		go w.run()
	}
}

func (m *minorityTest) stopWriters() {
	for _, w := range m.writers {
		w.stop()
	}
}

type ack struct {
	node int
	name string
	seq  int
	at   time.Time
}

func (a ack) key() string { return a.name + "/" + strconv.Itoa(a.seq) }

type writer struct {
	node          int
	name, url     string
	seq           int
	done, stopped chan struct{}
	once          sync.Once
	mu            sync.Mutex
	acks          []ack
}

func (w *writer) run() {
	defer close(w.stopped)
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := pgx.Connect(cctx, w.url)
			cancel()
			if err != nil {
				continue
			}
			conn = c
		}
		w.seq++
		ectx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := conn.Exec(ectx, `insert into acks (node, seq) values ($1, $2)`, w.name, w.seq)
		cancel()
		if err != nil {
			conn.Close(ctx)
			conn = nil
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, ack{node: w.node, name: w.name, seq: w.seq, at: time.Now()})
		w.mu.Unlock()
	}
}

func (w *writer) stop() {
	w.once.Do(func() { close(w.done) })
	<-w.stopped
}

func (w *writer) acked() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

func pgURL(n Node) string {
	return fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=disable&connect_timeout=1", n.PostgresHost, n.PostgresPort)
}

func names(s *State, is []int) []string {
	var out []string
	for _, i := range is {
		if i >= 0 {
			out = append(out, s.Nodes[i].Name)
		}
	}
	return out
}

// tails are the last lines of every node's service logs.
func tails(dir string) string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "services", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "%s:\n%s\n", l, strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	return b.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
