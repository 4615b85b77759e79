package consul

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrSessionGone: the session no longer exists (invalidated by a failing
// check, a dead node, TTL expiry, or destroyed). A session never comes back:
// the holder must assume it lost every lock it held and create a new one.
var ErrSessionGone = errors.New("consul session no longer exists")

// SerfHealth is the ID of Consul's own liveness check of a node, maintained
// by the servers: critical when the node stops answering gossip.
const SerfHealth = "serfHealth"

// SessionOptions describe a session of the local agent's node.
type SessionOptions struct {
	Name string
	// Checks are IDs of checks on this node's agent the session is bound
	// to: the session ends the moment one of them turns critical. "serfHealth"
	// is not implied and must be listed explicitly (NodeChecks returns it with
	// the service's checks); no checks at all leaves only the TTL.
	Checks []string
	// TTL ends the session when it is not renewed for this long (Consul
	// accepts 10s..24h and may take up to twice as long to act on it); 0 is
	// none.
	TTL time.Duration
	// LockDelay is how long Consul refuses to grant the locks of the session
	// again after it was invalidated: the window in which a holder that lost
	// its session, and may not know it yet, fences itself before anyone else
	// can take the lock. 0 is none (not Consul's default of 15s); Consul
	// caps it at 60s.
	LockDelay time.Duration
}

// CreateSession creates a session of the agent's own node with behaviour
// "release". Release, not delete: when the session ends the leader key keeps
// its value (who held it, since when), so the next decider still sees who
// was active, and CAS on the key keeps working.
//
// It fails while a bound check is critical, with an error that names the
// checks that are not passing and their output.
func (c *Client) CreateSession(ctx context.Context, o SessionOptions) (id string, err error) {
	nodeChecks, serviceChecks, err := c.classifyChecks(ctx, o.Checks)
	if err != nil {
		return "", fmt.Errorf("create session %q: %w", o.Name, err)
	}
	// The body is written by hand, not with api.Session().Create: that
	// leaves out a zero LockDelay, which Consul then takes as 15s, and an
	// empty NodeChecks, which Consul then takes as [serfHealth].
	body := map[string]any{
		"Name":          o.Name,
		"Behavior":      api.SessionBehaviorRelease,
		"LockDelay":     fmt.Sprintf("%dms", o.LockDelay.Milliseconds()),
		"NodeChecks":    nodeChecks,
		"ServiceChecks": serviceChecks,
	}
	if o.TTL > 0 {
		body["TTL"] = o.TTL.String()
	}
	var out struct{ ID string }
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Write("/v1/session/create", body, &out, w); err != nil {
		// Consul names only the first bad check ("Check 'x' is in critical
		// state", "Missing check 'x' registration"); say what all of them are.
		if strings.Contains(err.Error(), "heck '") {
			if why := c.notPassing(ctx, o.Checks); why != "" {
				return "", fmt.Errorf("create session %q: %s: %w", o.Name, why, err)
			}
		}
		return "", fmt.Errorf("create session %q (ttl %v, lock delay %v) on consul agent %s: %w", o.Name, o.TTL, o.LockDelay, c.addr, err)
	}
	return out.ID, nil
}

// classifyChecks splits check IDs into node checks and service checks, as
// Consul's session API wants them, by asking the local agent which of them
// belong to a service. IDs the agent does not list (serfHealth, which the
// servers keep) are node checks.
func (c *Client) classifyChecks(ctx context.Context, ids []string) ([]string, []api.ServiceCheck, error) {
	nodeChecks, serviceChecks := []string{}, []api.ServiceCheck{}
	if len(ids) == 0 {
		return nodeChecks, serviceChecks, nil
	}
	local, err := c.api.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("list checks of consul agent %s: %w", c.addr, err)
	}
	for _, id := range ids {
		if ch, ok := local[id]; ok && ch.ServiceID != "" {
			serviceChecks = append(serviceChecks, api.ServiceCheck{ID: id})
		} else {
			nodeChecks = append(nodeChecks, id)
		}
	}
	return nodeChecks, serviceChecks, nil
}

// notPassing describes the checks of ids that are not passing in the
// catalog (what Consul validates a session against), or "" when it cannot
// tell or they all pass.
func (c *Client) notPassing(ctx context.Context, ids []string) string {
	node, err := c.AgentNodeName(ctx)
	if err != nil {
		return ""
	}
	checks, _, err := c.api.Health().Node(node, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return ""
	}
	var bad []string
	for _, id := range ids {
		i := slices.IndexFunc(checks, func(h *api.HealthCheck) bool { return h.CheckID == id })
		switch {
		case i < 0:
			bad = append(bad, fmt.Sprintf("check %q is not registered on node %s", id, node))
		case checks[i].Status != Passing:
			bad = append(bad, fmt.Sprintf("check %q is %s (output: %q)", id, checks[i].Status, checks[i].Output))
		}
	}
	return strings.Join(bad, ", ")
}

// RenewSession resets the session's TTL. It returns an error wrapping
// ErrSessionGone when Consul no longer knows the session. A successful renew
// is a write through the Raft leader, so it also confirms that this node
// still reaches a quorum.
func (c *Client) RenewSession(ctx context.Context, id string) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	entry, _, err := c.api.Session().Renew(id, w)
	if err != nil {
		return fmt.Errorf("renew session %s on consul agent %s: %w", id, c.addr, err)
	}
	if entry == nil {
		return fmt.Errorf("renew session %s: %w", id, ErrSessionGone)
	}
	return nil
}

// DestroySession ends the session; one that no longer exists is not an
// error. Destroying invalidates: keys it still holds are released and their
// lock delay starts. For a planned handover, Release the lock first (an
// explicit release has no lock delay), then destroy.
func (c *Client) DestroySession(ctx context.Context, id string) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.Session().Destroy(id, w); err != nil {
		return fmt.Errorf("destroy session %s on consul agent %s: %w", id, c.addr, err)
	}
	return nil
}

// SessionInfo reports whether Consul still knows the session.
func (c *Client) SessionInfo(ctx context.Context, id string) (exists bool, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	entry, _, err := c.api.Session().Info(id, q)
	if err != nil {
		return false, fmt.Errorf("read session %s from consul agent %s: %w", id, c.addr, err)
	}
	return entry != nil, nil
}

// AgentNodeName is the Consul node name of the local agent: the node a
// session created here belongs to.
func (c *Client) AgentNodeName(ctx context.Context) (string, error) {
	var self struct{ Config struct{ NodeName string } }
	q := (&api.QueryOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return "", fmt.Errorf("ask consul agent %s for its node name: %w", c.addr, err)
	}
	return self.Config.NodeName, nil
}

// NodeChecks returns the local agent's node name and the checks a session of
// the service's process must be bound to: serfHealth, then the service's
// checks on this agent sorted by ID. It returns an error wrapping
// ErrNotRegistered when the service has no checks here: a session bound to
// serfHealth alone would survive every failure of the service.
func (c *Client) NodeChecks(ctx context.Context, serviceID string) (node string, checks []string, err error) {
	node, err = c.AgentNodeName(ctx)
	if err != nil {
		return "", nil, err
	}
	local, err := c.api.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", nil, fmt.Errorf("list checks of consul agent %s: %w", c.addr, err)
	}
	for id, ch := range local {
		if ch.ServiceID == serviceID {
			checks = append(checks, id)
		}
	}
	if len(checks) == 0 {
		return node, nil, fmt.Errorf("checks of service %s on node %s: %w", serviceID, node, ErrNotRegistered)
	}
	slices.Sort(checks)
	return node, append([]string{SerfHealth}, checks...), nil
}

// LocalFailing describes the checks of ids that the local agent runs and
// that were reported failing there, or "" when none was. A check whose TTL
// ran out without a report does not count: the agent blocks TTL updates
// while it waits on the servers (a Consul leader election), so an expired
// check says little about the node. serfHealth and other checks the
// servers keep are not the agent's and are skipped: this is the node's own
// word on its health, which a failure report from another node cannot
// change.
func (c *Client) LocalFailing(ctx context.Context, ids []string) (string, error) {
	local, err := c.api.Agent().ChecksWithFilterOpts("", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("list checks of consul agent %s: %w", c.addr, err)
	}
	var bad []string
	for _, id := range ids {
		if ch, ok := local[id]; ok && ch.Status != Passing && !strings.HasPrefix(ch.Output, "TTL expired") {
			bad = append(bad, fmt.Sprintf("check %q is %s (output: %q)", id, ch.Status, ch.Output))
		}
	}
	return strings.Join(bad, ", "), nil
}
