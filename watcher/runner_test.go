package watcher

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/logging"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestCrashedServersAreAnOutage: the watcher of node-0 against a real
// three-server Consul on loopback. A killed server is down (its port
// refuses), not cut, and the majority holds; with a second one stopped no
// majority runs, and the node reports an outage, never a partition, long
// past minority_timeout.
func TestCrashedServersAreAnOutage(t *testing.T) {
	testenv.RequireIntegration(t)
	servers := testenv.StartConsulCluster(t, 3)
	cfg := config.Default()
	cfg.Cluster.Name = "t"
	cfg.Node.Name, cfg.Node.Address, cfg.Node.DataDir = "node-0", servers[0].Addr, testenv.TempDir(t, "watcher")
	cfg.Consul.Address = servers[0].HTTPAddr
	cfg.Checks.Interval = 250 * time.Millisecond
	cfg.Cluster.MinorityTimeout = 2 * time.Second
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, cc, logging.New(os.Stderr, "info"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	view := func(state string, reach map[string]cluster.Reach) func() error {
		return func() error {
			v, err := cluster.ReadPartition(cfg.Node.DataDir, time.Now(), time.Second)
			if err != nil {
				return err
			}
			if v.State != state || v.Stale {
				return fmt.Errorf("state %s (stale %v), want %s: %+v", v.State, v.Stale, state, v)
			}
			for _, p := range v.Peers {
				if want, ok := reach[p.Name]; ok && p.Reach != want {
					return fmt.Errorf("%s is %s (probe %s, gossip %s), want %s", p.Name, p.Reach, p.Probe, p.Gossip, want)
				}
			}
			if len(v.Peers) != 3 || v.Servers != 3 {
				return fmt.Errorf("%d peers, %d servers, want 3 and 3: %+v", len(v.Peers), v.Servers, v)
			}
			return nil
		}
	}
	testenv.Eventually(t, 10*time.Second, view(cluster.PartitionMajority,
		map[string]cluster.Reach{"node-0": cluster.Reached, "node-1": cluster.Reached, "node-2": cluster.Reached}))

	servers[2].Kill(t)
	testenv.Eventually(t, 10*time.Second, view(cluster.PartitionMajority,
		map[string]cluster.Reach{"node-1": cluster.Reached, "node-2": cluster.Down}))

	servers[1].Stop(t)
	testenv.Eventually(t, 10*time.Second, view(cluster.PartitionOutage,
		map[string]cluster.Reach{"node-0": cluster.Reached, "node-1": cluster.Down, "node-2": cluster.Down}))
	// Long past minority_timeout: still an outage, no partition.
	deadline := time.Now().Add(cfg.Cluster.MinorityTimeout + time.Second)
	for time.Now().Before(deadline) {
		if err := view(cluster.PartitionOutage, nil)(); err != nil {
			t.Fatalf("two crashed servers: %v", err)
		}
		time.Sleep(cfg.Checks.Interval)
	}
}
