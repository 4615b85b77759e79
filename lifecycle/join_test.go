package lifecycle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestClusterStartThenJoin: cluster start on one node, cluster join on
// another; a wrong token is refused before the version is looked at and
// leaves nothing behind; an expired token and one that cluster token
// revoked are refused, and the new one admits the node; the joined node
// streams from the active, both are Consul members over TLS, and a write on
// the active reaches the new standby; failed joins are recorded, and held
// off once too many.
func TestClusterStartThenJoin(t *testing.T) {
	t.Parallel() // see "Parallel lifecycle tests" in start_test.go
	testenv.RequireIntegration(t)
	ctx := context.Background()
	acfg, ao := freshNode(t, "a", "127.0.0.42")
	res, err := lifecycle.Start(ctx, acfg, ao)
	if err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	bcfg, bo := freshNode(t, "b", "127.0.0.43")
	active := strings.TrimPrefix(acfg.APIURL(), "https://")

	// A wrong token from another version: refused for the token (the
	// version is not told to a caller without one), and b is left as it
	// was.
	other := bo
	other.Version = "0.0.0-other"
	err = lifecycle.Join(ctx, bcfg, other, lifecycle.JoinOptions{Active: active, Token: "ust1.wrong", CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "not this cluster's") || strings.Contains(err.Error(), "version") {
		t.Fatalf("join with a wrong token: %v", err)
	}
	if entries, _ := os.ReadDir(bcfg.Node.DataDir); len(entries) != 1 { // only its understudy.hcl
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("a refused join left %v in %s", names, bcfg.Node.DataDir)
	}
	// A wrong CA fingerprint: the token is not even sent.
	err = lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: res.Token, CAFingerprint: "sha256:" + strings.Repeat("0", 64)})
	if err == nil {
		t.Fatal("join to a server with another CA fingerprint succeeded")
	}

	// cluster token with a lifetime of a second: its token expires, and
	// cluster start's is revoked by it.
	short, err := lifecycle.IssueToken(ctx, acfg, time.Second, testWriter{t})
	if err != nil {
		t.Fatalf("cluster token: %v", err)
	}
	time.Sleep(time.Until(short.TokenExpires) + 100*time.Millisecond)
	err = lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: short.Token, CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "token expired at") || !strings.Contains(err.Error(), "understudy cluster token") {
		t.Fatalf("join with an expired token: %v", err)
	}
	err = lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: res.Token, CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "token was revoked") {
		t.Fatalf("join with cluster start's token after cluster token: %v", err)
	}
	// cluster token again, on the command line as an operator runs it:
	// only the newest token admits b.
	out, err := exec.Command(bo.Understudy, "cluster", "token", "--ttl", "10m", "--config", acfg.Path).CombinedOutput()
	t.Logf("understudy cluster token:\n%s", out)
	fresh := regexp.MustCompile(`ust1\.\S+`).FindString(string(out))
	if err != nil || fresh == "" || !strings.Contains(string(out), res.CAFingerprint) || !strings.Contains(string(out), "cluster join "+active+" --token-file") {
		t.Fatalf("cluster token: %v", err)
	}
	err = lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: short.Token, CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "token was revoked") {
		t.Fatalf("join with the expired token after another cluster token: %v", err)
	}

	if err := lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: fresh, CAFingerprint: res.CAFingerprint}); err != nil {
		t.Fatalf("cluster join: %v", err)
	}

	// Both are Consul members, as the active's agent sees over TLS.
	cc, err := consul.New(acfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		ms, err := cc.Members(ctx)
		if err != nil {
			return err
		}
		if ms["a"] != "alive" || ms["b"] != "alive" {
			return fmt.Errorf("consul members %v", ms)
		}
		return nil
	})
	// A write on the active reaches b, which streams from a.
	conn, err := pgx.Connect(ctx, postgres.ConnString(acfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create table joined (id int); insert into joined values (42)"); err != nil {
		t.Fatal(err)
	}
	nc, err := lifecycle.NodeClient(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		st, err := nc.NodeStatus(ctx, bcfg.APIURL(), 2*time.Second)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("%s:%d", acfg.Node.Address, acfg.Postgres.Port)
		if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming || st.Postgres.Upstream != want {
			return fmt.Errorf("b: %+v", st)
		}
		bc, err := pgx.Connect(ctx, postgres.ConnString(bcfg.Postgres)+" connect_timeout=2")
		if err != nil {
			return err
		}
		defer bc.Close(ctx)
		var id int
		return bc.QueryRow(ctx, "select id from joined").Scan(&id)
	})
	if id, found, err := lifecycle.ReadIdentity(bcfg.Node.DataDir); err != nil || !found || id.How != "join" || id.CAFingerprint != res.CAFingerprint {
		t.Fatalf("b's identity: %+v %v %v", id, found, err)
	}

	// The refused joins and the issued tokens are in the history.
	raw, err := cc.Events(ctx, "understudy/t/events/", 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range raw {
		var ev cluster.Event
		if err := json.Unmarshal(r, &ev); err != nil {
			t.Fatal(err)
		}
		kinds[ev.Kind]++
		if ev.Kind == cluster.EventJoinRefused && ev.Details["from"] == "" {
			t.Errorf("a join-refused event without the caller's address: %+v", ev)
		}
	}
	if kinds[cluster.EventJoinRefused] != 4 || kinds[cluster.EventJoinToken] != 2 {
		t.Errorf("events by kind %v; want 4 join-refused and 2 join-token", kinds)
	}

	// One more failure makes five from this address in the minute: the
	// next join is held off, whatever its token.
	ccfg, co := freshNode(t, "c", "127.0.0.51")
	if err := lifecycle.Join(ctx, ccfg, co, lifecycle.JoinOptions{Active: active, Token: "ust1.wrong", CAFingerprint: res.CAFingerprint}); err == nil || !strings.Contains(err.Error(), "not this cluster's") {
		t.Fatalf("fifth failed join: %v", err)
	}
	err = lifecycle.Join(ctx, ccfg, co, lifecycle.JoinOptions{Active: active, Token: fresh, CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "too many failed joins") {
		t.Fatalf("join after five failures in a minute: %v", err)
	}
}
