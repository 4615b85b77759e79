package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// fatalTB records the first Fatal and ends its goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fatalTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

// runTB runs f on a goroutine of its own, as a test does, so Goexit ends
// only f.
func runTB(f func(tb *fatalTB)) *fatalTB {
	tb := &fatalTB{}
	done := make(chan struct{})
	go func() { defer close(done); f(tb) }()
	<-done
	return tb
}

func TestEventually(t *testing.T) {
	var calls atomic.Int32
	tb := runTB(func(tb *fatalTB) {
		testenv.Eventually(tb, 5*time.Second, func() error {
			if calls.Add(1) < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if tb.msg != "" || calls.Load() != 3 {
		t.Fatalf("Eventually failed %q after %d calls, want success after 3", tb.msg, calls.Load())
	}

	start := time.Now()
	tb = runTB(func(tb *fatalTB) {
		testenv.Eventually(tb, 200*time.Millisecond, func() error { return errors.New("port 5432 closed") })
	})
	if !strings.Contains(tb.msg, "last error: port 5432 closed") {
		t.Fatalf("Eventually's failure %q does not carry the last error", tb.msg)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Eventually gave up after %v, want about 200ms", d)
	}
}

func TestWaitForStopsWithContextCause(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("postgres exited"))
	err := testenv.WaitFor(ctx, time.Minute, func() error { return errors.New("refused") })
	if err == nil || !strings.Contains(err.Error(), "postgres exited") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("WaitFor = %v, want the cause and the last error", err)
	}
}

func TestFreePortsOnAreDistinctAndLoopbackOnly(t *testing.T) {
	ports := testenv.FreePortsOn(t, "127.0.0.10", 5)
	sorted := slices.Sorted(slices.Values(ports))
	if len(slices.Compact(sorted)) != 5 {
		t.Fatalf("FreePortsOn returned a port twice: %v", ports)
	}
	tb := runTB(func(tb *fatalTB) { testenv.FreePortOn(tb, "192.0.2.1") })
	if !strings.Contains(tb.msg, "not a loopback address") {
		t.Fatalf("FreePortOn(192.0.2.1) failed with %q, want a refusal", tb.msg)
	}
}

func TestProcessKeepsOutputAndStops(t *testing.T) {
	testenv.RequireIntegration(t)
	p := testenv.StartProcess(t, "sh", exec.Command("sh", "-c", "echo ready; exec sleep 60"))
	testenv.Eventually(t, 5*time.Second, func() error {
		if tail := p.Tail(10); !slices.Contains(tail, "ready") {
			return fmt.Errorf("output so far: %q", tail)
		}
		return nil
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Stop")
	}
	if err := p.Wait(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Fatalf("Wait after Stop = %v, want terminated by SIGTERM", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill of an exited process: %v", err)
	}
}

func TestProcessOrphanOutputAfterTestEnds(t *testing.T) {
	testenv.RequireIntegration(t)
	// The shell leaves a child that keeps writing to the pipe after the
	// shell itself is stopped. Once the subtest has completed, a t.Log of
	// that output would panic; the cleanup must have silenced the stream.
	t.Run("sub", func(t *testing.T) {
		testenv.StartProcess(t, "chatty", exec.Command("sh", "-c",
			"(while :; do echo tick; sleep 0.01; done) & exec sleep 60"))
		time.Sleep(100 * time.Millisecond)
	})
	time.Sleep(300 * time.Millisecond) // the panic, if any, would come now
}

func TestConsulDevRestart(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	c := testenv.StartConsulDev(t)
	if !strings.HasPrefix(c.HTTPAddr, "127.0.0.1:") || c.NodeName != "dev" || c.DataDir != "" {
		t.Fatalf("dev agent %+v", c)
	}
	kv := c.Client(t).KV()
	putKey(t, c, "k", "v")
	pid := c.Process.PID()

	c.Restart(t)
	if c.Process.PID() == pid {
		t.Fatalf("same PID %d after Restart", pid)
	}
	pair, _, err := kv.Get("k", nil)
	if err != nil {
		t.Fatalf("client from before the restart: %v", err)
	}
	if pair != nil {
		t.Fatalf("a dev agent kept %q across a restart", pair.Value)
	}
}

func TestConsulPersistentRestartKeepsState(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	c := testenv.StartConsulDev(t, testenv.Persistent(), testenv.NodeName("solo"), testenv.BindAddr("127.0.0.20"))
	if !strings.HasPrefix(c.HTTPAddr, "127.0.0.20:") || c.DataDir == "" {
		t.Fatalf("persistent agent %+v", c)
	}
	putKey(t, c, "k", "kept")
	c.Kill(t)
	c.Start(t)
	// A restarted server replays its Raft log into the state store only once
	// it has committed an entry of its new term, shortly after it leads: a
	// read at that moment may still find the store empty.
	testenv.Eventually(t, 10*time.Second, func() error {
		pair, _, err := c.Client(t).KV().Get("k", nil)
		if err != nil || pair == nil || string(pair.Value) != "kept" {
			return fmt.Errorf("after kill and start: %v, %v", pair, err)
		}
		return nil
	})
}

func TestConsulClusterElectsOneLeader(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	servers := testenv.StartConsulCluster(t, 3)
	leaderOf := map[string]*testenv.Consul{}
	for i, c := range servers {
		if want := fmt.Sprintf("127.0.0.%d", 10+i); c.Addr != want || c.NodeName != fmt.Sprintf("node-%d", i) {
			t.Fatalf("server %d: %s at %s, want node-%d at %s", i, c.NodeName, c.Addr, i, want)
		}
		leaderOf[c.Addr] = c
	}
	members, err := servers[0].Client(t).Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if c := leaderOf[m.Addr]; c == nil || c.NodeName != m.Name {
			t.Errorf("member %s at %s is none of the servers", m.Name, m.Addr)
		}
	}

	// Kill the leader: the other two elect one of themselves, and the
	// killed one rejoins on Start.
	leader, err := servers[0].Client(t).Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	old := leaderOf[strings.Split(leader, ":")[0]]
	old.Kill(t)
	var rest []*testenv.Consul
	for _, c := range servers {
		if c != old {
			rest = append(rest, c)
		}
	}
	testenv.Eventually(t, 15*time.Second, func() error {
		now, err := rest[0].Client(t).Status().Leader()
		if err != nil {
			return err
		}
		if now == "" || now == leader {
			return fmt.Errorf("leader %q after killing %s", now, leader)
		}
		return nil
	})
	old.Start(t)
	testenv.Eventually(t, 15*time.Second, func() error { return testenv.ClusterConverged(servers) })

	// All of them down: none can elect a leader alone, so they start
	// together, and their data directories bring the same cluster back.
	putKey(t, servers[0], "k", "kept")
	for _, c := range servers {
		c.Kill(t)
	}
	testenv.StartServers(t, servers...)
	testenv.Eventually(t, 15*time.Second, func() error { return testenv.ClusterConverged(servers) })
	// A consistent read, retried while leadership settles: seen once under
	// load, a read right after convergence found no key.
	testenv.Eventually(t, 10*time.Second, func() error {
		pair, _, err := servers[2].Client(t).KV().Get("k", &api.QueryOptions{RequireConsistent: true})
		if err != nil || pair == nil || string(pair.Value) != "kept" {
			return fmt.Errorf("after restarting every server: %v, %v", pair, err)
		}
		return nil
	})
}

func putKey(t *testing.T, c *testenv.Consul, key, value string) {
	t.Helper()
	kv := c.Client(t).KV()
	if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresStandbyStreams(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	primary := testenv.StartPostgres(t, testenv.PostgresOptions{Host: "127.0.0.30", Name: "primary"})
	standby := testenv.StartStandby(t, primary, testenv.PostgresOptions{Host: "127.0.0.31", Name: "standby"})
	ctx := context.Background()

	pc := primary.Conn(t)
	mustExec(t, pc, "create table t (v text)")
	mustExec(t, pc, "insert into t values ('streamed')")
	sc := standby.Conn(t)
	testenv.Eventually(t, 10*time.Second, func() error {
		var v string
		return sc.QueryRow(ctx, "select v from t").Scan(&v)
	})

	// The primary knows the standby by its application_name; by address
	// it would not: every loopback client comes from 127.0.0.1, whatever
	// address it listens on.
	var app, client string
	err := pc.QueryRow(ctx, "select application_name, host(client_addr) from pg_stat_replication").Scan(&app, &client)
	if err != nil || app != "standby" || client != "127.0.0.1" {
		t.Fatalf("pg_stat_replication: %q from %q (%v), want standby from 127.0.0.1", app, client, err)
	}
}

func TestPostgresKillAndStart(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	mustExec(t, pg.Conn(t), "create table t as select 1 as v")
	pid := pg.Process.PID()

	pg.Kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, pg.ConnString()); err == nil {
		conn.Close(ctx)
		t.Fatal("connected after Kill")
	}

	pg.Start(t) // crash recovery over the stale postmaster.pid
	if pg.Process.PID() == pid {
		t.Fatalf("same PID %d after Start", pid)
	}
	var v int
	if err := pg.Conn(t).QueryRow(context.Background(), "select v from t").Scan(&v); err != nil || v != 1 {
		t.Fatalf("after restart: %d, %v", v, err)
	}
	pg.Stop(t) // a fast shutdown despite the connection left open
}

func TestFollowFromPromotedSibling(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	a := testenv.StartPostgres(t, testenv.PostgresOptions{Host: "127.0.0.40"})
	b := testenv.StartStandby(t, a, testenv.PostgresOptions{Host: "127.0.0.41"})
	c := testenv.StartStandby(t, a, testenv.PostgresOptions{Host: "127.0.0.42"})

	a.Kill(t)
	b.Promote(t)
	c.FollowFrom(t, b)
	mustExec(t, b.Conn(t), "create table after_failover (v int)")
	cc := c.Conn(t)
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := cc.Exec(context.Background(), "select from after_failover")
		return err
	})
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
