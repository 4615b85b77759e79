package handlerrunner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestPauseHoldsTheRoles: while the cluster is paused, the active's
// PostgreSQL killed is neither replaced by another node nor started again
// for twenty times as long as a failover takes; every node and
// /metrics show the pause. Resumed, the cluster fails over and is whole.
func TestPauseHoldsTheRoles(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	old := c.waitHealthy(startTimeout)
	post := func(n *tnode, path, body string) nodeapi.PauseAnswer {
		t.Helper()
		resp, err := http.Post(n.apiURL()+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s on %s: %s", path, n.name, resp.Status)
		}
		var ans nodeapi.PauseAnswer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Fatalf("POST %s on %s: %v", path, n.name, err)
		}
		return ans
	}
	standby := c.nodes[0]
	if standby == old {
		standby = c.nodes[1]
	}
	if ans := post(standby, "/v1/cluster/pause", `{"reason":"test"}`); ans.Active != old.name || ans.Warning != "" {
		t.Fatalf("pause answered %+v; want %s named active and no warning", ans, old.name)
	}
	testenv.Eventually(t, 15*time.Second, func() error {
		for _, n := range c.nodes {
			st, err := n.nodeStatus()
			if err != nil {
				return err
			}
			if st.Paused == nil || st.Paused.Reason != "test" {
				return fmt.Errorf("%s does not show the pause: %+v", n.name, st.Paused)
			}
		}
		return nil
	})
	if m := old.metrics(t); !strings.Contains(m, "understudy_cluster_paused 1") {
		t.Errorf("/metrics of %s does not show the pause", old.name)
	}

	if err := syscall.Kill(old.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The old active gives up (its PostgreSQL is gone)...
	testenv.Eventually(t, 10*time.Second, func() error {
		if code := old.statusCode(); code == http.StatusOK {
			return fmt.Errorf("%s still answers /status 200", old.name)
		}
		return nil
	})
	// ...and then nothing moves for 10 s: twenty times what a failover
	// after a PostgreSQL kill takes here (README, "Measured").
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if code := n.statusCode(); code == http.StatusOK {
				t.Fatalf("%s answers /status 200 while the cluster is paused and the active's postgres is dead", n.name)
			}
		}
		if _, running, _ := old.inst.Running(context.Background()); running {
			t.Fatalf("postgres of %s was started again while the cluster is paused", old.name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range c.nodes {
		if n == old {
			continue
		}
		st, err := n.nodeStatus()
		if err != nil || st.Role != "standby" {
			t.Fatalf("%s while paused: role %s, %v; want standby", n.name, st.Role, err)
		}
	}

	post(standby, "/v1/cluster/resume", "")
	act := c.waitHealthy(rejoinTimeout)
	t.Logf("resumed: %s active", act.name)
	if m := act.metrics(t); !strings.Contains(m, "understudy_cluster_paused 0") {
		t.Errorf("/metrics of %s still shows a pause", act.name)
	}
}
