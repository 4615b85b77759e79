package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/jsonfile"
)

// Partition states of a node, as its consul-watcher sees them.
const (
	// PartitionMajority: the node reaches a majority of the Consul servers.
	PartitionMajority = "majority"
	// PartitionCut: the node is cut from a majority, for less than
	// cluster.minority_timeout so far: no partition yet.
	PartitionCut = "cut"
	// PartitionMinority: cut for cluster.minority_timeout or longer: a
	// partition, this node on its minority side.
	PartitionMinority = "minority"
	// PartitionOutage: no majority is reachable, but every server this
	// node misses is down (its host answers, its Consul does not), not cut
	// off: a Consul outage, which is no partition.
	PartitionOutage = "outage"
)

// Reach is how this node reaches another node's Consul server.
type Reach string

const (
	// Reached: the server's RPC port took the connection in time.
	Reached Reach = "reached"
	// Slow: it took the connection, but slowly (a loaded host, a lossy
	// link); still counted as reached.
	Slow Reach = "slow"
	// Down: the server's host answers (the RPC port refuses the
	// connection, or the node's API answers) but its Consul does not:
	// crashed, stopped or hung. Not a partition.
	Down Reach = "down"
	// Unreachable: nothing of the node answers: a partition, or a host
	// that is off. From one node the two look alike.
	Unreachable Reach = "unreachable"
)

// Partition is a node's view of the partitions, written by its
// consul-watcher every round: into a local file that the node's
// handler-runner serves (GET /v1/status/partition) and its check-runner
// publishes in the member record. A local file rather than Consul: in a
// partition the node's own Consul may take no writes, and the node's own
// endpoint must still answer.
type Partition struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"` // when the round that made this view ran
	Mode string    `json:"mode"`
	// MinorityTimeoutMS is cluster.minority_timeout.
	MinorityTimeoutMS int64 `json:"minority_timeout_ms"`
	// State is PartitionMajority, PartitionCut, PartitionMinority or
	// PartitionOutage, since Since.
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Servers counts the Raft servers, ReachedServers those this node
	// reaches (itself included); Majority is ReachedServers > Servers/2.
	Servers        int  `json:"servers"`
	ReachedServers int  `json:"reached_servers"`
	Majority       bool `json:"majority"`
	// Peers are the other nodes (and this one's own server, Self).
	Peers []PeerReach `json:"peers"`
	// Raft is what this node's Consul server says of its Raft state.
	Raft RaftState `json:"raft"`
	// Cluster is the ID of the Consul cluster this node's agent is in
	// (ConsulClusterID; "" without gossip encryption): two nodes with
	// different IDs are on two sides of an active-minority partition.
	Cluster string `json:"cluster,omitempty"`
	// Minority is set while this node's side runs on a Consul quorum of
	// its own (partition_mode "active-minority").
	Minority *Minority `json:"minority,omitempty"`
	// Heal is the decision of a heal this node made or follows, while
	// the sides it names are still apart.
	Heal *Heal `json:"heal,omitempty"`
	// Stale is set by a reader when the view is older than three rounds:
	// the consul-watcher is not running.
	Stale bool `json:"stale,omitempty"`
}

// PeerReach is one node as this node reaches it.
type PeerReach struct {
	Name   string `json:"name"`
	Self   bool   `json:"self,omitempty"`
	Server bool   `json:"server"` // a Raft server of the cluster's Consul
	// Reach of its Consul server ("" for a node that runs none) and since
	// when this node has seen it so.
	Reach Reach     `json:"reach,omitempty"`
	Since time.Time `json:"since,omitempty"`
	// Gossip is Consul's LAN gossip status of the node ("alive",
	// "failed", "left", "" when unknown); Probe what the direct TCP probe
	// of its server's RPC port saw ("ok", "refused", "timeout", "error"),
	// in ProbeMS milliseconds.
	Gossip  string  `json:"gossip,omitempty"`
	Probe   string  `json:"probe,omitempty"`
	ProbeMS float64 `json:"probe_ms,omitempty"`
	// API is whether its handler-runner's API answered (any HTTP answer).
	API bool `json:"api"`
}

// RaftState is the local Consul server's Raft state.
type RaftState struct {
	State string `json:"state,omitempty"` // "Leader", "Follower", "Candidate"; "" unknown
	// LastContactMS is how long ago it last heard from the leader; 0 on
	// the leader, -1 when never or unknown.
	LastContactMS int64 `json:"last_contact_ms"`
	// Voters counts the voters of the local Raft configuration: a server
	// that joined votes only once autopilot has seen it stable.
	Voters int `json:"voters,omitempty"`
}

// HasLeader says whether the local server follows or is a Raft leader it
// heard from within stale.
func (r RaftState) HasLeader(stale time.Duration) bool {
	return r.State == "Leader" || r.State == "Follower" && r.LastContactMS >= 0 && r.LastContactMS < stale.Milliseconds()
}

// Sides are the names of the peers (self included) whose servers this
// node reaches, and Unreached those it does not: both sides of a partition.
func (p Partition) Sides() (reached, unreached []string) {
	for _, r := range p.Peers {
		switch r.Reach {
		case Reached, Slow:
			reached = append(reached, r.Name)
		case "":
			if r.API {
				reached = append(reached, r.Name)
			} else {
				unreached = append(unreached, r.Name)
			}
		default:
			unreached = append(unreached, r.Name)
		}
	}
	return reached, unreached
}

// PartitionFile is where the node's consul-watcher keeps its view.
func PartitionFile(dataDir string) string { return filepath.Join(dataDir, "partition.json") }

// WritePartition replaces the view in dataDir at once (a rename), so a
// reader never sees half of it.
func WritePartition(dataDir string, p Partition) error {
	if err := jsonfile.Write(PartitionFile(dataDir), p); err != nil {
		return fmt.Errorf("the partition view: %w", err)
	}
	return nil
}

// ErrNoPartitionView is returned by ReadPartition when no consul-watcher
// has written a view on this node.
var ErrNoPartitionView = errors.New("no partition view: the consul-watcher has not run on this node (systemctl status understudy-consul-watcher)")

// ReadPartition reads the node's view; a view older than staleAfter is
// marked Stale.
func ReadPartition(dataDir string, now time.Time, staleAfter time.Duration) (Partition, error) {
	b, err := os.ReadFile(PartitionFile(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return Partition{}, ErrNoPartitionView
	}
	if err != nil {
		return Partition{}, fmt.Errorf("read the partition view: %w", err)
	}
	var p Partition
	if err := json.Unmarshal(b, &p); err != nil {
		return Partition{}, fmt.Errorf("read the partition view %s: %w", PartitionFile(dataDir), err)
	}
	p.Stale = now.Sub(p.At) > staleAfter
	return p, nil
}
