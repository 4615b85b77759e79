package handlerrunner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// The bounds the README states for the default configuration on loopback,
// with margin for a busy two-core machine running the race detector.
const (
	startTimeout      = 120 * time.Second
	postgresKillBound = 20 * time.Second
	nodeKillBound     = 30 * time.Second
	rejoinTimeout     = 90 * time.Second
)

// activeOnlyService is an exec service whose running state is a marker
// file in dir.
func activeOnlyService(dir string) string {
	marker := filepath.Join(dir, "running")
	return fmt.Sprintf(`service "worker" {
  start       = ["/bin/touch", %q]
  stop        = ["/bin/rm", "-f", %q]
  status      = ["/usr/bin/test", "-e", %q]
  active_only = true
}`, marker, marker, marker)
}

func runs(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "running"))
	return err == nil
}

func TestFailoverWhenActivePostgresIsKilled(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	c := newCluster(t, func(i int) extraHCL { return extraHCL{blocks: activeOnlyService(dirs[i])} })
	c.sample()
	old := c.waitHealthy(startTimeout)
	// The active-only service runs on the active node only.
	testenv.Eventually(t, 10*time.Second, func() error {
		for i, n := range c.nodes {
			if runs(dirs[i]) != (n == old) {
				return fmt.Errorf("worker on %s running %v, want %v", n.name, runs(dirs[i]), n == old)
			}
		}
		return nil
	})
	c.seedRow(old)

	killed := time.Now()
	if err := syscall.Kill(old.postmasterPID(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	act, took := c.waitWritable(old, killed, postgresKillBound)
	t.Logf("postgres of %s killed: %s active and took a write after %v", old.name, act.name, took.Round(time.Millisecond))
	if !act.ids(t)[1] {
		t.Fatalf("row 1, written before the kill, is missing on the new active %s", act.name)
	}
	// The old node comes back as a standby of the new one, without a hand
	// on it, and the worker moved with the active role.
	if got := c.waitHealthy(rejoinTimeout); got != act {
		t.Fatalf("active changed again: %s", got.name)
	}
	for i, n := range c.nodes {
		if runs(dirs[i]) != (n == act) {
			t.Errorf("worker on %s running %v after the failover, want %v", n.name, runs(dirs[i]), n == act)
		}
	}
	// What Prometheus scrapes from the new active.
	m := act.metrics(t)
	for _, want := range []string{
		`understudy_role{role="active"} 1`,
		`understudy_promotions_total{kind="failover"} 1`,
		`understudy_session_valid 1`,
		`understudy_check_status{check="postgres-query",status="passing"} 1`,
		`understudy_replication_lag_bytes 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics of %s has no %q", act.name, want)
		}
	}
}

func TestFailoverWhenActiveNodeIsKilled(t *testing.T) {
	c := newCluster(t, nil)
	c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)

	killed := time.Now()
	c.killNode(old)
	act, took := c.waitWritable(old, killed, nodeKillBound)
	t.Logf("node %s killed: %s active and took a write after %v", old.name, act.name, took.Round(time.Millisecond))
	c.waitHealthy(30*time.Second, old)
	if !act.ids(t)[1] {
		t.Fatalf("row 1 is missing on the new active %s", act.name)
	}

	// The node is started again: it rejoins as a standby of the new active.
	old.consul.Start(t)
	c.startDaemons(old)
	if got := c.waitHealthy(rejoinTimeout); got != act {
		t.Fatalf("active changed again: %s", got.name)
	}
}

// writer inserts a numbered row every 10 ms through whichever node answers
// /status 200, and remembers which inserts were acknowledged.
type writer struct {
	mu    sync.Mutex
	acked []int
	at    []time.Time // when each of acked was acknowledged
	stop  context.CancelFunc
	done  chan struct{}
}

func (c *tcluster) startWriter() *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for id := 1; ctx.Err() == nil; id++ {
			if conn == nil {
				// A new connection only to the node that answers /status
				// 200, as HAProxy would route it.
				if act, err := c.active(); err == nil {
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					conn, _ = act.conn(cctx)
					cancel()
				}
			}
			if conn != nil {
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := conn.Exec(wctx, "insert into rows (id) values ($1)", id)
				cancel()
				if err == nil {
					w.mu.Lock()
					w.acked = append(w.acked, id)
					w.at = append(w.at, time.Now())
					w.mu.Unlock()
				} else {
					conn.Close(context.Background())
					conn = nil
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	c.t.Cleanup(func() { w.stop(); <-w.done })
	return w
}

func (w *writer) finish() []int {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// gaps are the pauses between acknowledged writes longer than min, in
// order.
func (w *writer) gaps(min time.Duration) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(w.at); i++ {
		if d := w.at[i].Sub(w.at[i-1]); d > min {
			out = append(out, d)
		}
	}
	return out
}

// waitMore waits until k more rows are acknowledged than now.
func (w *writer) waitMore(t testing.TB, k int) {
	t.Helper()
	n := w.count()
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := w.count() - n; got < k {
			return fmt.Errorf("%d more rows acknowledged, want %d", got, k)
		}
		return nil
	})
}

// atMostOnePause fails the test unless the writes, finished, paused over
// 500 ms at most once, for under bound, during what.
func (w *writer) atMostOnePause(t testing.TB, bound time.Duration, what string) {
	t.Helper()
	gaps := w.gaps(500 * time.Millisecond)
	if len(gaps) > 1 || (len(gaps) == 1 && gaps[0] > bound) {
		t.Errorf("writes paused %v during %s; want one pause under %v", gaps, what, bound)
	}
	t.Logf("pauses over 500 ms during %s: %v", what, gaps)
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func missing(acked []int, have map[int]bool) []int {
	var out []int
	for _, id := range acked {
		if !have[id] {
			out = append(out, id)
		}
	}
	return out
}

func TestSwitchoverLosesNoAcknowledgedWrite(t *testing.T) {
	c := newCluster(t, nil)
	c.sample()
	old := c.waitHealthy(startTimeout)
	old.exec(t, "create table rows (id int primary key)")
	c.waitHealthy(30 * time.Second)
	w := c.startWriter()
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := w.count(); n < 50 {
			return fmt.Errorf("%d rows acknowledged so far", n)
		}
		return nil
	})
	var target *tnode
	for _, n := range c.nodes {
		if n != old {
			target = n
			break
		}
	}
	start := time.Now()
	res := switchover(t, old, target.name, http.StatusOK)
	t.Logf("switchover %s -> %s: %v (API said %v)", old.name, target.name, time.Since(start).Round(time.Millisecond), res["took"])
	before := w.count()
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := w.count(); n < before+50 {
			return fmt.Errorf("%d rows acknowledged after the switchover, want 50", n-before)
		}
		return nil
	})
	acked := w.finish()
	act := c.waitHealthy(rejoinTimeout)
	if act != target {
		t.Fatalf("active is %s, want %s", act.name, target.name)
	}
	if m := missing(acked, act.ids(t)); len(m) > 0 {
		t.Fatalf("%d acknowledged rows missing on %s after the switchover: %v", len(m), act.name, m)
	}
	t.Logf("%d acknowledged rows, none missing", len(acked))
}

func switchover(t testing.TB, via *tnode, target string, want int) map[string]any {
	t.Helper()
	body, _ := json.Marshal(nodeapi.SwitchoverRequest{Target: target, Timeout: "60s"})
	hc := &http.Client{Timeout: 70 * time.Second}
	resp, err := hc.Post(via.apiURL()+"/v1/cluster/switchover", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != want {
		t.Fatalf("switchover to %s through %s: %s %v, want %d", target, via.name, resp.Status, out, want)
	}
	return out
}

// TestActiveFencesWhenItsSessionIsInvalidated: the active's check-runner
// dies, so its TTL checks expire, Consul invalidates its session and frees
// the lock while its PostgreSQL still runs. The old active must stop
// taking writes before another node can take the lock (the sampler fails
// the test on two 200s), and come back as a standby once its checks pass.
func TestActiveFencesWhenItsSessionIsInvalidated(t *testing.T) {
	c := newCluster(t, nil)
	c.sample()
	old := c.waitHealthy(startTimeout)
	old.exec(t, "create table rows (id int primary key)")
	c.waitHealthy(30 * time.Second)

	killed := time.Now()
	if err := old.checks.Kill(); err != nil {
		t.Fatal(err)
	}
	act, took := c.waitWritable(old, killed, postgresKillBound)
	t.Logf("check-runner of %s killed: %s active and took a write after %v", old.name, act.name, took.Round(time.Millisecond))
	// The old active's PostgreSQL takes no writes: it is stopped or a
	// read-only standby.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := old.write(ctx, 42); err == nil {
		t.Fatalf("%s still takes writes after losing the lock", old.name)
	}
	old.checks = c.startDaemon(old, "check-runner")
	if got := c.waitHealthy(rejoinTimeout); got != act {
		t.Fatalf("active changed again: %s", got.name)
	}
}

// TestActiveWhoseHandlerRunnerDiesIsFenced: the active node's
// handler-runner is SIGKILLed, PostgreSQL left running. Its watchdog (or,
// were that gone too, the check-runner's guard) stops PostgreSQL when the
// lease runs out, so the old primary takes no write beside the new one; another node takes
// over, and the handler-runner, started again, brings the node back as a
// standby.
func TestActiveWhoseHandlerRunnerDiesIsFenced(t *testing.T) {
	c := newCluster(t, nil)
	c.sample()
	old := c.waitHealthy(startTimeout)
	c.seedRow(old)

	killed := time.Now()
	if err := old.handler.Kill(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if pid, running, err := old.inst.Running(context.Background()); err != nil || running {
			return fmt.Errorf("postgres of %s still runs (pid %d, %v) without its handler-runner", old.name, pid, err)
		}
		return nil
	})
	t.Logf("postgres of %s stopped %v after its handler-runner was killed", old.name, time.Since(killed).Round(time.Millisecond))
	act, took := c.waitWritable(old, killed, nodeKillBound)
	t.Logf("%s active and took a write %v after the kill", act.name, took.Round(time.Millisecond))
	if !act.ids(t)[1] {
		t.Fatalf("row 1 is missing on the new active %s", act.name)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		evs := act.events(t)
		for _, e := range evs {
			if e.Kind == "fence" && e.Node == old.name && (e.Details["by"] == "check-runner" || e.Details["by"] == "watchdog") {
				return nil
			}
		}
		return fmt.Errorf("no fence event by %s's check-runner or watchdog in %d events", old.name, len(evs))
	})

	old.handler = c.startDaemon(old, "handler-runner")
	if got := c.waitHealthy(rejoinTimeout); got != act {
		t.Fatalf("active changed again: %s", got.name)
	}
}
