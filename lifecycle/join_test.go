package lifecycle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/handlerrunner"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestClusterStartThenJoin: cluster start on one node, cluster join on
// another; a wrong token is refused and leaves nothing behind; the joined
// node streams from the active, both are Consul members over TLS, and a
// write on the active reaches the new standby.
func TestClusterStartThenJoin(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	acfg, ao := freshNode(t, "a", "127.0.0.42")
	res, err := lifecycle.Start(ctx, acfg, ao)
	if err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	bcfg, bo := freshNode(t, "b", "127.0.0.43")
	active := strings.TrimPrefix(acfg.APIURL(), "https://")

	// A wrong token: refused, and b is left as it was.
	err = lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: "ust1.wrong", CAFingerprint: res.CAFingerprint})
	if err == nil || !strings.Contains(err.Error(), "not this cluster's") {
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

	if err := lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: res.Token, CAFingerprint: res.CAFingerprint}); err != nil {
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
	hc, err := lifecycle.NodeClient(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := hc.Get(bcfg.APIURL() + "/v1/status/node")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st handlerrunner.NodeStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		want := fmt.Sprintf("%s:%d", acfg.Node.Address, acfg.Postgres.Port)
		if st.Role != handlerrunner.RoleStandby || !st.Postgres.Streaming || st.Postgres.Upstream != want {
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
}
