package watcher

import (
	"slices"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Probe is what a direct TCP connection to a server's RPC port saw.
type Probe int

const (
	ProbeNone    Probe = iota // not probed: no address known
	ProbeOK                   // connected
	ProbeRefused              // refused (a reset): the host is up, nothing listens
	ProbeTimeout              // no answer in time: packets dropped, or the host is off
	ProbeError                // another failure (no route to the host, ...)
)

func (p Probe) String() string {
	return [...]string{"", "ok", "refused", "timeout", "error"}[p]
}

// NodeObs is one node in one round: the cluster's members and the Raft
// servers, this node included.
type NodeObs struct {
	Name string
	Self bool
	// Server: the node's Consul is a server in the Raft configuration.
	Server bool
	// Gossip is its LAN gossip status ("alive", "failed", "left", "").
	Gossip string
	// Probe and RTT are the TCP probe of its server's RPC port.
	Probe Probe
	RTT   time.Duration
	// API: its handler-runner's API answered (any HTTP answer). This
	// node's own is taken as answering.
	API bool
}

// Observation is one round's observations.
type Observation struct {
	At    time.Time
	Nodes []NodeObs
	Raft  cluster.RaftState
}

// Params are what the model judges by.
type Params struct {
	Node string
	Mode string // cluster.partition_mode, reported
	// MinorityTimeout is cluster.minority_timeout: how long a node must
	// stay cut from a majority before a partition starts.
	MinorityTimeout time.Duration
	// Slow is the probe time above which a server that answered is
	// reported slow (it still counts as reached).
	Slow time.Duration
	// Slack is config.RoundSlack: how early the round that completes
	// MinorityTimeout may run.
	Slack time.Duration
}

// Transition is a partition starting or ending on this node.
type Transition struct {
	Start bool // a partition started; else it ended
	At    time.Time
	// CutSince is when this node was first seen cut from the majority.
	CutSince time.Time
	// ThisSide are the nodes this node reached, itself first, and
	// OtherSide those it was cut from, as the partition started (for its
	// end too). For an end, CutSince is when the partition started.
	ThisSide, OtherSide []string
}

// Model is the partition state machine of one node: fed one observation a
// round, it returns the node's view and the partition starting or ending.
// It does no I/O and reads no clock, so its tests are tables.
//
// A partition starts when the node has been cut from a majority of the
// servers (some of those it misses Unreachable) continuously for
// MinorityTimeout; it ends at the first round that reaches a majority.
// Any round in the majority restarts the clock, so a flapping link that
// never stays cut for MinorityTimeout is never a partition. A round that
// misses the majority only through Down servers is an outage: it starts
// no partition, and ends none either.
type Model struct {
	p        Params
	state    string
	since    time.Time
	cutSince time.Time // zero while not cut
	// thisSide and otherSide are the sides of the current partition, as
	// it started.
	thisSide, otherSide []string
	peers               map[string]peerSeen
}

type peerSeen struct {
	reach cluster.Reach
	since time.Time
}

// NewModel returns the model of a node that has seen nothing yet.
func NewModel(p Params) *Model {
	return &Model{p: p, peers: map[string]peerSeen{}}
}

// State is the current state (cluster.PartitionMajority, ...), "" before
// the first round.
func (m *Model) State() string { return m.state }

// CutSince is when the node was first seen cut from the majority in the
// current cut, zero while it is not cut.
func (m *Model) CutSince() time.Time { return m.cutSince }

// Step takes one round's observation.
func (m *Model) Step(o Observation) (cluster.Partition, *Transition) {
	v := cluster.Partition{Node: m.p.Node, At: o.At, Mode: m.p.Mode, MinorityTimeoutMS: m.p.MinorityTimeout.Milliseconds(), Raft: o.Raft}
	unreachable := false
	for _, n := range o.Nodes {
		r := m.reach(n)
		if n.Server {
			v.Servers++
			switch r {
			case cluster.Reached, cluster.Slow:
				v.ReachedServers++
			case cluster.Unreachable:
				unreachable = true
			}
		}
		v.Peers = append(v.Peers, m.peer(n, r, o.At))
	}
	// Without a known Raft configuration there is no majority to miss.
	v.Majority = v.Servers == 0 || 2*v.ReachedServers > v.Servers
	next := m.next(v.Majority, unreachable, o.At)
	var tr *Transition
	switch {
	case next == cluster.PartitionMinority && m.state != cluster.PartitionMinority:
		m.thisSide, m.otherSide = v.Sides()
		tr = &Transition{Start: true, At: o.At, CutSince: m.cutSince, ThisSide: m.thisSide, OtherSide: m.otherSide}
	case next != cluster.PartitionMinority && m.state == cluster.PartitionMinority:
		tr = &Transition{At: o.At, CutSince: m.since, ThisSide: m.thisSide, OtherSide: m.otherSide}
		m.thisSide, m.otherSide = nil, nil
	}
	if next != m.state {
		m.state, m.since = next, o.At
	}
	v.State, v.Since = m.state, m.since
	return v, tr
}

// next is the state after a round, and keeps the cut clock.
func (m *Model) next(majority, unreachable bool, at time.Time) string {
	switch {
	case majority:
		m.cutSince = time.Time{}
		return cluster.PartitionMajority
	case unreachable:
		if m.cutSince.IsZero() {
			m.cutSince = at
		}
		if m.state == cluster.PartitionMinority || at.Sub(m.cutSince)+m.p.Slack >= m.p.MinorityTimeout {
			return cluster.PartitionMinority
		}
		return cluster.PartitionCut
	case m.state == cluster.PartitionMinority:
		// Still no majority: the partition is not over because the
		// servers on the other side now refuse rather than drop.
		return cluster.PartitionMinority
	default:
		m.cutSince = time.Time{}
		return cluster.PartitionOutage
	}
}

// reach classifies a node's Consul server (the package comment says how a
// crash is told from a partition).
func (m *Model) reach(n NodeObs) cluster.Reach {
	switch {
	case !n.Server && n.Probe == ProbeNone:
		return ""
	case n.Probe == ProbeOK && m.p.Slow > 0 && n.RTT > m.p.Slow:
		return cluster.Slow
	case n.Probe == ProbeOK:
		return cluster.Reached
	case n.Probe == ProbeRefused, n.API || n.Self:
		return cluster.Down
	default:
		return cluster.Unreachable
	}
}

// peer is n's line of the view, with since when it has been so.
func (m *Model) peer(n NodeObs, r cluster.Reach, at time.Time) cluster.PeerReach {
	seen, ok := m.peers[n.Name]
	if !ok || seen.reach != r {
		seen = peerSeen{reach: r, since: at}
		m.peers[n.Name] = seen
	}
	return cluster.PeerReach{
		Name: n.Name, Self: n.Self, Server: n.Server, Reach: r, Since: seen.since,
		Gossip: n.Gossip, Probe: n.Probe.String(), ProbeMS: float64(n.RTT.Microseconds()) / 1000,
		API: n.API || n.Self,
	}
}

// sortNodes puts this node first, then the others by name: the order of
// the view and of the events' sides.
func sortNodes(ns []NodeObs) {
	slices.SortFunc(ns, func(a, b NodeObs) int {
		switch {
		case a.Self != b.Self:
			if a.Self {
				return -1
			}
			return 1
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}
