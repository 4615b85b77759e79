package nodeapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Pause asks the first node that answers to pause the cluster (any node
// may: it writes one key), and returns its answer: the pause it wrote, and
// who is active.
func (c *Client) Pause(ctx context.Context, reason string) (PauseAnswer, error) {
	var out PauseAnswer
	err := c.anyNodeDo(ctx, "pause the cluster", http.MethodPost, "/v1/cluster/pause", PauseRequest{Reason: reason}, &out)
	if err == nil && out.Paused == nil {
		err = fmt.Errorf("pause the cluster: the node answered without the pause it wrote")
	}
	return out, err
}

// Resume asks the first node that answers to end the pause.
func (c *Client) Resume(ctx context.Context) error {
	return c.anyNodeDo(ctx, "resume the cluster", http.MethodPost, "/v1/cluster/resume", nil, nil)
}

// anyNodeDo sends one change to the profile's nodes in order until one
// answers (eachNode).
func (c *Client) anyNodeDo(ctx context.Context, what, method, path string, in, out any) error {
	return c.eachNode(ctx, what, func(base string) error {
		rctx, cancel := withTimeout(ctx, c.nodeTimeout+5*time.Second)
		defer cancel()
		if err := c.do(rctx, method, base, path, in, out); err != nil {
			return fmt.Errorf("ask %s to %s: %w", base, what, err)
		}
		return nil
	})
}

// SetMaintenance puts node name in maintenance (on) or takes it out,
// through the first node that answers (any node may: it writes one key).
func (c *Client) SetMaintenance(ctx context.Context, name string, on bool, reason string) (MaintenanceAnswer, error) {
	var out MaintenanceAnswer
	path := "/v1/cluster/nodes/" + url.PathEscape(name) + "/maintenance"
	if on {
		err := c.anyNodeDo(ctx, "put "+name+" in maintenance", http.MethodPut, path, MaintenanceRequest{Reason: reason}, &out)
		return out, err
	}
	err := c.anyNodeDo(ctx, "take "+name+" out of maintenance", http.MethodDelete, path, nil, &out)
	return out, err
}

// failoverGrace is how much longer than the failover's own timeout the
// client waits for the node's answer, which comes only after it.
const failoverGrace = 10 * time.Second

// Failover asks the first node that answers for a failover to in.Target
// (any node may ask: it writes next-master, which the election honours).
// With in.DryRun it answers the plan only. A refusal is an *APIError
// whose Body holds the plan under "plan".
func (c *Client) Failover(ctx context.Context, in FailoverRequest, timeout time.Duration) (FailoverAnswer, error) {
	var out FailoverAnswer
	in.Timeout = timeout.String()
	err := c.eachNode(ctx, "failover to "+in.Target, func(base string) error {
		rctx, cancel := withTimeout(ctx, timeout+failoverGrace)
		defer cancel()
		if err := c.do(rctx, http.MethodPost, base, "/v1/cluster/failover", in, &out); err != nil {
			return fmt.Errorf("ask %s for a failover to %s: %w", base, in.Target, err)
		}
		return nil
	})
	return out, err
}
