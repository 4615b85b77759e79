package nodeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// NodeTimeout is how long one node has to answer a read before the next is
// tried: a node that is down must not hold up the operator.
const NodeTimeout = 2 * time.Second

// Client talks to the nodes of one profile. It is safe for concurrent use.
type Client struct {
	profile     Profile
	http        *http.Client
	node        *NodeClient
	nodeTimeout time.Duration
	// err is why the profile's CA or basic auth file could not be used;
	// every call returns it, since New cannot.
	err error
}

// Option changes a Client.
type Option func(*Client)

// WithHTTPClient sends requests through h instead of a client built from the
// profile's CA file. The profile's basic auth is still added.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithNodeTimeout changes NodeTimeout for this client.
func WithNodeTimeout(d time.Duration) Option { return func(c *Client) { c.nodeTimeout = d } }

// New returns a client of the nodes of p. A CA or basic auth file that
// cannot be read is reported by the first call.
func New(p Profile, opts ...Option) *Client {
	c := &Client{profile: p, nodeTimeout: NodeTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		c.http, c.err = httpClient(p)
	}
	var user, pass string
	if p.BasicAuthFile != "" && c.err == nil {
		user, pass, c.err = ReadBasicAuth(p.BasicAuthFile)
	}
	c.node = newNodeClient(c.http, user, pass)
	if c.err != nil {
		c.err = fmt.Errorf("profile %q: %w", p.Name, c.err)
	}
	return c
}

// Err is why the profile's CA or basic auth file cannot be used, nil when
// they can (or are not set): what every call would return.
func (c *Client) Err() error { return c.err }

// Profile is the profile the client talks to.
func (c *Client) Profile() Profile { return c.profile }

func httpClient(p Profile) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", p.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case p.CertFile != "" || p.KeyFile != "":
		if p.CertFile == "" || p.KeyFile == "" {
			return nil, errors.New("a client certificate needs both its files: --cert and --key")
		}
		pair, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("read the client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	case p.cert != nil:
		tc.Certificates = []tls.Certificate{*p.cert}
	}
	tr.TLSClientConfig = tc
	// No client-wide timeout: every call sets its own through its context
	// (2 s for a read, the switchover's own timeout for a switchover).
	return &http.Client{Transport: tr}, nil
}

// ReadBasicAuth reads a basic auth file as the handler-runner does: its
// first line is user:password.
func ReadBasicAuth(path string) (user, password string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read the basic auth file: %w", err)
	}
	line := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	user, password, ok := strings.Cut(line, ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("basic auth file %s: the first line must be user:password", path)
	}
	return user, password, nil
}

// do sends one request to the node at base (under ctx's deadline) and
// decodes a 2xx answer into out (when not nil). Any other answer is an
// *APIError that says how the profile could get in when it was refused.
func (c *Client) do(ctx context.Context, method, base, path string, in, out any) error {
	err := c.node.Do(ctx, base, method, path, in, out, 0)
	var ae *APIError
	if errors.As(err, &ae) {
		c.hint(ae)
	}
	return err
}

// hint adds to a refusal what the profile lacks.
func (c *Client) hint(e *APIError) {
	status := e.Status
	if (status == http.StatusUnauthorized || status == http.StatusForbidden) && c.profile.CertFile == "" && strings.Contains(e.Message, "certificate") {
		e.Message += fmt.Sprintf("; then: understudy profile add %s --nodes ... --ca ca.pem --cert NAME.pem --key NAME-key.pem", profileName(c.profile))
	} else if status == http.StatusUnauthorized && c.profile.BasicAuthFile == "" {
		e.Message += fmt.Sprintf("; give the profile the API's user:password file: understudy profile add %s --nodes ... --basic-auth-file FILE", profileName(c.profile))
	}
}

func profileName(p Profile) string {
	if p.Name == "" {
		return "NAME"
	}
	return p.Name
}

// ask is one read of one node under the per-node timeout, its error wrapped
// with the node and what was asked.
func (c *Client) ask(ctx context.Context, base, what, path string, out any) error {
	ctx, cancel := withTimeout(ctx, c.nodeTimeout)
	defer cancel()
	if err := c.do(ctx, http.MethodGet, base, path, nil, out); err != nil {
		return fmt.Errorf("ask %s for %s: %w", base, what, err)
	}
	return nil
}

// anyNode asks the profile's nodes in order until one answers; a 4xx ends
// the search, since every node would answer it the same.
func (c *Client) anyNode(ctx context.Context, what, path string, out any) error {
	return c.eachNode(ctx, what, func(base string) error { return c.ask(ctx, base, what, path, out) })
}

// eachNode runs call against the profile's nodes in order until one
// answers; a 4xx ends the search, since every node would answer it the
// same.
func (c *Client) eachNode(ctx context.Context, what string, call func(base string) error) error {
	if c.err != nil {
		return c.err
	}
	if len(c.profile.Nodes) == 0 {
		return fmt.Errorf("profile %q lists no nodes; add them with understudy profile add %s --nodes URL,URL", c.profile.Name, profileName(c.profile))
	}
	var errs []error
	for _, base := range c.profile.Nodes {
		err := call(base)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return &NodesError{Profile: c.profile.Name, What: what, Errs: errs}
}

// NodeRef is a node as /status names it.
type NodeRef struct {
	URL  string `json:"url"`
	Name string `json:"node"`
	Role string `json:"role"`
}

// ErrNoActive is returned by Active when no node of the profile answers 200
// on /status.
var ErrNoActive = errors.New("no active node")

// Active asks GET /status of every node of the profile at once and returns
// the one that answers 200. It is an error when none does (ErrNoActive) and
// when several do: the operator must see a split brain, not have it hidden.
func (c *Client) Active(ctx context.Context) (NodeRef, error) {
	if c.err != nil {
		return NodeRef{}, c.err
	}
	if len(c.profile.Nodes) == 0 {
		return NodeRef{}, fmt.Errorf("profile %q lists no nodes; add them with understudy profile add %s --nodes URL,URL", c.profile.Name, profileName(c.profile))
	}
	answers := make([]statusAnswer, len(c.profile.Nodes))
	var wg sync.WaitGroup
	for i, base := range c.profile.Nodes {
		wg.Go(func() {
			answers[i] = c.askStatus(ctx, base)
		})
	}
	wg.Wait()
	var active []NodeRef
	var others []string
	for i, a := range answers {
		switch {
		case a.active:
			active = append(active, a.ref)
		case a.err != nil:
			others = append(others, a.err.Error())
		default:
			others = append(others, fmt.Sprintf("%s: %s is %s", c.profile.Nodes[i], orUnknown(a.ref.Name), orUnknown(a.ref.Role)))
		}
	}
	switch len(active) {
	case 1:
		return active[0], nil
	case 0:
		return NodeRef{}, fmt.Errorf("%w among the %d node(s) of profile %q (%s); is a failover in progress? see understudy cluster status",
			ErrNoActive, len(c.profile.Nodes), c.profile.Name, strings.Join(others, "; "))
	}
	names := make([]string, len(active))
	for i, a := range active {
		names[i] = fmt.Sprintf("%s at %s", orUnknown(a.Name), a.URL)
	}
	return NodeRef{}, fmt.Errorf("several nodes answer 200 on /status: %s; only one may be active: check the leader key and the nodes' logs", strings.Join(names, ", "))
}

// statusAnswer is one node's answer to GET /status.
type statusAnswer struct {
	ref    NodeRef
	active bool
	err    error
}

func (c *Client) askStatus(ctx context.Context, base string) (a statusAnswer) {
	a.ref.URL = base
	err := c.ask(ctx, base, "its role (/status)", "/status", &a.ref)
	a.ref.URL = base
	var ae *APIError
	switch {
	case err == nil:
		a.active = true
	case errors.As(err, &ae) && ae.Status == http.StatusBadRequest:
		a.ref.Name, a.ref.Role = ae.field("node"), ae.field("role")
	default:
		a.err = err
	}
	return a
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}
