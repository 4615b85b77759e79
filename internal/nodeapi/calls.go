package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// ClusterStatus is GET /v1/status/cluster of the first node that answers:
// the leader, next-master and every member record, as Consul holds them.
func (c *Client) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	// A node whose Consul has no leader answers from its own server,
	// marked stale (a Consul outage, or that node cut off): another node
	// may have the cluster as it is, so the search goes on, and the first
	// stale answer serves only when no node has better.
	var stale *ClusterStatus
	var cs ClusterStatus
	err := c.eachNode(ctx, "the cluster status", func(base string) error {
		var got ClusterStatus
		if err := c.ask(ctx, base, "the cluster status", "/v1/status/cluster", &got); err != nil {
			return err
		}
		if got.Stale {
			if stale == nil {
				stale = &got
			}
			return errStaleAnswer
		}
		cs = got
		return nil
	})
	if err != nil && stale != nil {
		return *stale, nil
	}
	return cs, err
}

// errStaleAnswer makes eachNode ask the next node after a stale answer.
var errStaleAnswer = &APIError{Status: http.StatusServiceUnavailable, Message: "a stale answer (its Consul has no leader)"}

// NodeStatus is GET /v1/status/node of the node at url (a member's API URL
// or one of the profile's): what the node says of itself now.
func (c *Client) NodeStatus(ctx context.Context, url string) (NodeStatus, error) {
	var st NodeStatus
	if c.err != nil {
		return st, c.err
	}
	err := c.ask(ctx, url, "its state", "/v1/status/node", &st)
	return st, err
}

// NodeResult is one node's answer to NodeStatuses.
type NodeResult struct {
	URL    string
	Status NodeStatus
	Err    error
}

// NodeStatuses asks every url for its state at once, each under the
// per-node timeout; the results are in the order of urls.
func (c *Client) NodeStatuses(ctx context.Context, urls []string) []NodeResult {
	return eachURL(urls, func(u string) NodeResult {
		st, err := c.NodeStatus(ctx, u)
		return NodeResult{URL: u, Status: st, Err: err}
	})
}

// eachURL calls ask for every url at once and returns the answers in the
// order of urls.
func eachURL[T any](urls []string, ask func(url string) T) []T {
	out := make([]T, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { out[i] = ask(u) })
	}
	wg.Wait()
	return out
}

// PartitionResult is one node's answer to Partitions.
type PartitionResult struct {
	URL  string
	View cluster.Partition
	Err  error
}

// Partitions asks every url for its consul-watcher's view (GET
// /v1/status/partition) at once, each under the per-node timeout; the
// results are in the order of urls.
func (c *Client) Partitions(ctx context.Context, urls []string) []PartitionResult {
	return eachURL(urls, func(u string) PartitionResult {
		var v cluster.Partition
		err := c.err
		if err == nil {
			err = c.ask(ctx, u, "its partition view", "/v1/status/partition", &v)
		}
		return PartitionResult{URL: u, View: v, Err: err}
	})
}

// Events is GET /v1/events?limit=N of the first node that answers: the
// cluster's history, newest first. limit is 1 to 10000; 0 is the API's
// default (100).
func (c *Client) Events(ctx context.Context, limit int) ([]cluster.Event, error) {
	path := "/v1/events"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var body EventsAnswer
	if err := c.anyNode(ctx, "the events", path, &body); err != nil {
		return nil, err
	}
	return body.Events, nil
}

// SwitchoverResult is the answer of a switchover that completed.
type SwitchoverResult struct {
	// Active is the node that holds the lock now: the target.
	Active string
	// Took is how long the switchover took, as the active node measured it.
	Took time.Duration
	// URL is the API of the node that ran the switchover (the old active).
	URL string
}

// switchoverGrace is how much longer than the switchover's own timeout the
// client waits for the node's answer, which comes only after it.
const switchoverGrace = 10 * time.Second

// Switchover asks the active node to move the active role to target and
// waits until target holds the lock or timeout passes.
func (c *Client) Switchover(ctx context.Context, target string, timeout time.Duration) (SwitchoverResult, error) {
	var res SwitchoverResult
	err := c.onActive(ctx, "switchover to "+target, func(base string) error {
		var err error
		res, err = c.postSwitchover(ctx, base, target, timeout)
		return err
	})
	return res, err
}

// RemoveNode asks the active node to take the stopped standby name out of
// the cluster (Consul members and Raft peers, its slot and member record).
// force skips the active's check that the node no longer answers.
func (c *Client) RemoveNode(ctx context.Context, name string, force bool) error {
	path := "/v1/cluster/nodes/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	return c.onActive(ctx, "remove "+name, func(base string) error {
		if err := c.do(ctx, http.MethodDelete, base, path, nil, nil); err != nil {
			return fmt.Errorf("ask %s to remove %s: %w", base, name, err)
		}
		return nil
	})
}

// UpdateNodeOptions merges opts into the runtime options of node name; its
// daemons apply them within an interval, without a restart. It is sent to
// the active node, which any node would do as well, because the active is
// the one node a profile is sure to reach.
func (c *Client) UpdateNodeOptions(ctx context.Context, name string, opts cluster.NodeOptions) (cluster.NodeOptions, error) {
	var out OptionsAnswer
	err := c.onActive(ctx, "update the options of "+name, func(base string) error {
		if err := c.do(ctx, http.MethodPut, base, "/v1/cluster/nodes/"+url.PathEscape(name)+"/options", opts, &out); err != nil {
			return fmt.Errorf("ask %s to update the options of %s: %w", base, name, err)
		}
		return nil
	})
	return out.Options, err
}

// onActive runs call against the active node. It finds the active with
// Active; when the node it asks answers 409 naming another active (the role
// moved meanwhile, or the profile's view was stale), it follows that once.
func (c *Client) onActive(ctx context.Context, what string, call func(base string) error) error {
	if c.err != nil {
		return c.err
	}
	active, activeErr := c.Active(ctx)
	if activeErr != nil {
		if !errors.Is(activeErr, ErrNoActive) {
			return fmt.Errorf("%s: %w", what, activeErr)
		}
		// No node answers 200 here; the first node still names the
		// active in its 409 when one holds the lock (e.g. one the
		// profile does not list).
		active = NodeRef{URL: c.profile.Nodes[0]}
	}
	err := call(active.URL)
	var ae *APIError
	if !errors.As(err, &ae) {
		if err != nil && activeErr != nil {
			return fmt.Errorf("%s: %w", what, activeErr)
		}
		return err
	}
	if ae.Status != http.StatusConflict || !hasKey(ae.Body, "active") {
		return err
	}
	name, api := ae.field("active"), ae.field("active_api")
	if name == "" {
		return fmt.Errorf("%w; no node holds the leader lock now: wait for the election (understudy cluster status) and retry", err)
	}
	if api == "" {
		api = c.memberAPI(ctx, name)
	}
	if api == "" || api == active.URL {
		return err
	}
	return call(api)
}

// memberAPI is the API URL the member record of name publishes, "" when it
// cannot be told.
func (c *Client) memberAPI(ctx context.Context, name string) string {
	cs, err := c.ClusterStatus(ctx)
	if err != nil {
		return ""
	}
	for _, m := range cs.Members {
		if m.Name == name {
			return m.APIURL
		}
	}
	return ""
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

func (c *Client) postSwitchover(ctx context.Context, base, target string, timeout time.Duration) (SwitchoverResult, error) {
	ctx, cancel := withTimeout(ctx, timeout+switchoverGrace)
	defer cancel()
	in := SwitchoverRequest{Target: target, Timeout: timeout.String()}
	var out SwitchoverAnswer
	if err := c.do(ctx, http.MethodPost, base, "/v1/cluster/switchover", in, &out); err != nil {
		return SwitchoverResult{}, fmt.Errorf("ask %s for a switchover to %s: %w", base, target, err)
	}
	took, _ := time.ParseDuration(out.Took)
	return SwitchoverResult{Active: out.Active, Took: took, URL: base}, nil
}
