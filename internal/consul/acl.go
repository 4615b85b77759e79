package consul

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/consul/api"
)

// NewSecret returns a random token secret in Consul's form (a version 4
// UUID). Secrets are made here rather than by Consul so that a caller can
// write one where it is needed (the agent's configuration) before Consul
// knows it, and so that a bootstrap whose answer was lost can be told from
// one that somebody else made.
func NewSecret() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// ErrACLBootstrapped is returned by BootstrapACL when the cluster's ACLs
// were bootstrapped already with another secret.
var ErrACLBootstrapped = errors.New("the cluster's ACLs were bootstrapped already")

// BootstrapACL makes secret the cluster's initial management token. It
// needs no token (it works once, on a cluster whose ACLs were never
// bootstrapped). Run again after an answer that was lost, it finds secret
// already valid and returns nil.
func (c *Client) BootstrapACL(ctx context.Context, secret string) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	body := map[string]string{"BootstrapSecret": secret}
	_, err := c.api.Raw().Write("/v1/acl/bootstrap", body, nil, w)
	if err == nil {
		return nil
	}
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		return fmt.Errorf("bootstrap consul acls on %s: %w", c.addr, err)
	}
	q := (&api.QueryOptions{Token: secret}).WithContext(ctx)
	if _, _, rerr := c.api.ACL().TokenReadSelf(q); rerr == nil {
		return nil
	}
	return fmt.Errorf("bootstrap consul acls on %s: %w (%v)", c.addr, ErrACLBootstrapped, err)
}

// ACLAdmin manages the cluster's ACL policies and tokens with a token that
// may (the management token).
type ACLAdmin struct {
	c     *Client
	token string
}

// ACL returns an admin that acts with token rather than the client's own.
func (c *Client) ACL(token string) *ACLAdmin { return &ACLAdmin{c: c, token: token} }

// EnsurePolicy creates the policy name with rules, or gives an existing one
// these rules: run again (a start that was retried), it changes nothing.
func (a *ACLAdmin) EnsurePolicy(ctx context.Context, name, description, rules string) error {
	q := (&api.QueryOptions{Token: a.token}).WithContext(ctx)
	w := (&api.WriteOptions{Token: a.token}).WithContext(ctx)
	p, _, err := a.c.api.ACL().PolicyReadByName(name, q)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("read acl policy %s: %w", name, err)
	}
	if p == nil {
		_, _, err = a.c.api.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Description: description, Rules: rules}, w)
	} else {
		p.Description, p.Rules = description, rules
		_, _, err = a.c.api.ACL().PolicyUpdate(p, w)
	}
	if err != nil {
		return fmt.Errorf("write acl policy %s: %w", name, err)
	}
	return nil
}

// Token is a token to create: its secret (NewSecret), what it is for, and
// what it may do: the policies named, and for a Consul agent's token the
// node identity of its node (Consul's own agent policy: write its node,
// read every service).
type Token struct {
	Secret, Description string
	Policies            []string
	Node, Datacenter    string
}

// AgentToken is the token of node's Consul agent, secret its secret.
func AgentToken(node, secret string) Token {
	return Token{Secret: secret, Description: "consul agent of node " + node, Node: node}
}

// CreateToken creates t; a node identity without a datacenter is in the
// agent's.  A token with t's secret that exists already is
// left as it is (a retried start).
func (a *ACLAdmin) CreateToken(ctx context.Context, t Token) error {
	q := (&api.QueryOptions{Token: t.Secret}).WithContext(ctx)
	if _, _, err := a.c.api.ACL().TokenReadSelf(q); err == nil {
		return nil
	}
	tok := &api.ACLToken{SecretID: t.Secret, Description: t.Description}
	for _, p := range t.Policies {
		tok.Policies = append(tok.Policies, &api.ACLTokenPolicyLink{Name: p})
	}
	if t.Node != "" && t.Datacenter == "" {
		var self struct{ Config struct{ Datacenter string } }
		if _, err := a.c.api.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{Token: a.token}).WithContext(ctx)); err != nil {
			return fmt.Errorf("create acl token %q: ask consul agent %s for its datacenter: %w", t.Description, a.c.addr, err)
		}
		t.Datacenter = self.Config.Datacenter
	}
	if t.Node != "" {
		tok.NodeIdentities = []*api.ACLNodeIdentity{{NodeName: t.Node, Datacenter: t.Datacenter}}
	}
	w := (&api.WriteOptions{Token: a.token}).WithContext(ctx)
	if _, _, err := a.c.api.ACL().TokenCreate(tok, w); err != nil {
		return fmt.Errorf("create acl token %q: %w", t.Description, err)
	}
	return nil
}

// NodeTokens lists the accessor IDs of the tokens with node's identity:
// its Consul agent's, one per join.
func (a *ACLAdmin) NodeTokens(ctx context.Context, node string) ([]string, error) {
	q := (&api.QueryOptions{Token: a.token}).WithContext(ctx)
	toks, _, err := a.c.api.ACL().TokenList(q)
	if err != nil {
		return nil, fmt.Errorf("list acl tokens: %w", err)
	}
	var out []string
	for _, t := range toks {
		for _, ni := range t.NodeIdentities {
			if ni.NodeName == node {
				out = append(out, t.AccessorID)
				break
			}
		}
	}
	return out, nil
}

// DeleteNodeTokens deletes every token with node's identity (NodeTokens)
// and returns how many it deleted: a node removed from the cluster keeps
// no way into its Consul.
func (a *ACLAdmin) DeleteNodeTokens(ctx context.Context, node string) (int, error) {
	ids, err := a.NodeTokens(ctx, node)
	if err != nil {
		return 0, err
	}
	w := (&api.WriteOptions{Token: a.token}).WithContext(ctx)
	for i, id := range ids {
		if _, err := a.c.api.ACL().TokenDelete(id, w); err != nil {
			return i, fmt.Errorf("delete acl token %s of node %s: %w", id, node, err)
		}
	}
	return len(ids), nil
}

// IsPermissionDenied tells an error of a call that Consul's ACLs refused.
func IsPermissionDenied(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code == http.StatusForbidden
	}
	return err != nil && strings.Contains(err.Error(), "Permission denied")
}
