package lifecycle_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
)

// TestNodeStopThenStart: on a node with supervised processes (a host
// without systemd), `understudy node stop` stops every process of the node
// and PostgreSQL, and `understudy node start` brings them back, as after a
// reboot: the one-node cluster's node is active again.
func TestNodeStopThenStart(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	cfg, o := freshNode(t, "a", "127.0.0.86")
	if _, err := lifecycle.Start(ctx, cfg, o); err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	o.Services.Close() // as when cluster start's command exits
	n := &tnode{cfg: cfg}
	pids := nodePIDs(t, cfg.Node.DataDir, cfg.Postgres.DataDir)

	cli := func(args ...string) string {
		t.Helper()
		args = append(args, "--config", cfg.Path)
		out, err := exec.Command(o.Understudy, args...).CombinedOutput()
		t.Logf("understudy %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("understudy %s: %v", args[1], err)
		}
		return string(out)
	}
	cli("node", "stop")
	for name, pid := range pids {
		if services.PIDAlive(pid) {
			t.Errorf("%s (pid %d) runs after node stop", name, pid)
		}
	}
	if err := n.get(t, "/status", nil); err == nil {
		t.Fatal("/status answers 200 after node stop")
	}

	cli("node", "start", "--consul", o.Consul)
	testenv.Eventually(t, time.Minute, func() error { return n.get(t, "/status", nil) })
	for name, pid := range nodePIDs(t, cfg.Node.DataDir, cfg.Postgres.DataDir) {
		if !services.PIDAlive(pid) || pid == pids[name] {
			t.Errorf("%s after node start: pid %d (was %d)", name, pid, pids[name])
		}
	}
}

// nodePIDs are the PIDs of a node's supervised processes and its
// postmaster, by name.
func nodePIDs(t *testing.T, dataDir, pgData string) map[string]int {
	t.Helper()
	read := func(path string) int {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		return pid
	}
	pids := map[string]int{"postgres": read(filepath.Join(pgData, "postmaster.pid"))}
	for _, name := range []string{lifecycle.ConsulProcess, lifecycle.CheckRunnerProcess, lifecycle.HandlerRunnerProcess, lifecycle.ConsulWatcherProcess} {
		pids[name] = read(lifecycle.PIDFile(dataDir, name))
	}
	return pids
}
