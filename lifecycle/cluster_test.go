package lifecycle_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

type tnode struct {
	cfg *config.Config
	o   lifecycle.Options
	nc  *nodeapi.NodeClient
}

func (n *tnode) get(t *testing.T, path string, out any) error {
	t.Helper()
	if n.nc == nil {
		nc, err := lifecycle.NodeClient(n.cfg)
		if err != nil {
			return err
		}
		n.nc = nc
	}
	if err := n.nc.Do(context.Background(), n.cfg.APIURL(), http.MethodGet, path, nil, out, 2*time.Second); err != nil {
		return fmt.Errorf("%s%s: %w", n.cfg.APIURL(), path, err)
	}
	return nil
}

// kill SIGKILLs the node's processes and PostgreSQL, after ending their
// supervision (which would restart them).
func (n *tnode) kill(t *testing.T) {
	t.Helper()
	n.o.Services.Close()
	for _, name := range lifecycle.ProcessNames {
		b, err := os.ReadFile(lifecycle.PIDFile(n.cfg.Node.DataDir, name))
		if name == lifecycle.SyncthingProcess && len(n.cfg.Files) == 0 {
			continue // runs only on a node with files blocks
		}
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	b, err := os.ReadFile(filepath.Join(n.cfg.Postgres.DataDir, "postmaster.pid"))
	if err == nil {
		pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestThreeNodesThenTheCAMovesWithTheCluster: cluster start and two joins
// give one leader and two replicas at lag 0 after a write; after the active
// node is killed, a fourth node joins through the new active, signs its
// certificate with the CA that moved with the cluster, and is trusted by
// the others (Consul over TLS, the API over HTTPS); the killed node,
// removed by an operator, leaves no Consul agent token behind.
func TestThreeNodesThenTheCAMovesWithTheCluster(t *testing.T) {
	t.Parallel() // see "Parallel lifecycle tests" in start_test.go
	testenv.RequireIntegration(t)
	ctx := context.Background()
	var nodes []*tnode
	for i, name := range []string{"a", "b", "c", "d"} {
		cfg, o := freshNode(t, name, fmt.Sprintf("127.0.0.%d", 44+i))
		nodes = append(nodes, &tnode{cfg: cfg, o: o})
	}
	a, b, c, d := nodes[0], nodes[1], nodes[2], nodes[3]
	res, err := lifecycle.Start(ctx, a.cfg, a.o)
	if err != nil {
		t.Fatalf("cluster start on a: %v", err)
	}
	join := func(n, via *tnode) {
		t.Helper()
		j := lifecycle.JoinOptions{Active: strings.TrimPrefix(via.cfg.APIURL(), "https://"), Token: res.Token, CAFingerprint: res.CAFingerprint}
		if err := lifecycle.Join(ctx, n.cfg, n.o, j); err != nil {
			t.Fatalf("cluster join on %s through %s: %v", n.cfg.Node.Name, via.cfg.Node.Name, err)
		}
	}
	join(b, a)
	join(c, a)

	conn, err := pgx.Connect(ctx, postgres.ConnString(a.cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table t (id int); insert into t select generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// One leader and two replicas at lag 0, as `nodes list` shows them.
	testenv.Eventually(t, 30*time.Second, func() error {
		var cs nodeapi.ClusterStatus
		if err := a.get(t, "/v1/status/cluster", &cs); err != nil {
			return err
		}
		if cs.Leader != "a" || len(cs.Members) != 3 {
			return fmt.Errorf("leader %q, %d members", cs.Leader, len(cs.Members))
		}
		// Three Consul servers that vote: the cluster can lose one.
		if h := cs.Consul; h == nil || h.Voters != 3 || h.HealthyVoters != 3 || h.FailureTolerance != 1 {
			return fmt.Errorf("consul servers %+v, want 3 healthy voters tolerating 1 failure", h)
		}
		for _, m := range cs.Members {
			if m.Name != "a" && (m.Role != "standby" || m.LagBytes != 0) {
				return fmt.Errorf("%s: role %s lag %d", m.Name, m.Role, m.LagBytes)
			}
		}
		return nil
	})

	// Every node's certificate renewed while the cluster runs: each
	// serves the new one on its API, its Consul agent and its PostgreSQL
	// without a restart, and the failover below runs on them.
	for _, n := range []*tnode{a, b, c} {
		renewed, err := checkrunner.RenewCertificate(ctx, n.cfg, mustConsul(t, n.cfg), slog.New(slog.DiscardHandler), "test")
		if err != nil {
			t.Fatalf("renew %s: %v", n.cfg.Node.Name, err)
		}
		if len(renewed.Reloaded) != 2 {
			t.Fatalf("renew %s: reloaded %v, want consul and postgres", n.cfg.Node.Name, renewed.Reloaded)
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			return servesSerial(ctx, n.cfg, renewed.Serial, renewed.PostgresSerial)
		})
	}

	a.kill(t)
	var active *tnode
	testenv.Eventually(t, 60*time.Second, func() error {
		for _, n := range []*tnode{b, c} {
			if n.get(t, "/status", nil) == nil {
				active = n
				return nil
			}
		}
		return fmt.Errorf("neither b nor c is active yet")
	})
	t.Logf("%s is active after a was killed", active.cfg.Node.Name)

	join(d, active)
	// d is trusted by the others: a Consul member in their eyes (mutual TLS
	// on every port) and its HTTPS API answers a client that trusts only
	// the CA.
	cc, err := consul.New(active.cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		ms, err := cc.Members(ctx)
		if err != nil {
			return err
		}
		if ms["d"] != "alive" {
			return fmt.Errorf("consul members %v", ms)
		}
		var st nodeapi.NodeStatus
		dv := &tnode{cfg: d.cfg, nc: active.nc}
		if err := dv.get(t, "/v1/status/node", &st); err != nil {
			return err
		}
		if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming {
			return fmt.Errorf("d: %+v", st)
		}
		return nil
	})

	// a, killed, is removed through the active by an operator: its Consul
	// agent tokens go with it.
	mgmt, err := os.ReadFile(active.cfg.ManagementTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	admin := cc.ACL(strings.TrimSpace(string(mgmt)))
	if ids, err := admin.NodeTokens(ctx, "a"); err != nil || len(ids) == 0 {
		t.Fatalf("consul agent tokens of a before its removal: %v, %v; want one", ids, err)
	}
	caFile, _, _ := active.cfg.TLSFiles()
	ca, err := certs.ReadCA(certs.ReadPaths(filepath.Dir(caFile)))
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueOperator("alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(op.CertPEM, op.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	operator := nodeapi.NewNodeClient(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, "", "")
	if err := operator.Do(ctx, active.cfg.APIURL(), http.MethodDelete, "/v1/cluster/nodes/a?force=true", nil, nil, 30*time.Second); err != nil {
		t.Fatalf("remove a through %s: %v", active.cfg.Node.Name, err)
	}
	if ids, err := admin.NodeTokens(ctx, "a"); err != nil || len(ids) != 0 {
		t.Fatalf("consul agent tokens of a after its removal: %v, %v; want none", ids, err)
	}
	if ids, err := admin.NodeTokens(ctx, "d"); err != nil || len(ids) != 1 {
		t.Fatalf("consul agent tokens of d: %v, %v; want its one", ids, err)
	}
}

func mustConsul(t *testing.T, cfg *config.Config) *consul.Client {
	t.Helper()
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// servesSerial checks that the node's API and Consul agent present the
// node certificate with serial (hex), and PostgreSQL its own certificate
// with pgSerial.
func servesSerial(ctx context.Context, cfg *config.Config, serial, pgSerial string) error {
	caFile, certFile, keyFile := cfg.TLSFiles()
	// As the node: Consul's HTTPS asks for a client certificate.
	_, tc, err := certs.NodeTLS(certs.Paths{CA: caFile, Cert: certFile, Key: keyFile})
	if err != nil {
		return err
	}
	for what, addr := range map[string]string{"the API": strings.TrimPrefix(cfg.APIURL(), "https://"), "consul": cfg.Consul.Address} {
		conn, err := tls.Dial("tcp", addr, tc)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
		conn.Close()
		if got != serial {
			return fmt.Errorf("%s serves serial %s, want %s", what, got, serial)
		}
	}
	conn, err := pgx.Connect(ctx, postgres.ConnString(cfg.Postgres))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	tlsConn, ok := conn.PgConn().Conn().(*tls.Conn)
	if !ok {
		return fmt.Errorf("postgres: the connection is not TLS")
	}
	if got := tlsConn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16); got != pgSerial {
		return fmt.Errorf("postgres serves serial %s, want %s", got, pgSerial)
	}
	return nil
}
