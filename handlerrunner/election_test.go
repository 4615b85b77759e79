package handlerrunner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// events reads the cluster's history through a node's API, newest first.
func (n *tnode) events(t testing.TB) []cluster.Event {
	t.Helper()
	resp, err := client.Get(n.apiURL() + "/v1/events?limit=200")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Events []cluster.Event }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

// member reads name's member record.
func (c *tcluster) member(t testing.TB, name string) cluster.Member {
	t.Helper()
	var m cluster.Member
	c.readKey(t, "understudy/t/members/"+name, &m)
	return m
}

// leader reads the leader key's value: who holds it and the write position
// it last published.
func (c *tcluster) leader(t testing.TB) cluster.Leader {
	t.Helper()
	var l cluster.Leader
	c.readKey(t, "understudy/t/leader", &l)
	return l
}

func (c *tcluster) readKey(t testing.TB, key string, v any) {
	t.Helper()
	pair, _, err := c.nodes[0].consul.Client(t).KV().Get(key, nil)
	if err != nil || pair == nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if err := json.Unmarshal(pair.Value, v); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
}

// TestNeverChosen: a standby with nofailover and one further behind than
// maximum_lag_on_failover are never made active; with no other choice, the
// cluster waits for the node that has every write. Also: a failing promote
// hook is recorded, and the node stays active.
func TestNofailoverAndLaggingStandbyAreNeverChosen(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, func(i int) extraHCL {
		x := extraHCL{
			postgres: `maximum_lag_on_failover = "1MB"`,
			blocks:   `promote_hook "fails" { command = ["/bin/sh", "-c", "echo cannot notify >&2; exit 3"] }`,
		}
		if i == 1 {
			x.node = "no_failover = true"
		}
		return x
	})
	s := c.sample()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	if act := c.waitHealthy(startTimeout); act != n1 {
		t.Fatalf("active is %s, want the seed n1", act.name)
	}

	// The failing hook is in the history, and n1 is still active.
	testenv.Eventually(t, 10*time.Second, func() error {
		for _, ev := range n1.events(t) {
			if ev.Kind == cluster.EventPromoteHook && ev.Node == "n1" && ev.Details["exit"] == "3" &&
				strings.Contains(ev.Reason, "failed") && ev.Details["output"] == "cannot notify" {
				return nil
			}
		}
		return fmt.Errorf("no failed promote-hook event of n1 among %d events", len(n1.events(t)))
	})
	if code := n1.statusCode(); code != http.StatusOK {
		t.Fatalf("n1 after its promote hook failed: /status %d, want 200", code)
	}

	// n3 falls behind: its WAL receiver is frozen (SIGSTOP), and n1 writes
	// 4 MB of WAL that n3 never receives. (Refusing n3 in n1's pg_hba would
	// not do: on loopback its connections come from 127.0.0.1.)
	var receiver int
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n3conn, err := n3.conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = n3conn.QueryRow(ctx, "select pid from pg_stat_wal_receiver").Scan(&receiver)
	n3conn.Close(ctx)
	if err != nil {
		t.Fatalf("n3's WAL receiver: %v", err)
	}
	if err := syscall.Kill(receiver, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Before the clusters' own cleanups: a stopped process would outlive
	// PostgreSQL's shutdown.
	t.Cleanup(func() { _ = syscall.Kill(receiver, syscall.SIGCONT) })
	n1.exec(t, "create table filler as select g, repeat('x', 1000) as pad from generate_series(1, 4000) g")
	lagging := n3.position(t)
	// The yardstick once n1's member record stops showing a primary is the
	// write position n1 keeps in the leader key, refreshed every interval:
	// wait for that one, not only the member record, or the kill may come
	// before the leader key shows the gap.
	testenv.Eventually(t, 10*time.Second, func() error {
		if m := c.member(t, "n1"); m.WriteLSN < lagging+2<<20 {
			return fmt.Errorf("n1's member record shows write LSN %v, n3 is at %v: not yet 2 MB apart", m.WriteLSN, lagging)
		}
		if l := c.leader(t); l.WriteLSN < lagging+2<<20 {
			return fmt.Errorf("the leader key shows write LSN %v, n3 is at %v: not yet 2 MB apart", l.WriteLSN, lagging)
		}
		return nil
	})

	// n1's PostgreSQL dies: n2 (nofailover) and n3 (lagging) must not take
	// over; n1, restarted read-only by its handler-runner, is the one node
	// with every write and takes over again once its step-down grace ends.
	if err := syscall.Kill(n1.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testenv.Eventually(t, 10*time.Second, func() error {
		if code := n1.statusCode(); code == http.StatusOK {
			return fmt.Errorf("n1 still answers /status %d", code)
		}
		return nil
	})
	testenv.Eventually(t, 60*time.Second, func() error {
		if _, err := c.active(); err != nil {
			return err
		}
		st, err := n1.nodeStatus()
		if err != nil {
			return err
		}
		if st.Role != nodeapi.RoleActive || st.Since.Before(killed) {
			return fmt.Errorf("n1 is %s since %v, not active again after the kill", st.Role, st.Since)
		}
		return nil
	})
	for _, n := range []*tnode{n2, n3} {
		if s.everActive(n.name) {
			t.Errorf("%s answered /status 200: it must never be chosen", n.name)
		}
	}
}

// position is the most advanced WAL position of a standby.
func (n *tnode) position(t testing.TB) cluster.LSN {
	t.Helper()
	st, err := n.nodeStatus()
	if err != nil {
		t.Fatal(err)
	}
	return st.Postgres.Position()
}

// TestSynchronousModeLosesNoAcknowledgedWriteOnKill: with
// postgres.synchronous, SIGKILL of the active's PostgreSQL under a steady
// writer loses no acknowledged row.
func TestSynchronousModeLosesNoAcknowledgedWriteOnKill(t *testing.T) {
	c := newCluster(t, func(int) extraHCL { return extraHCL{postgres: "synchronous = true"} })
	c.sample()
	old := c.waitHealthy(startTimeout)
	old.exec(t, "create table rows (id int primary key)")
	// Writes wait for the synchronous standby from the moment the sync key
	// names one.
	testenv.Eventually(t, 30*time.Second, func() error {
		pair, _, err := old.consul.Client(t).KV().Get("understudy/t/sync", nil)
		if err != nil || pair == nil {
			return fmt.Errorf("no sync key yet (%v)", err)
		}
		var s cluster.SyncState
		if err := json.Unmarshal(pair.Value, &s); err != nil || s.Leader != old.name || len(s.Standbys) != 1 {
			return fmt.Errorf("sync key %s", pair.Value)
		}
		return nil
	})
	w := c.startWriter()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := w.count(); n < 100 {
			return fmt.Errorf("%d rows acknowledged so far", n)
		}
		return nil
	})
	killed := time.Now()
	if err := syscall.Kill(old.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	act, took := c.waitWritable(old, killed, postgresKillBound)
	t.Logf("synchronous mode: %s active %v after the kill", act.name, took.Round(time.Millisecond))
	before := w.count()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := w.count(); n < before+20 {
			return fmt.Errorf("%d rows acknowledged since the failover", n-before)
		}
		return nil
	})
	acked := w.finish()
	if m := missing(acked, act.ids(t)); len(m) > 0 {
		t.Fatalf("%d acknowledged rows missing on %s: %v", len(m), act.name, m)
	}
	t.Logf("%d acknowledged rows, none missing", len(acked))
}
