package lifecycle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// TestConsulTimingFollowsTheConfig: consul.hcl carries the consul block's
// timing, and a later change of it is written into the existing file (for
// the agent's next start), leaving the rest of the file alone.
func TestConsulTimingFollowsTheConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Node.Name, cfg.Node.Address, cfg.Node.DataDir = "a", "10.0.0.5", t.TempDir()
	cfg.Consul.Address = "127.0.0.1:8501"
	l := layout{cfg.Node.DataDir}
	hcl, err := consulHCL(cfg, l, Options{SerfPort: 8301, ServerPort: 8300}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"performance { raft_multiplier = 1 }\n", "probe_interval = \"500ms\"", "probe_timeout  = \"250ms\"", "suspicion_mult = 3\n"} {
		if !strings.Contains(hcl, want) {
			t.Fatalf("consul.hcl lacks %q:\n%s", want, hcl)
		}
	}
	if err := os.MkdirAll(l.consulConfig(), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.consulConfig(), "consul.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := syncConsulTiming(cfg, l); err != nil || changed {
		t.Fatalf("sync with the same timing: changed %v, %v", changed, err)
	}
	cfg.Consul.RaftMultiplier, cfg.Consul.GossipProbeInterval, cfg.Consul.GossipProbeTimeout, cfg.Consul.GossipSuspicionMult = 2, time.Second, 400*time.Millisecond, 4
	if changed, err := syncConsulTiming(cfg, l); err != nil || !changed {
		t.Fatalf("sync with a new timing: changed %v, %v", changed, err)
	}
	b, _ := os.ReadFile(path)
	want, _ := consulHCL(cfg, l, Options{SerfPort: 8301, ServerPort: 8300}, true, nil)
	if string(b) != want {
		t.Fatalf("consul.hcl after the sync:\n%s\nwant\n%s", b, want)
	}
	if err := os.WriteFile(path, []byte("node_name = \"a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := syncConsulTiming(cfg, l); err == nil || !strings.Contains(err.Error(), "edited by hand") {
		t.Fatalf("sync of a file without the blocks: %v", err)
	}
}
