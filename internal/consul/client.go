package consul

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/config"
)

// ErrNotRegistered is returned when the local agent does not know a check or
// service, as after an agent restart that lost its state: callers register
// again.
var ErrNotRegistered = errors.New("not registered with the local Consul agent")

// Client talks to the node's local Consul agent.
type Client struct {
	api  *api.Client
	addr string
}

// New returns a client of the agent that cfg names. It does not connect: the
// first call does, so a daemon can start while its agent is still coming up.
func New(cfg config.Consul) (*Client, error) {
	ac := api.DefaultNonPooledConfig()
	ac.Address = cfg.Address
	if cfg.Scheme != "" {
		ac.Scheme = cfg.Scheme
	}
	ac.Token = cfg.Token
	if cfg.TokenFile != "" {
		// Read here rather than by api.Config.TokenFile, so that the
		// error says which setting and which command write it.
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul.token_file: %w; `understudy cluster start` and `cluster join` write it, or point token_file at the file of a token (README \"Consul ACLs\")", err)
		}
		ac.Token = strings.TrimSpace(string(b))
	}
	ac.TLSConfig = api.TLSConfig{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	if cfg.CertFile != "" {
		// The client certificate follows a renewal of the files
		// (certs.KeyPair): a daemon that runs for years must not present
		// the certificate it started with after it expired.
		tc, err := api.SetupTLSConfig(&api.TLSConfig{CAFile: cfg.CAFile})
		if err != nil {
			return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
		}
		kp, err := certs.NewKeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
		}
		kp.PresentWith(tc)
		ac.Transport.TLSClientConfig = tc
		ac.HttpClient = &http.Client{Transport: ac.Transport}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
	}
	return &Client{api: c, addr: cfg.Address}, nil
}

// Address is the agent's address, for messages.
func (c *Client) Address() string { return c.addr }

// AgentInfo is what the local agent says of itself and of the cluster.
type AgentInfo struct {
	NodeName string
	Version  string
	// Leader is the address of the Raft leader; "" when the cluster has none.
	Leader string
}

// Agent asks the local agent who it is and who leads the Consul cluster.
func (c *Client) Agent(ctx context.Context) (AgentInfo, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	// Agent().Self takes no context; the raw endpoint does, so a hung agent
	// cannot hang the caller past its deadline.
	var self struct {
		Config struct{ NodeName, Version string }
	}
	if _, err := c.api.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return AgentInfo{}, fmt.Errorf("ask consul agent %s about itself: %w", c.addr, err)
	}
	info := AgentInfo{NodeName: self.Config.NodeName, Version: self.Config.Version}
	leader, err := c.api.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return info, fmt.Errorf("ask consul agent %s for the raft leader: %w", c.addr, err)
	}
	info.Leader = leader
	return info, nil
}

// Leader asks the local agent, a server, whom its Raft state follows: the
// leader's address, or "" when it knows none (an election is on, or the
// server is cut off from a majority). It answers from its own state,
// without asking any other server.
func (c *Client) Leader(ctx context.Context) (string, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	leader, err := c.api.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return "", fmt.Errorf("ask consul agent %s for the raft leader: %w", c.addr, err)
	}
	return leader, nil
}

func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// ReloadAgent has the local agent read its configuration and TLS files
// again (`consul reload`): how a renewed node certificate reaches it.
func (c *Client) ReloadAgent(ctx context.Context) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.Raw().Write("/v1/agent/reload", nil, nil, w); err != nil {
		return fmt.Errorf("reload consul agent %s: %w", c.addr, err)
	}
	return nil
}
