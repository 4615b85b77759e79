package consulrecovery_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/consulrecovery"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/watcher"
)

// TestRecoverASideAndResetTheOther: three Consul servers with gossip
// encryption on network-namespace hosts, the moves of active-minority on
// real Consul. A server cut off recovers a quorum of its own (peers.json)
// with a new gossip key, watcher.RecoverAfter after the cut as the
// consul-watcher does, and takes writes; when the network heals, the two
// Raft clusters stay apart (neither leader changes, neither pool takes the
// other's members back) until one side is reset; the reset side joins the
// other and has exactly the other's data. The majority survives here (the
// recovered server is reset); TestActiveMinority (internal/devcluster) has
// the recovered side survive too, with the whole product.
func TestRecoverASideAndResetTheOther(t *testing.T) {
	nw := testenv.NewNet(t, "c1", "c2", "c3")
	key, err := certs.GossipKey()
	if err != nil {
		t.Fatal(err)
	}
	s := testenv.StartConsulClusterOn(t, nw.Hosts, "-encrypt="+key)
	put(t, s[0], "before", "1")

	// The leader's server is cut off: the majority elects another, whose
	// replication to it lingers after autopilot removed it.
	leader := 0
	for i, c := range s {
		if l, err := c.Client(t).Status().Leader(); err == nil && strings.HasPrefix(l, c.Addr+":") {
			leader = i
		}
	}
	cut := time.Now()
	majority, minority := split(t, nw, s, leader)
	put(t, majority[0], "majority", "1")
	// The consul-watcher's rule, not a hope: no earlier (RecoverAfter
	// says why; measured, a heal 12 s after the removal let the other
	// leader's last AppendEntries in).
	time.Sleep(time.Until(cut.Add(watcher.RecoverAfter)))
	recoverAlone(t, minority)
	put(t, minority, "minority", "1")
	nw.Heal()
	staysApart(t, majority, minority)
	reset(t, s, []*testenv.Consul{minority}, majority[0])
	wantKeys(t, s, []string{"before", "majority"}, []string{"minority"})
}

// split isolates server i and waits until the others have a leader and have
// dropped it from their Raft configuration (autopilot's dead server
// cleanup, which keeps their leader from ever sending it Raft traffic
// again).
func split(t *testing.T, nw *testenv.Net, s []*testenv.Consul, i int) ([]*testenv.Consul, *testenv.Consul) {
	t.Helper()
	nw.Isolate(nw.Hosts[i])
	var majority []*testenv.Consul
	for j, c := range s {
		if j != i {
			majority = append(majority, c)
		}
	}
	start := time.Now()
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, c := range majority {
			if err := raftIs(t, c, names(majority)); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("%s dropped from the majority's raft configuration %v after the cut", s[i].NodeName, time.Since(start).Round(time.Millisecond))
	return majority, s[i]
}

// recoverAlone stops c, gives it a Raft configuration of itself and a new
// gossip key, and starts it: it has a leader of its own, its old data kept.
func recoverAlone(t *testing.T, c *testenv.Consul) {
	t.Helper()
	c.Stop(t)
	id, err := consulrecovery.NodeID(c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := consulrecovery.Recover(c.DataDir, []consulrecovery.Server{{ID: id, Address: net.JoinHostPort(c.Addr, "8300")}}); err != nil {
		t.Fatal(err)
	}
	key, err := certs.GossipKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := consulrecovery.Rekey(c.DataDir, []string{key}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Start(t)
	t.Logf("%s recovered alone: a leader %v after its start", c.NodeName, time.Since(start).Round(time.Millisecond))
	if err := raftIs(t, c, []string{c.NodeName}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "raft", "peers.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("peers.json still there after the recovery (%v): consul did not apply it", err)
	}
	if v := get(t, c, "before"); v != "1" {
		t.Fatalf("%s lost its data in the recovery: before = %q", c.NodeName, v)
	}
}

// staysApart asks each side's agent to join the other's gossip pool (what
// serf's reconnect does every 30 s, and the consul-watcher's rejoin at
// once), which must fail, then watches for a few seconds that both sides
// keep their own leader and configuration and that neither pool sees the
// other side alive.
func staysApart(t *testing.T, majority []*testenv.Consul, minority *testenv.Consul) {
	t.Helper()
	leaders := map[string]string{}
	for _, c := range append(slices.Clone(majority), minority) {
		l, err := c.Client(t).Status().Leader()
		if err != nil {
			t.Fatal(err)
		}
		leaders[c.NodeName] = l
	}
	for _, j := range []struct{ from, to *testenv.Consul }{{majority[0], minority}, {minority, majority[0]}} {
		if err := j.from.Client(t).Agent().Join(net.JoinHostPort(j.to.Addr, "8301"), false); err == nil {
			t.Fatalf("%s joined %s's gossip pool across the new key", j.from.NodeName, j.to.NodeName)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for rounds := 0; time.Now().Before(deadline); rounds++ {
		for _, c := range majority {
			err := errors.Join(raftIs(t, c, names(majority)), leaderIs(t, c, leaders[c.NodeName]), notAlive(t, c, minority.NodeName))
			if err != nil {
				t.Fatalf("after %d rounds of the heal: %v", rounds, err)
			}
		}
		if err := errors.Join(raftIs(t, minority, []string{minority.NodeName}), leaderIs(t, minority, leaders[minority.NodeName]),
			notAlive(t, minority, names(majority)...)); err != nil {
			t.Fatalf("after %d rounds of the heal: %v", rounds, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// reset stops losers, resets their data keeping the winner's gossip key,
// and starts them: they join the winner's cluster.
func reset(t *testing.T, all, losers []*testenv.Consul, winner *testenv.Consul) {
	t.Helper()
	keys, err := consulrecovery.Keyring(winner.DataDir)
	if err != nil || len(keys) == 0 {
		t.Fatalf("the winner's keyring: %v %v", keys, err)
	}
	for _, c := range losers {
		c.Stop(t)
		if err := consulrecovery.Reset(c.DataDir, keys); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	testenv.StartServers(t, losers...)
	testenv.Eventually(t, 90*time.Second, func() error { return testenv.ClusterConverged(all) })
	t.Logf("%v reset and joined %s: whole again after %v", names(losers), winner.NodeName, time.Since(start).Round(time.Millisecond))
	// A joined server votes once autopilot has seen it stable
	// (server_stabilization_time, 10 s by default): until then the
	// cluster cannot lose one more.
	testenv.Eventually(t, 60*time.Second, func() error {
		cfg, err := winner.Client(t).Operator().RaftGetConfiguration(&api.QueryOptions{AllowStale: true})
		if err != nil {
			return err
		}
		for _, s := range cfg.Servers {
			if !s.Voter {
				return fmt.Errorf("%s does not vote yet", s.Node)
			}
		}
		return nil
	})
	t.Logf("%v vote after %v", names(losers), time.Since(start).Round(time.Millisecond))
}

func wantKeys(t *testing.T, s []*testenv.Consul, have, not []string) {
	t.Helper()
	for _, c := range s {
		for _, k := range have {
			if v := get(t, c, k); v != "1" {
				t.Errorf("%s: %s = %q, want 1", c.NodeName, k, v)
			}
		}
		for _, k := range not {
			if v := get(t, c, k); v != "" {
				t.Errorf("%s: %s = %q, want none: the reset side's data is gone", c.NodeName, k, v)
			}
		}
	}
}

func put(t *testing.T, c *testenv.Consul, k, v string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := c.Client(t).KV().Put(&api.KVPair{Key: "test/" + k, Value: []byte(v)}, nil)
		return err
	})
}

func get(t *testing.T, c *testenv.Consul, k string) string {
	t.Helper()
	var v string
	testenv.Eventually(t, 10*time.Second, func() error {
		p, _, err := c.Client(t).KV().Get("test/"+k, &api.QueryOptions{AllowStale: true})
		if p != nil {
			v = string(p.Value)
		}
		return err
	})
	return v
}

func raftIs(t *testing.T, c *testenv.Consul, want []string) error {
	cfg, err := c.Client(t).Operator().RaftGetConfiguration(&api.QueryOptions{AllowStale: true})
	if err != nil {
		return fmt.Errorf("%s: raft configuration: %w", c.NodeName, err)
	}
	var got []string
	for _, s := range cfg.Servers {
		got = append(got, s.Node)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s: raft configuration %v, want %v", c.NodeName, got, want)
	}
	return nil
}

func leaderIs(t *testing.T, c *testenv.Consul, want string) error {
	l, err := c.Client(t).Status().Leader()
	if err != nil || l != want {
		return fmt.Errorf("%s: leader %q (%v), want %q", c.NodeName, l, err, want)
	}
	return nil
}

func notAlive(t *testing.T, c *testenv.Consul, others ...string) error {
	ms, err := c.Client(t).Agent().Members(false)
	if err != nil {
		return fmt.Errorf("%s: members: %w", c.NodeName, err)
	}
	for _, m := range ms {
		if slices.Contains(others, m.Name) && m.Status == 1 { // serf StatusAlive
			return fmt.Errorf("%s sees %s alive in its gossip pool: the pools merged", c.NodeName, m.Name)
		}
	}
	return nil
}

func names(cs []*testenv.Consul) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.NodeName)
	}
	slices.Sort(out)
	return out
}
