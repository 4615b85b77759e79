package lifecycle_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// freshNode writes the configuration of a node that is in no cluster yet,
// on its own loopback address, and returns it with the options cluster start
// runs it with.
func freshNode(t *testing.T, name, addr string, postgresExtra ...string) (*config.Config, lifecycle.Options) {
	t.Helper()
	cfg, ports := nodeConfig(t, name, addr, "", postgresExtra...)
	dir := cfg.Node.DataDir
	m := services.NewManager(services.WithStateDir(filepath.Join(dir, "services")), services.WithLogger(slog.New(slog.DiscardHandler)))
	o := lifecycle.Options{
		Consul: testenv.ConsulBinary(t), Understudy: testenv.Understudy(t),
		SerfPort: ports.serf, ServerPort: ports.server, Services: m, Out: testWriter{t},
	}
	// Registered after the directory's own cleanup, so it runs first: stop
	// what Start started, then PostgreSQL by its PID.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, svc := range []string{lifecycle.HandlerRunnerProcess, lifecycle.CheckRunnerProcess, lifecycle.ConsulWatcherProcess, lifecycle.ConsulProcess} {
			_ = m.Stop(ctx, config.Service{Name: svc, Command: []string{"x"}})
		}
		pg := postgres.NewInstance(cfg.Postgres, name, slog.New(slog.DiscardHandler))
		_ = pg.Stop(ctx, "immediate")
		m.Close()
		if t.Failed() {
			for _, name := range lifecycle.ProcessNames {
				f := name + ".log"
				b, _ := os.ReadFile(filepath.Join(dir, "services", f))
				t.Logf("%s:\n%s", f, tail(string(b), 30))
			}
		}
	})
	return cfg, o
}

// nodePorts are a node's Consul gossip and server ports, which go on the
// command line of cluster start and join rather than in the file.
type nodePorts struct{ serf, server int }

// nodeConfig writes the configuration of a node in no cluster yet, on its
// own loopback address under a directory of its own; blocks are added to
// the file and postgresExtra to its postgres block.
func nodeConfig(t *testing.T, name, addr, blocks string, postgresExtra ...string) (*config.Config, nodePorts) {
	t.Helper()
	dir := testenv.TempDir(t, name)
	ports := testenv.FreePortsOn(t, addr, 5) // consul https, serf, server; postgres; api
	hcl := fmt.Sprintf(`cluster { name = "t" }
node {
  name     = %q
  address  = %q
  data_dir = %q
}
consul {
  scheme  = "https"
  address = "%s:%d"
}
postgres {
  port = %d
  %s
}
api { listen = "%s:%d" }
logging { dir = %q }
%s
`, name, addr, dir, addr, ports[0], ports[3], strings.Join(postgresExtra, "\n  "), addr, ports[4], filepath.Join(dir, "log"), blocks)
	path := filepath.Join(dir, "understudy.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, nodePorts{serf: ports[1], server: ports[2]}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("[lifecycle] %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestClusterStartOnAFreshNode: the node becomes a one-node cluster and its
// active node, with Consul's API refusing a client without a certificate,
// and a second start is refused.
func TestClusterStartOnAFreshNode(t *testing.T) {
	testenv.RequireIntegration(t)
	cfg, o := freshNode(t, "a", "127.0.0.41")
	ctx := context.Background()
	res, err := lifecycle.Start(ctx, cfg, o)
	if err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	if !strings.HasPrefix(res.Token, "ust1.") || !strings.HasPrefix(res.CAFingerprint, "sha256:") {
		t.Fatalf("result %+v", res)
	}

	// Active: /status 200, over HTTPS with the node certificate.
	if !strings.HasPrefix(cfg.APIURL(), "https://") {
		t.Fatalf("API URL %s of a TLS node", cfg.APIURL())
	}
	nc, err := lifecycle.NodeClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := nc.Active(ctx, cfg.APIURL(), 2*time.Second); err != nil {
		t.Fatalf("/status after cluster start: %+v %v", a, err)
	}

	// Consul answers a client with the node's certificate...
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := cc.Agent(ctx); err != nil || a.Leader == "" {
		t.Fatalf("consul with the node certificate: %+v %v", a, err)
	}
	// ...and refuses one without, though it trusts the CA.
	ca, err := os.ReadFile(cfg.Consul.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if resp, err := anon.Get("https://" + cfg.Consul.Address + "/v1/kv/understudy/t/config"); err == nil {
		resp.Body.Close()
		t.Fatalf("consul answered a client without a certificate: %s", resp.Status)
	}
	// The plain HTTP API is off.
	if resp, err := http.Get("http://" + cfg.Consul.Address + "/v1/status/leader"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatal("consul answered plain HTTP")
	}

	// PostgreSQL takes understudy's user with the node's certificate (the
	// daemons' checks log in so), and refuses it without one.
	pgc := postgres.NewClient(cfg.Postgres)
	defer pgc.Close()
	if err := pgc.Ping(ctx); err != nil {
		t.Fatalf("postgres with the node certificate: %v", err)
	}
	for _, params := range []string{"sslmode=disable", "sslmode=require"} {
		if conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres %s", cfg.Postgres.Host, cfg.Postgres.Port, params)); err == nil {
			conn.Close(ctx)
			t.Fatalf("postgres let understudy's user in without a certificate (%s)", params)
		}
	}

	// The join token is kept only as a hash, and expires in an hour.
	var jt certs.JoinTokenRecord
	if _, found, err := cc.GetJSON(ctx, "understudy/t/join-token", &jt); err != nil || !found || jt.Hash == "" || strings.Contains(jt.Hash, res.Token) {
		t.Fatalf("join-token key: %+v found %v %v", jt, found, err)
	}
	if d := jt.ExpiresAt.Sub(jt.IssuedAt); d != lifecycle.DefaultTokenTTL || !jt.ExpiresAt.Equal(res.TokenExpires) {
		t.Fatalf("join token valid for %v until %v; want %v, until %v as Start said", d, jt.ExpiresAt, lifecycle.DefaultTokenTTL, res.TokenExpires)
	}

	// The certificates check sees the node certificate and the CA.
	testenv.Eventually(t, 10*time.Second, func() error {
		checks, err := cc.ServiceChecks(ctx, "understudy")
		if err != nil {
			return err
		}
		for _, c := range checks {
			if c.Name == "certificates" && c.Status == "passing" && strings.Contains(c.Output, "node certificate valid for") && strings.Contains(c.Output, "cluster CA valid for") {
				return nil
			}
		}
		return fmt.Errorf("no passing certificates check among %+v", checks)
	})

	if _, err := lifecycle.Start(ctx, cfg, o); !errors.Is(err, lifecycle.ErrInCluster) {
		t.Fatalf("second cluster start: %v, want ErrInCluster", err)
	}
}

// TestClusterStartRefusesPlainConsul: without TLS configured, nothing is
// written.
func TestClusterStartRefusesPlainConsul(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Cluster.Name, cfg.Node.Name, cfg.Node.Address, cfg.Node.DataDir = "t", "a", "127.0.0.1", dir
	_, err := lifecycle.Start(context.Background(), cfg, lifecycle.Options{})
	if err == nil || !strings.Contains(err.Error(), `scheme = "https"`) {
		t.Fatalf("Start with plain consul: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Start left %d files in %s", len(entries), dir)
	}
}

// TestClusterStartKeepsWhatItDidNotCreate: a PostgreSQL data directory that
// holds only lost+found (a mount point) is refused before anything is done,
// and stays as it was; an empty one that was there before is emptied again,
// not removed, when a start fails after initdb; and a start then succeeds
// in it.
func TestClusterStartKeepsWhatItDidNotCreate(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	cfg, o := freshNode(t, "a", "127.0.0.44")
	pgdata := cfg.Postgres.DataDir
	lostFound := filepath.Join(pgdata, "lost+found")
	if err := os.MkdirAll(lostFound, 0o700); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, cfg.Node.DataDir)

	_, err := lifecycle.Start(ctx, cfg, o)
	if !errors.Is(err, lifecycle.ErrDataDirNotEmpty) || !strings.Contains(err.Error(), pgdata) || !strings.Contains(err.Error(), filepath.Join(pgdata, "data")) {
		t.Fatalf("cluster start on a data directory holding lost+found: %v; want ErrDataDirNotEmpty naming %s and the fix", err, pgdata)
	}
	if fi, err := os.Stat(lostFound); err != nil || !fi.IsDir() {
		t.Fatalf("lost+found after the refused start: %v", err)
	}
	if after := dirNames(t, cfg.Node.DataDir); !slices.Equal(after, before) {
		t.Fatalf("a refused start changed %s: %v, was %v", cfg.Node.DataDir, after, before)
	}

	// The directory emptied by hand: a start that fails after initdb (it
	// gives the node no time to become active) undoes itself and leaves
	// the directory there, empty.
	if err := os.Remove(lostFound); err != nil {
		t.Fatal(err)
	}
	failing := o
	failing.Timeout = time.Nanosecond
	if _, err := lifecycle.Start(ctx, cfg, failing); err == nil || !strings.Contains(err.Error(), "did not become active") {
		t.Fatalf("cluster start with no time to become active: %v", err)
	}
	if left := dirNames(t, pgdata); len(left) != 0 {
		t.Fatalf("the failed start left %v in %s", left, pgdata)
	}
	for _, made := range []string{"tls", "consul", "postgres-tls", "cluster.json"} {
		if _, err := os.Stat(filepath.Join(cfg.Node.DataDir, made)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the failed start left %s: %v", made, err)
		}
	}

	if _, err := lifecycle.Start(ctx, cfg, o); err != nil {
		t.Fatalf("cluster start in the emptied directory: %v", err)
	}
}

// dirNames lists a directory's entries, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Parallel lifecycle tests: the tests that call t.Parallel here check what cluster
// start, join and a failover leave behind, not how fast a failover is;
// each has loopback addresses of its own (127.0.0.42-43 and 51, 44-47,
// 48-49) and ports picked free on them. Go runs them after every serial
// test, two at once on two cores: a minute off `make test`.
