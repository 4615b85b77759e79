package handlerrunner_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// partitionView is the node's GET /v1/status/partition.
func (n *tnode) partitionView() (cluster.Partition, error) {
	var v cluster.Partition
	if err := getJSON(n.apiURL()+"/v1/status/partition", &v); err != nil {
		return v, fmt.Errorf("%s: %w", n.name, err)
	}
	return v, nil
}

// seesAs fails unless n's view is fresh, in state, and sees each of reach's
// nodes so.
func (n *tnode) seesAs(state string, reach map[string]cluster.Reach) (cluster.Partition, error) {
	v, err := n.partitionView()
	if err != nil {
		return v, err
	}
	if v.Stale || v.State != state {
		return v, fmt.Errorf("%s: state %s (stale %v), want %s: %+v", n.name, v.State, v.Stale, state, v.Peers)
	}
	for _, p := range v.Peers {
		if want, ok := reach[p.Name]; ok && p.Reach != want {
			return v, fmt.Errorf("%s sees %s %s (probe %s, gossip %s, api %v), want %s", n.name, p.Name, p.Reach, p.Probe, p.Gossip, p.API, want)
		}
	}
	return v, nil
}

// TestWatcherSeesAPartitionedStandby: three nodes on network-namespace
// hosts, each with its consul-watcher. A standby cut off, both ways or
// deafened (it receives nothing; a connection needs both ways), reports
// the partition (its view says minority) within minority_timeout and a
// round of the cut; the other two stay in the majority and see it
// unreachable; after the heal its partition ends, and both ends are in
// the cluster's history with both sides. The active is left alone:
// fencing and the role loop are not the watcher's. One cluster for both
// cuts, one standby each, the second after the first healed.
func TestWatcherSeesAPartitionedStandby(t *testing.T) {
	c, net := newHostCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	t.Log("one standby isolated")
	act = testWatcherStandbyCut(t, c, net, act, 0, (*testenv.Net).Isolate)
	t.Log("the other standby deafened")
	testWatcherStandbyCut(t, c, net, act, 1, (*testenv.Net).Deafen)
}

// testWatcherStandbyCut cuts off the which-th standby of c (0 or 1) with
// cutOff and heals it; it returns the active after the heal.
func testWatcherStandbyCut(t *testing.T, c *tcluster, net *testenv.Net, act *tnode, which int, cutOff func(*testenv.Net, *testenv.Host)) *tnode {
	var standby *tnode
	var others []string
	for _, n := range c.nodes {
		if n != act {
			if which == 0 && standby == nil {
				standby = n
				continue
			}
			which--
		}
		others = append(others, n.name)
	}
	all := map[string]cluster.Reach{"n1": cluster.Reached, "n2": cluster.Reached, "n3": cluster.Reached}
	// Every server back in the Raft configuration too: after a cut,
	// autopilot removes the cut-off server, and the watchers' rejoin
	// brings it back.
	whole := time.Now()
	for _, n := range c.nodes {
		testenv.Eventually(t, 30*time.Second, func() error {
			v, err := n.seesAs(cluster.PartitionMajority, all)
			if err == nil && v.Servers != 3 {
				err = fmt.Errorf("%s sees %d servers in the raft configuration, want 3: %+v", n.name, v.Servers, v.Peers)
			}
			return err
		})
	}
	t.Logf("every node sees three servers, reached, %v after the start of this step", time.Since(whole).Round(time.Millisecond))
	cfg := standby.cfg
	timeout, round := cfg.Cluster.MinorityTimeout, cfg.Checks.Interval

	cutOff(net, standby.host)
	cut := time.Now()
	var v cluster.Partition
	testenv.Eventually(t, timeout+10*time.Second, func() error {
		var err error
		v, err = standby.seesAs(cluster.PartitionMinority, nil)
		return err
	})
	seen := time.Since(cut)
	// The round that first finds the servers cut starts within a round of
	// the cut; the partition starts minority_timeout after that round, by
	// the watcher's own clock (the hosts share the test's).
	if took := v.Since.Sub(cut); took > timeout+round+100*time.Millisecond {
		t.Errorf("%s's partition started %v after the cut, want within minority_timeout %v + a round %v", standby.name, took, timeout, round)
	}
	// Its view is written at the end of that round: after the probes'
	// timeout.
	if bound := timeout + round + config.ProbeTimeout(round) + time.Second; seen > bound {
		t.Errorf("%s's view said minority %v after the cut, want within %v", standby.name, seen, bound)
	}
	_, other := v.Sides()
	if !slices.Equal(other, others) || v.Majority || v.ReachedServers != 1 {
		t.Errorf("%s's view: cut from %v (want %v), majority %v, %d servers reached: %+v", standby.name, other, others, v.Majority, v.ReachedServers, v)
	}
	t.Logf("%s in the minority %v after the cut (its round at %v): %+v", standby.name, seen.Round(time.Millisecond), v.Since.Sub(cut).Round(time.Millisecond), v.Peers)
	for _, n := range c.nodes {
		if n == standby {
			continue
		}
		testenv.Eventually(t, timeout, func() error {
			_, err := n.seesAs(cluster.PartitionMajority, map[string]cluster.Reach{standby.name: cluster.Unreachable})
			return err
		})
	}
	if got, err := c.active(); err != nil || got != act {
		t.Errorf("the active moved while a standby was cut off: %v, %v", got, err)
	}

	net.Heal()
	healed := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error { _, err := standby.seesAs(cluster.PartitionMajority, all); return err })
	t.Logf("%s back in the majority %v after the heal", standby.name, time.Since(healed).Round(time.Millisecond))

	// Both ends in the history, written by the standby once its Consul
	// took writes again, with the times they happened.
	testenv.Eventually(t, 30*time.Second, func() error {
		var ans nodeapi.EventsAnswer
		resp, err := client.Get(act.apiURL() + "/v1/events?limit=100")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return err
		}
		var got []string
		for _, e := range ans.Events {
			if e.Kind != cluster.EventPartition || e.Node != standby.name {
				continue
			}
			got = append(got, e.Details["state"])
			if e.Details["this_side"] != standby.name || e.Details["other_side"] != strings.Join(others, ",") {
				return fmt.Errorf("partition event with sides %q | %q, want %q | %q: %+v", e.Details["this_side"], e.Details["other_side"], standby.name, strings.Join(others, ","), e)
			}
			if e.Time.Before(cut) || e.Time.After(time.Now()) {
				return fmt.Errorf("partition event at %v, the cut at %v: %+v", e.Time, cut, e)
			}
		}
		if !slices.Equal(got, []string{"end", "start"}) { // newest first
			return fmt.Errorf("partition events of %s: %v, want end then start", standby.name, got)
		}
		return nil
	})
	return c.waitHealedAfter(act)
}
