package devcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/wait"
)

// apiTimeout bounds one call to a node's API.
const apiTimeout = 2 * time.Second

// statusCode is what HAProxy sees at a node's /status; 0 when it does not
// answer.
func statusCode(ctx context.Context, nc *nodeapi.NodeClient, n Node) int {
	_, err := nc.Active(ctx, n.APIURL, apiTimeout)
	var ae *nodeapi.APIError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &ae):
		return ae.Status
	}
	return 0
}

// Active returns the index of the node answering /status 200, or an error
// saying what each answered.
func Active(ctx context.Context, s *State) (int, error) {
	active, seen := -1, ""
	hc := s.client()
	for i, n := range s.Nodes {
		code := statusCode(ctx, hc, n)
		seen += fmt.Sprintf(" %s:%d", n.Name, code)
		if code == http.StatusOK {
			if active >= 0 {
				return -1, fmt.Errorf("two nodes answer /status 200:%s", seen)
			}
			active = i
		}
	}
	if active < 0 {
		return -1, fmt.Errorf("no node answers /status 200:%s", seen)
	}
	return active, nil
}

// WaitHealthy waits until one node is active and every other node of s
// (skip: indexes to leave out) is a standby streaming from it with a
// session.
func WaitHealthy(ctx context.Context, s *State, timeout time.Duration, skip ...int) error {
	hc := s.client()
	return wait.Until(ctx, timeout, func() error {
		a, err := Active(ctx, s)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("%s:%d", s.Nodes[a].PostgresHost, s.Nodes[a].PostgresPort)
	nodes:
		for i, n := range s.Nodes {
			for _, k := range skip {
				if k == i {
					continue nodes
				}
			}
			if i == a {
				continue
			}
			st, err := hc.NodeStatus(ctx, n.APIURL, apiTimeout)
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming || st.Postgres.Upstream != want || !st.HasSession {
				return fmt.Errorf("%s is %s (streaming %v from %q), not yet a standby streaming from %s", n.Name, st.Role, st.Postgres.Streaming, st.Postgres.Upstream, s.Nodes[a].Name)
			}
		}
		return nil
	})
}
