package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/wait"
)

// Consul runs with ACLs, default deny: a certificate the cluster CA signed
// opens the agent's HTTPS API, and a token then says what the caller may do.
// Three kinds of token exist (README "Consul ACLs"):
//
//   - the management token (bootstrap), in management.token beside
//     consul.token_file on every node: whichever node is active answers
//     joins and creates the joiner's agent token, which takes acl:write, and
//     Consul has no narrower right that can create tokens (acl = "write" can
//     create a management token). Root on any node holds the CA key already,
//     so keeping it on every node widens nobody's access;
//   - one agent token per node (Consul's node identity: write its own node,
//     read services), in the agent's acl.hcl;
//   - the daemons' token (daemonsRules), shared by every node's daemons and
//     commands, in consul.token_file.

// aclHCL is the agent's acl block. Why each setting:
//   - default_policy "deny": a caller may do only what a token allows;
//   - enable_token_persistence: a token an operator sets with `consul acl
//     set-agent-token` (how an agent token is rotated) survives a restart;
//   - down_policy "extend-cache": when the token cannot be resolved (no
//     Consul leader), a token keeps the rights it was last seen with rather
//     than losing them, which would fail the checks and sessions the failover
//     rests on for the length of a Consul election. Every agent here is a
//     server that resolves tokens from its own copy of the state, so this
//     matters only in the moments a server has none yet;
//   - tokens.agent: the agent's own token from its first start, so that it
//     registers its node as soon as the token exists.
func aclHCL(agentToken string) string {
	return fmt.Sprintf(`# Written by understudy: Consul ACLs (README "Consul ACLs"); do not edit.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  down_policy              = "extend-cache"
  tokens {
    agent = %q
  }
}
`, agentToken)
}

// daemonsPolicy names the daemons' policy of a cluster.
func daemonsPolicy(cfg *config.Config) string { return "understudy-daemons-" + cfg.Cluster.Name }

// daemonsRules are what the daemons and the node's commands use of Consul,
// from every call in internal/consul (no other package imports consul/api):
//   - the cluster's keys (kv.go, lock.go, watch.go, events.go's
//     transactions): read and write under <kv_prefix>/<cluster>/ only;
//   - sessions (session.go: create, renew, destroy, info) on any node: a
//     node's handler-runner makes its own, and reads the leader's;
//   - the understudy service (service.go: register, TTL updates) and reads
//     of every service and node (health.go, session.go's checks,
//     members.go's /v1/agent/members);
//   - agent write: /v1/agent/self (read) in every wait for the agent,
//     /v1/agent/reload when a certificate is renewed (checkrunner/renew.go,
//     certs renew), /v1/agent/leave when a join is undone;
//   - operator write: cluster nodes remove takes a server out of the Raft
//     peers and force-leaves it (members.go RemoveNode), and operator read
//     (the Raft configuration, autopilot's server health for joins that add
//     a voter) comes with it.
//
// Nothing else: no keys outside the cluster's prefix, no ACL rights, no other
// service's registration.
func daemonsRules(cfg *config.Config) string {
	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	return fmt.Sprintf(`key_prefix %q {
  policy = "write"
}
session_prefix "" {
  policy = "write"
}
service %q {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
agent_prefix "" {
  policy = "write"
}
operator = "write"
`, keys.Prefix(), serviceID)
}

// serviceID is the Consul service the check-runner registers
// (checkrunner.ServiceID, which lifecycle does not import).
const serviceID = "understudy"

// aclTokens are the secrets of a node's tokens.
type aclTokens struct{ Management, Daemons, Agent string }

func newACLTokens() (aclTokens, error) {
	var t aclTokens
	for _, s := range []*string{&t.Management, &t.Daemons, &t.Agent} {
		var err error
		if *s, err = consul.NewSecret(); err != nil {
			return aclTokens{}, err
		}
	}
	return t, nil
}

// joinTokens are the tokens a join answer carries, nil from a cluster
// without ACLs.
func joinTokens(a *nodeapi.JoinACL) *aclTokens {
	if a == nil {
		return nil
	}
	return &aclTokens{Management: a.ManagementToken, Daemons: a.DaemonsToken, Agent: a.AgentToken}
}

// checkTokenFile refuses a configuration whose Consul clients would not use
// the daemons' token cluster start and join write.
func checkTokenFile(cfg *config.Config) error {
	if cfg.Consul.TokenFile == "" {
		return fmt.Errorf("%s sets consul.token: cluster start and join create the daemons' Consul ACL token and write it to consul.token_file; remove token from the consul block", cfg.Path)
	}
	return nil
}

// writeTokenFiles writes the daemons' and the management token where the
// configuration says, 0600 in a 0700 directory: the owner (root, who runs
// the daemons) alone reads them.
func writeTokenFiles(cfg *config.Config, t aclTokens) error {
	for _, f := range []struct{ path, secret string }{
		{cfg.Consul.TokenFile, t.Daemons}, {cfg.ManagementTokenFile(), t.Management},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return err
		}
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, []byte(f.secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return nil
}

// bootstrapACL bootstraps the new cluster's ACLs with t.Management once its
// server has a leader, and creates the daemons' policy and token and this
// node's agent token (whose secret acl.hcl holds already).
func bootstrapACL(ctx context.Context, cc *consul.Client, cfg *config.Config, t aclTokens) error {
	// The leader sets its ACL system up just after it is elected: until
	// then a bootstrap fails and is tried again.
	var final error
	err := wait.Until(ctx, time.Minute, func() error {
		err := cc.BootstrapACL(ctx, t.Management)
		if errors.Is(err, consul.ErrACLBootstrapped) {
			final = err // somebody else's: trying again cannot help
			return nil
		}
		return err
	})
	if err = errors.Join(err, final); err != nil {
		return fmt.Errorf("%w; this agent's data directory %s must be new", err, cfg.Node.DataDir)
	}
	admin := cc.ACL(t.Management)
	if err := admin.EnsurePolicy(ctx, daemonsPolicy(cfg), "understudy's daemons and commands on every node of cluster "+cfg.Cluster.Name, daemonsRules(cfg)); err != nil {
		return err
	}
	if err := admin.CreateToken(ctx, consul.Token{Secret: t.Daemons, Description: "understudy daemons, cluster " + cfg.Cluster.Name, Policies: []string{daemonsPolicy(cfg)}}); err != nil {
		return err
	}
	agent := consul.AgentToken(cfg.Node.Name, t.Agent)
	agent.Datacenter = datacenter
	return admin.CreateToken(ctx, agent)
}
