package lifecycle

import (
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/config"
)

// The daemons' policy names the cluster's own prefix, write, and grants no
// ACL rights; the agent's acl block denies by default and carries its token.
func TestACLRules(t *testing.T) {
	cfg := config.Default()
	cfg.Cluster.Name, cfg.Cluster.KVPrefix = "prod", "ha/understudy"
	rules := daemonsRules(cfg)
	for _, want := range []string{`key_prefix "ha/understudy/prod/" {`, `service "understudy" {`, `session_prefix "" {`} {
		if !strings.Contains(rules, want) {
			t.Errorf("daemons' rules lack %q:\n%s", want, rules)
		}
	}
	if strings.Count(rules, "key_prefix") != 1 || strings.Contains(rules, "acl") {
		t.Errorf("daemons' rules grant other keys or ACL rights:\n%s", rules)
	}
	hcl := aclHCL("s3cret")
	for _, want := range []string{`default_policy           = "deny"`, `enable_token_persistence = true`, `agent = "s3cret"`} {
		if !strings.Contains(hcl, want) {
			t.Errorf("acl.hcl lacks %q:\n%s", want, hcl)
		}
	}
}
