package consul

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/consul/api"
)

// nodeMaintenance is the check Consul adds to a node in maintenance mode
// (`consul maint -enable`): critical, so such a node is never a healthy peer.
const nodeMaintenance = "_node_maintenance"

// NodeHealth is the health of one node as the election sees it.
type NodeHealth struct {
	Node string
	// Status is the worst of serfHealth, node maintenance and the service's
	// checks on the node: Passing, Warning or Critical.
	Status string
	// Failing are the checks that are not passing, sorted by ID.
	Failing []CheckState
}

// Passing reports whether every check counted is passing.
func (h NodeHealth) Passing() bool { return h.Status == Passing }

// NodeHealth returns, per Consul node name, the health of every node that
// runs service: the worst status of serfHealth (is the node alive), node
// maintenance and the service's own checks there, and which checks fail. It
// reads the catalog, so it is the cluster's view, not the local agent's.
// Other node-level checks, which understudy neither registers nor binds its
// session to, are not counted. A node without the service is absent.
func (c *Client) NodeHealth(ctx context.Context, service string) (map[string]NodeHealth, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	entries, _, err := c.api.Health().Service(service, "", false, q)
	if err != nil {
		return nil, fmt.Errorf("read health of service %s from consul agent %s: %w", service, c.addr, err)
	}
	out := map[string]NodeHealth{}
	for _, e := range entries {
		h, ok := out[e.Node.Node]
		if !ok {
			h = NodeHealth{Node: e.Node.Node, Status: Passing}
		}
		for _, hc := range e.Checks {
			counted := hc.CheckID == SerfHealth || hc.CheckID == nodeMaintenance ||
				(hc.ServiceID != "" && hc.ServiceID == e.Service.ID)
			if !counted || hc.Status == Passing || hasCheck(h.Failing, hc.CheckID) {
				continue
			}
			h.Failing = append(h.Failing, CheckState{
				Node: hc.Node, CheckID: hc.CheckID, Name: hc.Name, Status: hc.Status, Output: hc.Output,
			})
			h.Status = worse(h.Status, hc.Status)
		}
		sort.Slice(h.Failing, func(i, j int) bool { return h.Failing[i].CheckID < h.Failing[j].CheckID })
		out[h.Node] = h
	}
	return out, nil
}

func hasCheck(cs []CheckState, id string) bool {
	for _, c := range cs {
		if c.CheckID == id {
			return true
		}
	}
	return false
}

// worse returns the worse of two statuses; an unknown status counts as
// critical, since the election must not trust what it cannot read.
func worse(a, b string) string {
	rank := func(s string) int {
		switch s {
		case Passing:
			return 0
		case Warning:
			return 1
		default:
			return 2
		}
	}
	switch max(rank(a), rank(b)) {
	case 0:
		return Passing
	case 1:
		return Warning
	default:
		return Critical
	}
}
