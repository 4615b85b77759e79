package cluster

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Minority is a side of a partition that runs on a Consul quorum of its
// own (partition_mode "active-minority"): its consul-watchers recovered
// one from the servers they still reached, and it elects an active among
// its nodes. Kept in the node's minority file across restarts of the
// watcher until the side is whole again or joins the surviving cluster.
type Minority struct {
	At time.Time `json:"at"` // when this node's agent was recovered
	// Side are the member names of the side, this node first; Servers
	// the Consul node names of the Raft configuration it was cut from
	// (the whole cluster's).
	Side    []string `json:"side"`
	Servers []string `json:"servers"`
	// Cluster is the recovered Consul cluster's ID (ConsulClusterID).
	Cluster string `json:"cluster"`
}

// MinorityFile is where the consul-watcher keeps its node's Minority.
func MinorityFile(dataDir string) string { return filepath.Join(dataDir, "minority.json") }

// ConsulKeyringFile is where the consul-watcher keeps its Consul agent's
// gossip keyring for the handler-runner to give to a node that resets its
// agent to join this node's Consul cluster (GET /v1/consul/keyring): the
// agent's own copy is its user's. 0600, root's.
func ConsulKeyringFile(dataDir string) string { return filepath.Join(dataDir, "consul-keyring.json") }

// ConsulClusterID names a Consul cluster by its gossip key, the first of
// its keyring: every recovered side takes a key of its own, so two sides
// that meet after a heal tell each other apart by it. It is a digest:
// the key itself never leaves the node but to a node that must join its
// cluster.
func ConsulClusterID(keyring []string) string {
	if len(keyring) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte("understudy consul cluster\n" + keyring[0]))
	return hex.EncodeToString(sum[:6])
}

// MinorityKey is the gossip key of a side that recovers a quorum of its
// own: derived from the key it had and its servers' node IDs, so that every
// server of the side, each deciding alone, takes the same one, and the
// other side, which keeps the old key, cannot merge with it.
func MinorityKey(current string, serverIDs []string) string {
	ids := slices.Sorted(slices.Values(serverIDs))
	m := hmac.New(sha256.New, []byte(current))
	m.Write([]byte("understudy active-minority\n" + strings.Join(ids, "\n")))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// HealSide is one Consul cluster met at a heal, with what its databases
// say.
type HealSide struct {
	Cluster string   `json:"cluster"`
	Nodes   []string `json:"nodes"`
	// Active is the side's active node, "" if none answered as one.
	Active string `json:"active,omitempty"`
	// LastCommit and LSN are the side's most recent commit and furthest
	// WAL position over its nodes (the active's, when it has one).
	LastCommit time.Time `json:"last_commit,omitzero"`
	LSN        LSN       `json:"lsn"`
	Timeline   uint32    `json:"timeline"`
}

// Heal is the decision, made once by one node (the decider: the first by
// name among those that answered) when nodes of two Consul clusters meet
// again, of which side stays: the others reset their Consul agents to join
// it, and their PostgreSQL follows its active.
type Heal struct {
	At      time.Time  `json:"at"`
	Decider string     `json:"decider"`
	Winner  string     `json:"winner"` // the Cluster of the side that stays
	Sides   []HealSide `json:"sides"`
	Reason  string     `json:"reason"`
}

// Loses says whether the side of Consul cluster id must reset to join the
// winner.
func (h Heal) Loses(id string) bool {
	return id != h.Winner && slices.ContainsFunc(h.Sides, func(s HealSide) bool { return s.Cluster == id })
}

// Side is the side of Consul cluster id.
func (h Heal) Side(id string) (HealSide, bool) {
	i := slices.IndexFunc(h.Sides, func(s HealSide) bool { return s.Cluster == id })
	if i < 0 {
		return HealSide{}, false
	}
	return h.Sides[i], true
}

// ChooseSurvivor is the rule of a heal: the side whose database was
// written last stays ("the most-recently updated database becomes the
// active"): the latest commit first (a side whose nodes know no commit
// time loses to one that does), then the furthest WAL position, then the
// side with more nodes, then the lower cluster ID, so that any node
// choosing from the same answers chooses alike. It returns the index of
// the winner in sides and why.
func ChooseSurvivor(sides []HealSide) (int, string) {
	if len(sides) == 0 {
		return -1, "no side"
	}
	best := 0
	for i := 1; i < len(sides); i++ {
		if compareSides(sides[i], sides[best]) > 0 {
			best = i
		}
	}
	w := sides[best]
	var others []string
	for i, s := range sides {
		if i != best {
			others = append(others, describeSide(s))
		}
	}
	return best, fmt.Sprintf("%s was written last; %s", describeSide(w), strings.Join(others, "; "))
}

func compareSides(a, b HealSide) int {
	return cmp.Or(
		a.LastCommit.Compare(b.LastCommit),
		cmp.Compare(a.LSN, b.LSN),
		cmp.Compare(len(a.Nodes), len(b.Nodes)),
		-strings.Compare(a.Cluster, b.Cluster),
	)
}

func describeSide(s HealSide) string {
	last := "no commit time known"
	if !s.LastCommit.IsZero() {
		last = "last commit " + s.LastCommit.UTC().Format(time.RFC3339Nano)
	}
	who := strings.Join(s.Nodes, ",")
	if s.Active != "" {
		who += " (active " + s.Active + ")"
	}
	return fmt.Sprintf("side %s: %s, %s at %s on timeline %d", s.Cluster, who, last, s.LSN, s.Timeline)
}
