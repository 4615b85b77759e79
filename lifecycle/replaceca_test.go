package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestReplacingTheCA: the README's procedure on a three-node cluster. With
// the cluster stopped (node stop everywhere), certs new-ca on one node and
// certs replace-ca on each, node start brings back the same cluster: its
// Consul servers (mutual TLS on the new CA) elect, an active has every row,
// the two others stream from it. An operator certificate
// of the old CA is refused, one of the new CA accepted; replace-ca refuses
// on a node that runs, and keeps the old files aside.
func TestReplacingTheCA(t *testing.T) {
	t.Parallel() // see "Parallel lifecycle tests" in start_test.go
	testenv.RequireIntegration(t)
	ctx := context.Background()
	var nodes []*tnode
	for i, name := range []string{"a", "b", "c"} {
		cfg, o := freshNode(t, name, fmt.Sprintf("127.0.0.%d", 61+i))
		nodes = append(nodes, &tnode{cfg: cfg, o: o})
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	res, err := lifecycle.Start(ctx, a.cfg, a.o)
	if err != nil {
		t.Fatalf("cluster start on a: %v", err)
	}
	for _, n := range []*tnode{b, c} {
		j := lifecycle.JoinOptions{Active: strings.TrimPrefix(a.cfg.APIURL(), "https://"), Token: res.Token, CAFingerprint: res.CAFingerprint}
		if err := lifecycle.Join(ctx, n.cfg, n.o, j); err != nil {
			t.Fatalf("cluster join on %s: %v", n.cfg.Node.Name, err)
		}
	}
	for _, n := range nodes {
		n.o.Services.Close() // as when the commands exit
	}
	conn, err := pgx.Connect(ctx, postgres.ConnString(a.cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table t (id int); insert into t select generate_series(1, 100)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	cli := func(n *tnode, wantOK bool, args ...string) string {
		t.Helper()
		args = append(args, "--config", n.cfg.Path)
		out, err := exec.Command(n.o.Understudy, args...).CombinedOutput()
		t.Logf("[%s] understudy %s:\n%s", n.cfg.Node.Name, strings.Join(args, " "), out)
		if (err == nil) != wantOK {
			t.Fatalf("[%s] understudy %s: %v", n.cfg.Node.Name, strings.Join(args, " "), err)
		}
		return string(out)
	}
	ops := t.TempDir()
	cli(a, true, "certs", "operator", "before", "--out", ops)
	newCA := filepath.Join(t.TempDir(), "new-ca")
	cli(a, true, "certs", "new-ca", "--out", newCA)
	if out := cli(a, false, "certs", "replace-ca", "--from", newCA); !strings.Contains(out, "node stop") {
		t.Errorf("replace-ca on a running node did not say to stop it first:\n%s", out)
	}

	for _, n := range []*tnode{c, b, a} {
		cli(n, true, "node", "stop")
	}
	caFile, _, _ := a.cfg.TLSFiles()
	oldCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		out := cli(n, true, "certs", "replace-ca", "--from", newCA)
		if !strings.Contains(out, "the old files are in") {
			t.Errorf("replace-ca on %s did not say where the old files are:\n%s", n.cfg.Node.Name, out)
		}
		nodeCA, _, _ := n.cfg.TLSFiles()
		aside, _ := filepath.Glob(filepath.Join(filepath.Dir(nodeCA), "replaced-*", certs.CAFile))
		if len(aside) != 1 {
			t.Fatalf("%s: the old CA aside: %v", n.cfg.Node.Name, aside)
		}
		if kept, err := os.ReadFile(aside[0]); err != nil || string(kept) != string(oldCA) {
			t.Errorf("%s: %s is not the old CA (%v)", n.cfg.Node.Name, aside[0], err)
		}
		n.nc = nil // its client trusts the old CA
	}
	for _, n := range nodes {
		cli(n, true, "node", "start", "--consul", n.o.Consul)
	}

	// The same cluster, on the new CA: an active (whichever node the
	// election chose among those with every row the old active
	// published) with the rows, the other two streaming from it.
	var active *tnode
	testenv.Eventually(t, 2*time.Minute, func() error {
		var cs nodeapi.ClusterStatus
		if err := a.get(t, "/v1/status/cluster", &cs); err != nil {
			return err
		}
		if h := cs.Consul; h == nil || h.HealthyVoters != 3 {
			return fmt.Errorf("consul servers %+v, want 3 healthy voters", h)
		}
		active = nil
		for _, n := range nodes {
			var st nodeapi.NodeStatus
			if err := n.get(t, "/v1/status/node", &st); err != nil {
				return err
			}
			switch {
			case st.Role == nodeapi.RoleActive && n.cfg.Node.Name == cs.Leader:
				active = n
			case st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming:
				return fmt.Errorf("%s is %s, streaming %v (leader %q)", n.cfg.Node.Name, st.Role, st.Postgres.Streaming, cs.Leader)
			}
		}
		if active == nil {
			return fmt.Errorf("no active node (leader %q)", cs.Leader)
		}
		return nil
	})
	t.Logf("%s is the active after the replacement", active.cfg.Node.Name)
	conn, err = pgx.Connect(ctx, postgres.ConnString(active.cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows int
	if err := conn.QueryRow(ctx, "select count(*) from t").Scan(&rows); err != nil || rows != 100 {
		t.Errorf("%s has %d rows of t after the replacement (%v), want 100", active.cfg.Node.Name, rows, err)
	}

	// Operators: the old CA's certificate refused, the new one's taken.
	cli(a, true, "certs", "operator", "after", "--out", ops)
	newCAPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	as := func(name string) error {
		t.Helper()
		certPEM, err1 := os.ReadFile(filepath.Join(ops, name+".pem"))
		keyPEM, err2 := os.ReadFile(filepath.Join(ops, name+"-key.pem"))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		nc, err := certs.LoadNodeCert(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := certs.ClientTLS(newCAPEM, nc)
		if err != nil {
			t.Fatal(err)
		}
		return nodeapi.NewNodeClient(tc, "", "").Do(ctx, a.cfg.APIURL(), http.MethodGet, "/v1/status/cluster", nil, nil, 5*time.Second)
	}
	var ae *nodeapi.APIError
	if err := as("before"); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("an operator certificate of the old CA: %v, want 401", err)
	}
	if err := as("after"); err != nil {
		t.Errorf("an operator certificate of the new CA: %v", err)
	}
}
