package checkrunner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/replication/postgres"
)

const interval = time.Second

// node is one understudy node under test: its Consul agent, its PostgreSQL
// and the configuration a check-runner for it uses.
type node struct {
	name   string
	consul *testenv.Consul
	pg     *testenv.Postgres
	cfg    *config.Config
	cc     *consul.Client
}

func newNode(t testing.TB, name string, c *testenv.Consul, pg *testenv.Postgres) *node {
	t.Helper()
	cfg := config.Default()
	cfg.Cluster.Name = "test"
	cfg.Node.Name = name
	cfg.Node.Address = pg.Host
	cfg.Node.DataDir = t.TempDir()
	cfg.Logging.Dir = cfg.Node.DataDir // not the machine's /var/log/understudy
	cfg.Consul.Address = c.HTTPAddr
	cfg.Postgres.Host = pg.Host
	cfg.Postgres.Port = pg.Port
	cfg.Postgres.DataDir = pg.DataDir
	cfg.Checks.Interval = interval
	cfg.API.Listen = pg.Host + ":8008"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration of %s: %v", name, err)
	}
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	return &node{name: name, consul: c, pg: pg, cfg: cfg, cc: cc}
}

// run starts the node's check-runner in this process and stops it at the end
// of the test; cancel stops it earlier. done is closed when Run returned.
func (n *node) run(t *testing.T) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t, n.name}, nil))
	svcs := services.NewManager()
	r := checkrunner.New(n.cfg, n.cc, postgres.NewClient(n.cfg.Postgres), svcs, log, "test")
	ch := make(chan error, 1)
	go func() { ch <- r.Run(ctx); svcs.Close() }()
	t.Cleanup(func() { cancel(); <-ch })
	return cancel, ch
}

// checks returns this node's understudy checks as Consul's health API
// reports them to anyone asking, keyed by check name.
func (n *node) checks(ctx context.Context) (map[string]consul.CheckState, error) {
	all, err := n.cc.ServiceChecks(ctx, checkrunner.ServiceID)
	if err != nil {
		return nil, err
	}
	out := map[string]consul.CheckState{}
	for _, c := range all {
		if c.Node == n.consul.NodeName {
			out[c.Name] = c
		}
	}
	return out, nil
}

// expect returns nil when every named check has the wanted status, or an
// error listing what Consul showed instead.
func (n *node) expect(ctx context.Context, status string, names ...string) error {
	got, err := n.checks(ctx)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		names = checkrunner.Checks
	}
	var wrong []string
	for _, name := range names {
		c, ok := got[name]
		if !ok {
			wrong = append(wrong, fmt.Sprintf("%s: not registered", name))
		} else if c.Status != status {
			wrong = append(wrong, fmt.Sprintf("%s: %s (%s)", name, c.Status, c.Output))
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return fmt.Errorf("node %s, want %s: %s", n.name, status, strings.Join(wrong, "; "))
	}
	return nil
}

func setLeader(t testing.TB, cc *consul.Client, node string) {
	t.Helper()
	keys := cluster.NewKeys("understudy", "test")
	if err := cc.PutJSON(context.Background(), keys.Leader(), cluster.Leader{Node: node, Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// pair is a Consul cluster of three servers and two nodes: a, the active,
// with a primary, and b with a standby streaming from it.
func pair(t *testing.T) (a, b *node, servers []*testenv.Consul) {
	t.Helper()
	servers = testenv.StartConsulCluster(t, 3)
	primary := testenv.StartPostgres(t, testenv.PostgresOptions{Host: servers[0].Addr})
	standby := testenv.StartStandby(t, primary, testenv.PostgresOptions{Host: servers[1].Addr})
	a = newNode(t, "a", servers[0], primary)
	b = newNode(t, "b", servers[1], standby)
	setLeader(t, a.cc, "a")
	return a, b, servers
}

func TestHealthyPrimaryAndStandbyPassWithinTwoIntervals(t *testing.T) {
	testenv.RequireIntegration(t)
	a, b, _ := pair(t)
	ctx := context.Background()

	start := time.Now()
	a.run(t)
	b.run(t)
	// Two intervals from start, as the issue asks; the first round runs at
	// once, so this leaves one interval of slack for a busy machine.
	testenv.Eventually(t, 2*interval, func() error {
		return errors.Join(a.expect(ctx, consul.Passing), b.expect(ctx, consul.Passing))
	})
	t.Logf("all checks of both nodes passing %v after start", time.Since(start).Round(time.Millisecond))

	// The member records say who is what.
	keys := cluster.NewKeys("understudy", "test")
	testenv.Eventually(t, 3*interval, func() error {
		var ma, mb cluster.Member
		if _, _, err := a.cc.GetJSON(ctx, keys.Member("a"), &ma); err != nil {
			return err
		}
		if _, _, err := a.cc.GetJSON(ctx, keys.Member("b"), &mb); err != nil {
			return err
		}
		if ma.Role != cluster.RolePrimary || ma.WriteLSN == 0 || ma.Timeline == 0 {
			return fmt.Errorf("member a: %+v", ma)
		}
		if mb.Role != cluster.RoleStandby || mb.ReplayLSN == 0 || mb.LagBytes < 0 || mb.UpstreamHost != a.cfg.Node.Address {
			return fmt.Errorf("member b: %+v", mb)
		}
		if mb.Checks[checkrunner.CheckRole] != consul.Passing || time.Since(mb.Heartbeat) > 3*interval {
			return fmt.Errorf("member b checks %v, heartbeat %v", mb.Checks, mb.Heartbeat)
		}
		return nil
	})
}

func TestPostgresKilledFailsChecksUntilRestarted(t *testing.T) {
	testenv.RequireIntegration(t)
	a, _, _ := pair(t)
	ctx := context.Background()
	a.run(t)
	testenv.Eventually(t, 10*time.Second, func() error { return a.expect(ctx, consul.Passing) })

	a.pg.Kill(t)
	killed := time.Now()
	ttl := checkrunner.TTL(interval, 1, interval)
	testenv.Eventually(t, ttl, func() error {
		return a.expect(ctx, consul.Critical, checkrunner.CheckListening, checkrunner.CheckQuery)
	})
	t.Logf("listening and query critical %v after SIGKILL (TTL %v)", time.Since(killed).Round(time.Millisecond), ttl)

	a.pg.Start(t)
	testenv.Eventually(t, 10*time.Second, func() error { return a.expect(ctx, consul.Passing) })
}

func TestStandbyStreamingFromANonLeaderFailsRole(t *testing.T) {
	testenv.RequireIntegration(t)
	a, b, servers := pair(t)
	ctx := context.Background()
	// c is a third node with a primary of its own; it becomes the leader, so
	// b, still streaming from a, follows the wrong node, and a is a primary
	// that should not be one.
	other := testenv.StartPostgres(t, testenv.PostgresOptions{Host: servers[2].Addr})
	c := newNode(t, "c", servers[2], other)
	a.run(t)
	b.run(t)
	c.run(t)
	testenv.Eventually(t, 10*time.Second, func() error { return b.expect(ctx, consul.Passing) })

	setLeader(t, a.cc, "c")
	testenv.Eventually(t, 5*interval, func() error {
		return errors.Join(
			b.expect(ctx, consul.Critical, checkrunner.CheckRole),
			a.expect(ctx, consul.Critical, checkrunner.CheckRole),
			c.expect(ctx, consul.Passing))
	})
	got, _ := b.checks(ctx)
	if out := got[checkrunner.CheckRole].Output; !strings.Contains(out, "the active node c is at "+c.cfg.Node.Address) {
		t.Fatalf("role output on b does not say whom to follow: %q", out)
	}
}

func TestConsulRestartReRegistersChecks(t *testing.T) {
	testenv.RequireIntegration(t)
	// A dev-mode agent forgets everything when restarted: the check-runner
	// must notice and register again, without being restarted itself.
	c := testenv.StartConsulDev(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	a := newNode(t, "a", c, pg)
	setLeader(t, a.cc, "a")
	ctx := context.Background()
	a.run(t)
	testenv.Eventually(t, 10*time.Second, func() error { return a.expect(ctx, consul.Passing) })

	c.Restart(t)
	// The leader key went with the agent's memory; everything else passes,
	// and the role is "cannot tell" until a leader is back.
	testenv.Eventually(t, 15*time.Second, func() error {
		return errors.Join(
			a.expect(ctx, consul.Passing, checkrunner.CheckListening, checkrunner.CheckQuery,
				checkrunner.CheckServices, checkrunner.CheckConsul, checkrunner.CheckHeartbeat),
			a.expect(ctx, consul.Warning, checkrunner.CheckRole))
	})
	setLeader(t, a.cc, "a")
	testenv.Eventually(t, 5*interval, func() error { return a.expect(ctx, consul.Passing) })
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("[check-runner %s] %s", w.name, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
