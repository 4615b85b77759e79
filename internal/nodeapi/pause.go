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
// answers; a 4xx ends the search, since every node would answer it the same.
func (c *Client) anyNodeDo(ctx context.Context, what, method, path string, in, out any) error {
	if c.err != nil {
		return c.err
	}
	if len(c.profile.Nodes) == 0 {
		return fmt.Errorf("profile %q lists no nodes; add them with understudy profile add %s --nodes URL,URL", c.profile.Name, profileName(c.profile))
	}
	var errs []error
	for _, base := range c.profile.Nodes {
		rctx, cancel := withTimeout(ctx, c.nodeTimeout+5*time.Second)
		err := c.do(rctx, method, base, path, in, out)
		cancel()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("ask %s to %s: %w", base, what, err)
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return &NodesError{Profile: c.profile.Name, What: what, Errs: errs}
}
