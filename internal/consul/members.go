package consul

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// RemoveNode takes a Consul node out of the cluster for good: it leaves the
// gossip pool (force-leave with prune, so it is not listed as "left" either)
// and, when it was a server, the Raft configuration, so the quorum is
// counted without it. A node that is already gone is not an error.
//
// The node's own agent must be stopped first: a running agent would gossip
// its way back in.
func (c *Client) RemoveNode(ctx context.Context, node string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	rc, err := c.api.Operator().RaftGetConfiguration(q)
	if err != nil {
		return fmt.Errorf("remove %s: read the raft configuration: %w", node, err)
	}
	for _, s := range rc.Servers {
		if s.Node != node {
			continue
		}
		w := (&api.WriteOptions{}).WithContext(ctx)
		if err := c.api.Operator().RaftRemovePeerByID(s.ID, w); err != nil {
			return fmt.Errorf("remove %s from the raft peers: %w", node, err)
		}
	}
	if err := c.api.Agent().ForceLeaveOptions(node, api.ForceLeaveOpts{Prune: true}, q); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove %s from the gossip pool (force-leave): %w", node, err)
	}
	return nil
}

// Members lists the Consul nodes of the LAN gossip pool with their status
// ("alive", "failed", "left").
func (c *Client) Members(ctx context.Context) (map[string]string, error) {
	// Agent().Members takes no context; the raw endpoint does.
	var ms []struct {
		Name   string
		Status int
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Query("/v1/agent/members", &ms, q); err != nil {
		return nil, fmt.Errorf("list consul members: %w", err)
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.Name] = serfStatus(m.Status)
	}
	return out, nil
}

// RaftPeers lists the Consul nodes that are Raft servers.
func (c *Client) RaftPeers(ctx context.Context) ([]string, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	rc, err := c.api.Operator().RaftGetConfiguration(q)
	if err != nil {
		return nil, fmt.Errorf("read the raft configuration: %w", err)
	}
	var out []string
	for _, s := range rc.Servers {
		out = append(out, s.Node)
	}
	return out, nil
}

func serfStatus(s int) string {
	switch s {
	case 1:
		return "alive"
	case 2:
		return "leaving"
	case 3:
		return "left"
	case 4:
		return "failed"
	}
	return "none"
}

// GossipAddrs are the LAN gossip addresses (host:port) of the alive members:
// what a joining agent's retry_join lists.
func (c *Client) GossipAddrs(ctx context.Context) ([]string, error) {
	var ms []struct {
		Addr   string
		Port   int
		Status int
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Query("/v1/agent/members", &ms, q); err != nil {
		return nil, fmt.Errorf("list consul members: %w", err)
	}
	var out []string
	for _, m := range ms {
		if m.Status == 1 {
			out = append(out, net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)))
		}
	}
	return out, nil
}

// Leave makes the local agent leave the cluster gracefully: a server is
// taken out of the Raft peers too.
func (c *Client) Leave(ctx context.Context) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Write("/v1/agent/leave", nil, nil, w); err != nil {
		return fmt.Errorf("leave the consul cluster: %w", err)
	}
	return nil
}

// Voter reports whether the Consul node is a healthy voting Raft server, as
// autopilot sees it: a server that joined counts for the quorum only once
// autopilot has promoted it, after its stabilization time.
func (c *Client) Voter(ctx context.Context, node string) (bool, error) {
	h, err := c.autopilotHealth(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range h.Servers {
		if s.Name == node {
			return s.Voter && s.Healthy, nil
		}
	}
	return false, nil
}

// ServersHealth is autopilot's view of the cluster's Consul servers, one per
// node: the Raft voters, how many of them are healthy, and how many of those
// may fail before no write (no leader key, no election) can be made.
type ServersHealth struct {
	Voters           int `json:"voters"`
	HealthyVoters    int `json:"healthy_voters"`
	FailureTolerance int `json:"failure_tolerance"`
}

// ServersHealth asks autopilot, through the local agent, how the servers
// stand.
func (c *Client) ServersHealth(ctx context.Context) (ServersHealth, error) {
	h, err := c.autopilotHealth(ctx)
	if err != nil {
		return ServersHealth{}, err
	}
	out := ServersHealth{FailureTolerance: h.FailureTolerance}
	for _, s := range h.Servers {
		if s.Voter {
			out.Voters++
			if s.Healthy {
				out.HealthyVoters++
			}
		}
	}
	return out, nil
}

func (c *Client) autopilotHealth(ctx context.Context) (*api.OperatorHealthReply, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	h, err := c.api.Operator().AutopilotServerHealth(q)
	if err != nil {
		return nil, fmt.Errorf("read autopilot's server health: %w", err)
	}
	return h, nil
}
