package nodeapi_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeafPackage keeps nodeapi a leaf: whatever talks to a node (the CLI,
// the guard, lifecycle) must not carry a daemon, the Consul client, pgx or
// Syncthing with it.
func TestLeafPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/understudy-ha/understudy/handlerrunner",
		"github.com/understudy-ha/understudy/checkrunner",
		"github.com/understudy-ha/understudy/lifecycle",
		"github.com/understudy-ha/understudy/internal/consul",
		"github.com/understudy-ha/understudy/replication/",
		"github.com/hashicorp/consul/api",
		"github.com/jackc/pgx",
		"github.com/syncthing/",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("nodeapi depends on %s; move what it needs into nodeapi or internal/cluster", dep)
			}
		}
	}
}
