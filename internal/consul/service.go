package consul

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// Health states of a check, as Consul names them.
const (
	Passing  = api.HealthPassing
	Warning  = api.HealthWarning
	Critical = api.HealthCritical
)

// Service is a service on the local agent whose health is a set of TTL
// checks that the registering process keeps alive.
type Service struct {
	ID, Name string
	Address  string
	Port     int
	Tags     []string
	Meta     map[string]string
	Checks   []TTLCheck
}

// TTLCheck is one TTL check of a Service. CheckID is what UpdateTTL takes.
type TTLCheck struct {
	CheckID string
	Name    string
	TTL     time.Duration
	Notes   string
	// Status is the check's state on registration; "" is critical.
	Status string
}

// RegisterService registers svc on the local agent, replacing an earlier
// registration of the same ID. A check starts critical unless its Status
// says otherwise: a node is not healthy until its checks have said so.
func (c *Client) RegisterService(ctx context.Context, svc Service) error {
	reg := &api.AgentServiceRegistration{
		ID: svc.ID, Name: svc.Name, Address: svc.Address, Port: svc.Port,
		Tags: svc.Tags, Meta: svc.Meta,
	}
	for _, ch := range svc.Checks {
		reg.Checks = append(reg.Checks, &api.AgentServiceCheck{
			CheckID: ch.CheckID, Name: ch.Name, TTL: ch.TTL.String(),
			Notes: ch.Notes, Status: cmp.Or(ch.Status, api.HealthCritical),
		})
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := c.api.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("register service %s on consul agent %s: %w", svc.ID, c.addr, err)
	}
	return nil
}

// UpdateTTL reports a check's state and output. It returns an error wrapping
// ErrNotRegistered when the agent does not know the check.
func (c *Client) UpdateTTL(ctx context.Context, checkID, status, output string) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	err := c.api.Agent().UpdateTTLOpts(checkID, output, status, q)
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return fmt.Errorf("update check %s: %w", checkID, ErrNotRegistered)
	}
	return fmt.Errorf("update check %s on consul agent %s: %w", checkID, c.addr, err)
}

// CheckState is a check as Consul's health API reports it.
type CheckState struct {
	Node, CheckID, Name, Status, Output string
}

// ServiceChecks returns the checks of every instance of service across the
// cluster, as the catalog's health endpoint has them: what a peer or an
// operator sees, not what the local agent believes.
func (c *Client) ServiceChecks(ctx context.Context, service string) ([]CheckState, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	hcs, _, err := c.api.Health().Checks(service, q)
	if err != nil {
		return nil, fmt.Errorf("read health of service %s from consul: %w", service, err)
	}
	out := make([]CheckState, 0, len(hcs))
	for _, hc := range hcs {
		out = append(out, CheckState{Node: hc.Node, CheckID: hc.CheckID, Name: hc.Name, Status: hc.Status, Output: hc.Output})
	}
	return out, nil
}

// CatalogHasCheck says whether the catalog lists checkID on node, read from
// any server (stale): the local agent may believe its checks are synced
// while the catalog lost them (a node reaped as failed while it was away
// comes back with its node entry only, and the agent syncs the rest at its
// next full sync, a minute or more later).
func (c *Client) CatalogHasCheck(ctx context.Context, node, checkID string) (bool, error) {
	q := (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
	hcs, _, err := c.api.Health().Node(node, q)
	if err != nil {
		return false, fmt.Errorf("read the checks of node %s from consul's catalog: %w", node, err)
	}
	for _, hc := range hcs {
		if hc.CheckID == checkID {
			return true, nil
		}
	}
	return false, nil
}
