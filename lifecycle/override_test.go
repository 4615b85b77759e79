package lifecycle_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestClusterStartTakesNameAndAddressFlags: cluster start with
// --cluster-node-name and --cluster-host-ip on a node whose file carries the
// image's name and an address the other nodes could not reach: the file
// then holds the flags' values (its comments kept), and the node is active
// under that name at that address, as its daemons read them from the file.
func TestClusterStartTakesNameAndAddressFlags(t *testing.T) {
	testenv.RequireIntegration(t)
	cfg, o := freshNode(t, "a", "127.0.0.88")
	src, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	image := strings.Replace(string(src), `name     = "a"`, `name     = "image" # as the image shipped it`, 1)
	image = strings.Replace(image, `address  = "127.0.0.88"`, `address  = "192.0.2.10"`, 1)
	if image == string(src) {
		t.Fatalf("the test's file changed shape:\n%s", src)
	}
	if err := os.WriteFile(cfg.Path, []byte(image), 0o644); err != nil {
		t.Fatal(err)
	}

	bad := exec.Command(o.Understudy, "cluster", "start", "--config", cfg.Path, "--cluster-host-ip", "mgr-1.example.com")
	if out, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(out), "--cluster-host-ip \"mgr-1.example.com\" is not an IP address") {
		t.Fatalf("cluster start with a host name for --cluster-host-ip: %v\n%s", err, out)
	}
	if now, _ := os.ReadFile(cfg.Path); string(now) != image {
		t.Fatalf("a refused flag changed the file:\n%s", now)
	}

	args := []string{"cluster", "start", "--config", cfg.Path, "--processes", "supervised", "--consul", o.Consul,
		"--consul-serf-port", strconv.Itoa(o.SerfPort), "--consul-server-port", strconv.Itoa(o.ServerPort),
		"--cluster-node-name", "mgr-1", "--cluster-host-ip", "127.0.0.88"}
	out, err := exec.Command(o.Understudy, args...).CombinedOutput()
	t.Logf("understudy %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	now, _ := os.ReadFile(cfg.Path)
	if !strings.Contains(string(now), "# as the image shipped it") {
		t.Errorf("the file's comment is gone:\n%s", now)
	}
	got, err := config.Load(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node.Name != "mgr-1" || got.Node.Address != "127.0.0.88" {
		t.Fatalf("file after cluster start: node %q at %q, want mgr-1 at 127.0.0.88\n%s", got.Node.Name, got.Node.Address, now)
	}
	n := &tnode{cfg: got}
	testenv.Eventually(t, 30*time.Second, func() error {
		var cs nodeapi.ClusterStatus
		if err := n.get(t, "/v1/status/cluster", &cs); err != nil {
			return err
		}
		for _, m := range cs.Members {
			if m.Name == "mgr-1" && m.Address == "127.0.0.88" && cs.Leader == "mgr-1" {
				return nil
			}
		}
		return fmt.Errorf("leader %q, members %+v; want mgr-1 at 127.0.0.88, the leader", cs.Leader, cs.Members)
	})
}
