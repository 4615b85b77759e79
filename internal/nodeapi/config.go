package nodeapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Config is GET /v1/cluster/config of the first node that answers: the
// cluster-wide PostgreSQL parameters.
func (c *Client) Config(ctx context.Context) (cluster.Parameters, error) {
	var out ConfigAnswer
	err := c.anyNode(ctx, "the cluster's configuration", "/v1/cluster/config", &out)
	return out.Parameters, err
}

// ChangeConfig sends a change of the cluster-wide parameters to the active
// node, whose PostgreSQL (a primary, running) judges the names and values
// first.
func (c *Client) ChangeConfig(ctx context.Context, change cluster.ParameterChange) (ConfigAnswer, error) {
	var out ConfigAnswer
	err := c.onActive(ctx, "change the cluster's configuration", func(base string) error {
		rctx, cancel := withTimeout(ctx, c.nodeTimeout+10*time.Second)
		defer cancel()
		if err := c.do(rctx, http.MethodPut, base, "/v1/cluster/config", change, &out); err != nil {
			return fmt.Errorf("ask %s to change the cluster's configuration: %w", base, err)
		}
		return nil
	})
	return out, err
}

// Reload asks the node at url to reload its PostgreSQL's configuration.
func (c *Client) Reload(ctx context.Context, url string) (ReloadAnswer, error) {
	var out ReloadAnswer
	return out, c.postNode(ctx, url, "/v1/node/reload", "reload postgres", c.nodeTimeout+10*time.Second, &out)
}

// postNode sends POST path to the node at url, waiting up to timeout.
func (c *Client) postNode(ctx context.Context, url, path, what string, timeout time.Duration, out any) error {
	if c.err != nil {
		return c.err
	}
	rctx, cancel := withTimeout(ctx, timeout)
	defer cancel()
	if err := c.do(rctx, http.MethodPost, url, path, nil, out); err != nil {
		return fmt.Errorf("ask %s to %s: %w", url, what, err)
	}
	return nil
}

// restartGrace is how much longer than the node's own bound (two minutes)
// the client waits for a restart's answer.
const restartGrace = 2*time.Minute + 10*time.Second

// Restart asks the standby at url to restart its PostgreSQL; it answers
// once PostgreSQL runs again.
func (c *Client) Restart(ctx context.Context, url string) (RestartAnswer, error) {
	var out RestartAnswer
	return out, c.postNode(ctx, url, "/v1/node/restart", "restart postgres", restartGrace, &out)
}

// RestartActive asks the active node at url to restart its PostgreSQL in
// place (writes pause meanwhile): what lowering a parameter a standby needs
// at least the primary's value of takes, before the standbys restart.
func (c *Client) RestartActive(ctx context.Context, url string) (RestartAnswer, error) {
	var out RestartAnswer
	return out, c.postNode(ctx, url, "/v1/node/restart?active=1", "restart postgres on the active in place", restartGrace, &out)
}

// Reinit asks the standby at url to replace its data directory with a
// clone of the active's; it answers once the node has started on it (the
// clone's end shows in its status and in a reinit event).
func (c *Client) Reinit(ctx context.Context, url string) error {
	return c.postNode(ctx, url, "/v1/node/reinit", "reinitialize postgres", restartGrace, nil)
}
