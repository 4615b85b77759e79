package watcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// A node's observation of another node in one round.
type obsOf func(name string) NodeObs

var (
	// ok: gossip alive, the RPC port answers in a millisecond, the API answers.
	ok obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "alive", Probe: ProbeOK, RTT: time.Millisecond, API: true}
	}
	// crashed: Consul gone on a live host: gossip failed, the port refuses,
	// the API (the handler-runner) still answers or not, either way.
	crashed obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "failed", Probe: ProbeRefused}
	}
	// hung: Consul frozen (SIGSTOP): the port takes no connection, gossip
	// failed, but the host's API answers.
	hung obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "failed", Probe: ProbeTimeout, API: true}
	}
	// cut: packets dropped both ways: nothing answers.
	cut obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "failed", Probe: ProbeTimeout}
	}
	// deaf: a one-way cut seen from the node that receives nothing: gossip
	// still says alive (the others reach it and vouch for it) but no
	// connection completes.
	deaf obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "alive", Probe: ProbeTimeout}
	}
	// slow: gossip alive, the port answers, in 400 ms.
	slow obsOf = func(n string) NodeObs {
		return NodeObs{Name: n, Server: true, Gossip: "alive", Probe: ProbeOK, RTT: 400 * time.Millisecond, API: true}
	}
)

func self(n string) NodeObs {
	o := ok(n)
	o.Self = true
	return o
}

// round is what node n3 (itself a server) sees of n1 and n2.
type round struct{ n1, n2 obsOf }

func rounds(n int, r round) []round {
	out := make([]round, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func seq(parts ...[]round) []round { return slices.Concat(parts...) }

var t0 = time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)

// TestModel runs node n3's model one round a second (checks.interval) with
// minority_timeout 5 s and checks the state after the last round, the
// transitions, and how the peers are seen.
func TestModel(t *testing.T) {
	healthy := round{ok, ok}
	tests := []struct {
		name   string
		rounds []round
		state  string
		// transitions as "start@S this|other" or "end@S this|other", S
		// the round's second.
		transitions []string
		reach       map[string]cluster.Reach
	}{
		{"healthy", rounds(10, healthy), cluster.PartitionMajority, nil,
			map[string]cluster.Reach{"n1": cluster.Reached, "n2": cluster.Reached, "n3": cluster.Reached}},
		{"a partition starts after minority_timeout, ends at the heal",
			seq(rounds(2, healthy), rounds(8, round{cut, cut}), rounds(2, healthy)), cluster.PartitionMajority,
			// cut from second 2; minority at second 7 (5 s later); back at 10
			[]string{"start@7 n3|n1,n2", "end@10 n3|n1,n2"}, nil},
		{"still cut, under the timeout", seq(rounds(2, healthy), rounds(5, round{cut, cut})), cluster.PartitionCut, nil,
			map[string]cluster.Reach{"n1": cluster.Unreachable, "n2": cluster.Unreachable}},
		{"in the minority", seq(rounds(2, healthy), rounds(7, round{cut, cut})), cluster.PartitionMinority,
			[]string{"start@7 n3|n1,n2"}, nil},
		{"a crashed server is down, not cut; the majority holds", rounds(10, round{crashed, ok}), cluster.PartitionMajority, nil,
			map[string]cluster.Reach{"n1": cluster.Down, "n2": cluster.Reached}},
		{"two crashed servers: an outage, never a partition", seq(rounds(2, healthy), rounds(20, round{crashed, crashed})), cluster.PartitionOutage, nil,
			map[string]cluster.Reach{"n1": cluster.Down, "n2": cluster.Down}},
		{"two hung servers whose hosts answer: an outage", rounds(20, round{hung, hung}), cluster.PartitionOutage, nil,
			map[string]cluster.Reach{"n1": cluster.Down, "n2": cluster.Down}},
		{"one crashed and one cut: cut from the majority, a partition", seq(rounds(1, healthy), rounds(8, round{crashed, cut})), cluster.PartitionMinority,
			[]string{"start@6 n3|n1,n2"}, map[string]cluster.Reach{"n1": cluster.Down, "n2": cluster.Unreachable}},
		{"a slow server is slow and reached", rounds(10, round{slow, ok}), cluster.PartitionMajority, nil,
			map[string]cluster.Reach{"n1": cluster.Slow, "n2": cluster.Reached}},
		{"two slow servers: still the majority", rounds(10, round{slow, slow}), cluster.PartitionMajority, nil,
			map[string]cluster.Reach{"n1": cluster.Slow, "n2": cluster.Slow}},
		{"the majority side sees the cut node unreachable", rounds(10, round{ok, cut}), cluster.PartitionMajority, nil,
			map[string]cluster.Reach{"n2": cluster.Unreachable}},
		{"one-way cut: gossip says alive, the probes say cut", seq(rounds(1, healthy), rounds(7, round{deaf, deaf})), cluster.PartitionMinority,
			[]string{"start@6 n3|n1,n2"}, map[string]cluster.Reach{"n1": cluster.Unreachable, "n2": cluster.Unreachable}},
		{"flapping every round never starts a partition",
			slices.Repeat([]round{{cut, cut}, healthy}, 10), cluster.PartitionMajority, nil, nil},
		{"flapping every round with a majority-side peer never starts one",
			slices.Repeat(seq(rounds(4, round{cut, cut}), rounds(1, healthy)), 5), cluster.PartitionMajority, nil, nil},
		{"a partition whose other side refuses during the heal lasts until a majority",
			seq(rounds(7, round{cut, cut}), rounds(3, round{crashed, crashed}), rounds(1, healthy)), cluster.PartitionMajority,
			[]string{"start@5 n3|n1,n2", "end@10 n3|n1,n2"}, nil},
		{"flapping inside a partition ends it and starts it again after the timeout",
			seq(rounds(6, round{cut, cut}), rounds(1, healthy), rounds(6, round{cut, cut})), cluster.PartitionMinority,
			[]string{"start@5 n3|n1,n2", "end@6 n3|n1,n2", "start@12 n3|n1,n2"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewModel(Params{Node: "n3", Mode: "fence", MinorityTimeout: 5 * time.Second, Slow: 250 * time.Millisecond})
			var got []string
			var v cluster.Partition
			for i, r := range tc.rounds {
				o := Observation{At: t0.Add(time.Duration(i) * time.Second), Nodes: []NodeObs{r.n1("n1"), r.n2("n2"), self("n3")}}
				sortNodes(o.Nodes)
				var tr *Transition
				v, tr = m.Step(o)
				if tr != nil {
					kind := "end"
					if tr.Start {
						kind = "start"
					}
					got = append(got, fmt.Sprintf("%s@%d %s|%s", kind, int(tr.At.Sub(t0).Seconds()),
						strings.Join(tr.ThisSide, ","), strings.Join(tr.OtherSide, ",")))
				}
			}
			if v.State != tc.state {
				t.Errorf("state %q after %d rounds, want %q; view %+v", v.State, len(tc.rounds), tc.state, v)
			}
			if !slices.Equal(got, tc.transitions) {
				t.Errorf("transitions %q, want %q", got, tc.transitions)
			}
			for _, p := range v.Peers {
				if want, ok := tc.reach[p.Name]; ok && p.Reach != want {
					t.Errorf("%s is %q, want %q", p.Name, p.Reach, want)
				}
			}
			if v.Peers[0].Name != "n3" || !v.Peers[0].Self {
				t.Errorf("the view does not list this node first: %+v", v.Peers)
			}
		})
	}
}

// TestModelSince: the view says since when the state and each peer's reach
// have held.
func TestModelSince(t *testing.T) {
	m := NewModel(Params{Node: "n3", MinorityTimeout: 5 * time.Second})
	step := func(i int, n1 obsOf) cluster.Partition {
		v, _ := m.Step(Observation{At: t0.Add(time.Duration(i) * time.Second), Nodes: []NodeObs{n1("n1"), ok("n2"), self("n3")}})
		return v
	}
	step(0, ok)
	step(1, cut)
	v := step(2, cut)
	if !v.Since.Equal(t0) || v.State != cluster.PartitionMajority {
		t.Fatalf("state %s since %v, want majority since %v", v.State, v.Since, t0)
	}
	if p := v.Peers[0]; p.Name != "n1" || p.Reach != cluster.Unreachable || !p.Since.Equal(t0.Add(time.Second)) {
		t.Fatalf("n1 seen %+v, want unreachable since %v", p, t0.Add(time.Second))
	}
	if v.Servers != 3 || v.ReachedServers != 2 || !v.Majority {
		t.Fatalf("servers %d reached %d majority %v, want 3, 2, true", v.Servers, v.ReachedServers, v.Majority)
	}
}

// TestModelTickJitter: the round that completes minority_timeout starts
// the partition even when the round that first saw the cut ran a fraction
// of a millisecond late (a ticker's jitter), not a round later.
func TestModelTickJitter(t *testing.T) {
	m := NewModel(Params{Node: "n3", MinorityTimeout: 5 * time.Second, Slack: 20 * time.Millisecond})
	var starts []int
	for i := range 8 {
		at := t0.Add(time.Duration(i) * time.Second)
		if i == 1 {
			at = at.Add(300 * time.Microsecond)
		}
		nodes := []NodeObs{cut("n1"), cut("n2"), self("n3")}
		if i == 0 {
			nodes = []NodeObs{ok("n1"), ok("n2"), self("n3")}
		}
		if _, tr := m.Step(Observation{At: at, Nodes: nodes}); tr != nil && tr.Start {
			starts = append(starts, i)
		}
	}
	if !slices.Equal(starts, []int{6}) {
		t.Fatalf("the partition started at rounds %v, want [6]: cut from round 1, minority_timeout 5 rounds", starts)
	}
}
