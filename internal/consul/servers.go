package consul

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// GossipMember is one node of the LAN gossip pool as the local agent sees
// it: its gossip status and, for a server, where its RPC port is.
type GossipMember struct {
	Name   string
	Addr   string
	Status string // "alive", "leaving", "left", "failed"
	Server bool
	// Port is the member's gossip (serf LAN) port.
	Port int
	// RPCPort is a server's RPC (and Raft) port, from its gossip tags; 0
	// for a client agent.
	RPCPort int
}

// GossipMembers lists the LAN gossip pool. The local agent answers from
// its own gossip state, with or without a Raft leader.
func (c *Client) GossipMembers(ctx context.Context) ([]GossipMember, error) {
	var ms []struct {
		Name   string
		Addr   string
		Port   int
		Status int
		Tags   map[string]string
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Query("/v1/agent/members", &ms, q); err != nil {
		return nil, fmt.Errorf("list consul members: %w", err)
	}
	out := make([]GossipMember, 0, len(ms))
	for _, m := range ms {
		g := GossipMember{Name: m.Name, Addr: m.Addr, Port: m.Port, Status: serfStatus(m.Status), Server: m.Tags["role"] == "consul"}
		if g.Server {
			g.RPCPort, _ = strconv.Atoi(m.Tags["port"])
		}
		out = append(out, g)
	}
	return out, nil
}

// Join asks the local agent to join the gossip pool through addr (host:port
// of a member's serf LAN port): what `consul join` does.
func (c *Client) Join(ctx context.Context, addr string) error {
	q := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Write("/v1/agent/join/"+addr, nil, nil, q); err != nil {
		return fmt.Errorf("join the consul gossip pool through %s: %w", addr, err)
	}
	return nil
}

// RaftServersStale lists the Consul nodes of the Raft configuration as the
// local server last knew it (a stale read: it answers without a leader, as
// in a partition's minority).
func (c *Client) RaftServersStale(ctx context.Context) ([]string, error) {
	rc, err := c.RaftConfigStale(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rc))
	for _, s := range rc {
		out = append(out, s.Node)
	}
	return out, nil
}

// RaftServer is a server of the Raft configuration.
type RaftServer struct {
	ID      string // its node ID
	Node    string // its Consul node name
	Address string // its RPC (and Raft) address, host:port
	Voter   bool
}

// RaftConfigStale is the Raft configuration as the local server holds it,
// with or without a leader: the servers a minority recovers with are
// named by it.
func (c *Client) RaftConfigStale(ctx context.Context) ([]RaftServer, error) {
	q := (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
	rc, err := c.api.Operator().RaftGetConfiguration(q)
	if err != nil {
		return nil, fmt.Errorf("read the raft configuration: %w", err)
	}
	out := make([]RaftServer, 0, len(rc.Servers))
	for _, s := range rc.Servers {
		out = append(out, RaftServer{ID: s.ID, Node: s.Node, Address: s.Address, Voter: s.Voter})
	}
	return out, nil
}

// RaftState is the local server's Raft state (agent/self's stats).
type RaftState struct {
	State string // "Leader", "Follower", "Candidate"
	// LastContact is how long ago it last heard from the leader: 0 on the
	// leader, -1 when never.
	LastContact time.Duration
}

// LocalRaft asks the local agent, a server, for its Raft state.
func (c *Client) LocalRaft(ctx context.Context) (RaftState, error) {
	var self struct {
		Stats struct {
			Raft map[string]string `json:"raft"`
		}
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return RaftState{}, fmt.Errorf("ask consul agent %s for its raft state: %w", c.addr, err)
	}
	st := RaftState{State: self.Stats.Raft["state"], LastContact: -1}
	switch lc := strings.TrimSpace(self.Stats.Raft["last_contact"]); lc {
	case "", "never":
	case "0":
		st.LastContact = 0
	default:
		if d, err := time.ParseDuration(lc); err == nil {
			st.LastContact = d
		}
	}
	return st, nil
}

// ListJSONStale is ListJSON read from the local server's state, without
// asking the leader: it answers in a partition's minority, where the
// values may be old.
func (c *Client) ListJSONStale(ctx context.Context, prefix string, each func(key string, raw []byte) error) error {
	return c.list(ctx, prefix, true, each)
}
