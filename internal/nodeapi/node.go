package nodeapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// maxBody bounds an answer: 10000 events are a few MiB.
const maxBody = 32 << 20

// NodeClient sends single requests to nodes' APIs: the one HTTP client of
// the node API, under the operator's Client and used as it is by the nodes
// themselves (the election and lease grants, the check-runner's guard,
// cluster start and join). It is safe for concurrent use and keeps its
// connections, so make one and share it.
type NodeClient struct {
	http       *http.Client
	user, pass string
}

// NewNodeClient returns a client that reaches https:// nodes with tc (the
// cluster CA and the node's certificate from certs.NodeTLS, or a pinned CA
// from certs.PinnedClientTLS; nil for plain http:// nodes) and sends user
// and password as basic auth when user is not empty.
//
// It speaks HTTP/1.1 straight to the node, through no proxy: a call that
// times out closes its connection, where HTTP/2 would keep the one
// connection that every later call to that peer then waits on, which after
// a partition may be dead for minutes.
func NewNodeClient(tc *tls.Config, user, password string) *NodeClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = tc
	return newNodeClient(&http.Client{Transport: tr}, user, password)
}

// newNodeClient sends through h; its Timeout, if any, bounds every call on
// top of each call's own.
func newNodeClient(h *http.Client, user, password string) *NodeClient {
	return &NodeClient{http: h, user: user, pass: password}
}

// Do sends one request to the node whose API base URL is base
// ("https://10.0.0.5:8008"), with in (when not nil) as its JSON body, and
// decodes a 2xx answer into out (when not nil). timeout bounds the whole
// call when positive; else ctx alone does. Any answer but 2xx is an
// *APIError; a call that got no answer says why in a short error that does
// not repeat the URL (the caller's wrapping names the node).
func (c *NodeClient) Do(ctx context.Context, base, method, path string, in, out any, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = withTimeout(ctx, timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode the request to %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(base, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError(err, timeoutOf(ctx))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return transportError(err, timeoutOf(ctx))
	}
	if resp.StatusCode/100 != 2 {
		return newAPIError(base, resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the answer is not the handler-runner API's JSON (is %s an understudy node?): %w", base, err)
	}
	return nil
}

// NodeStatus is GET /v1/status/node of the node at base under timeout: what
// the node says of itself now.
func (c *NodeClient) NodeStatus(ctx context.Context, base string, timeout time.Duration) (NodeStatus, error) {
	var st NodeStatus
	err := c.Do(ctx, base, http.MethodGet, "/v1/status/node", nil, &st, timeout)
	return st, err
}

// Partition is GET /v1/status/partition of the node at base: its
// consul-watcher's view.
func (c *NodeClient) Partition(ctx context.Context, base string, timeout time.Duration) (cluster.Partition, error) {
	var p cluster.Partition
	err := c.Do(ctx, base, http.MethodGet, "/v1/status/partition", nil, &p, timeout)
	return p, err
}

// ConsulKeyring is GET /v1/consul/keyring of the node at base: the gossip
// keyring of its Consul agent, primary key first, which a node that resets
// its agent to join that node's Consul cluster needs. Nodes only.
func (c *NodeClient) ConsulKeyring(ctx context.Context, base string, timeout time.Duration) (ConsulKeyring, error) {
	var k ConsulKeyring
	err := c.Do(ctx, base, http.MethodGet, "/v1/consul/keyring", nil, &k, timeout)
	return k, err
}

// Active is GET /status of the node at base under timeout: nil when the node
// is the active and serves (200), an *APIError (400, with the node's role)
// when it is not.
func (c *NodeClient) Active(ctx context.Context, base string, timeout time.Duration) (StatusAnswer, error) {
	var a StatusAnswer
	err := c.Do(ctx, base, http.MethodGet, "/status", nil, &a, timeout)
	return a, err
}

// Alive asks GET /status of the node at base under timeout and is nil when
// any HTTP answer comes, whatever its status (a standby's 400, a refusal's
// 401): the handler-runner lives.
func (c *NodeClient) Alive(ctx context.Context, base string, timeout time.Duration) error {
	err := c.Do(ctx, base, http.MethodGet, "/status", nil, nil, timeout)
	var ae *APIError
	if errors.As(err, &ae) {
		return nil
	}
	return err
}

// timeoutOf is the timeout withTimeout gave ctx, for messages.
func timeoutOf(ctx context.Context) time.Duration {
	d, _ := ctx.Value(timeoutKey{}).(time.Duration)
	return d
}

type timeoutKey struct{}

// withTimeout is context.WithTimeout that remembers d for messages.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithValue(ctx, timeoutKey{}, d), d)
}
