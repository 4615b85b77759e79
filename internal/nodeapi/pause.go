package nodeapi

import (
	"context"
	"fmt"
	"net/http"
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
