package lifecycle_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestHostileClients: a node made by cluster start, with basic auth on (which
// cluster start must pass through itself), called at every endpoint by
// clients with no certificate, one of another CA, an expired one, a node's
// and an operator's. Each gets the status its certificate allows, a refusal
// says in JSON what is missing, and after all the refused calls the leader,
// next-master, options, members and the PostgreSQL primary are as they were.
func TestHostileClients(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	cfg, o := freshNode(t, "a", "127.0.0.44")
	authFile := filepath.Join(filepath.Dir(cfg.Path), "api-users")
	if err := os.WriteFile(authFile, []byte("ops:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hcl, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	listen := regexp.MustCompile(`api \{ listen = ("[^"]*") \}`)
	with := listen.ReplaceAllString(string(hcl), fmt.Sprintf("api {\n  listen = $1\n  basic_auth_file = %q\n}", authFile))
	if err := os.WriteFile(cfg.Path, []byte(with), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(cfg.Path); err != nil {
		t.Fatal(err)
	}
	if cfg.API.BasicAuthFile != authFile {
		t.Fatalf("api.basic_auth_file = %q after the edit", cfg.API.BasicAuthFile)
	}
	if _, err := lifecycle.Start(ctx, cfg, o); err != nil {
		t.Fatalf("cluster start with api.basic_auth_file: %v", err)
	}

	caFile, _, _ := cfg.TLSFiles()
	ca, err := certs.ReadCA(certs.ReadPaths(filepath.Dir(caFile)))
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("t", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	operator := func(ca *certs.CA, name string, at time.Time) *certs.NodeCert {
		c, err := ca.IssueOperator(name, time.Hour, at)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	node, err := ca.IssueNode("b", "dc1", []string{"127.0.0.45"}, now)
	if err != nil {
		t.Fatal(err)
	}
	callers := []struct {
		name string
		cert *certs.NodeCert
		auth bool
	}{
		{"no certificate", nil, true},
		{"another CA", operator(other, "mallory", now), true},
		{"expired", operator(ca, "bob", now.Add(-3*time.Hour)), true},
		{"node", node, true},
		{"operator", operator(ca, "alice", now), true},
		{"operator without basic auth", operator(ca, "alice", now), false},
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clients := make([]*http.Client, len(callers))
	for i, c := range callers {
		tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if c.cert != nil {
			pair, err := tls.X509KeyPair(c.cert.CertPEM, c.cert.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}

	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	before := clusterState(t, ctx, cc, keys, cfg)

	endpoints := []struct {
		method, path, body string
		// want is the status for each caller, in the order of callers. The
		// operator's calls name a node that does not exist: past the
		// checks, refused with 404, nothing changed.
		want [6]int
	}{
		{"GET", "/status", "", [6]int{200, 200, 200, 200, 200, 200}},
		{"GET", "/replica", "", [6]int{503, 503, 503, 503, 503, 503}},
		{"GET", "/metrics", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"GET", "/v1/status/node", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"GET", "/v1/status/cluster", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"GET", "/v1/status/partition", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"GET", "/v1/events", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"GET", "/v1/lease/grants?session=x", "", [6]int{401, 401, 401, 200, 200, 401}},
		{"POST", "/v1/lease/grant", `{}`, [6]int{401, 401, 401, 400, 400, 401}},
		{"POST", "/v1/cluster/switchover", `{"target":"nosuch"}`, [6]int{401, 401, 401, 403, 404, 401}},
		{"DELETE", "/v1/cluster/nodes/nosuch?force=true", "", [6]int{401, 401, 401, 403, 404, 401}},
		{"PUT", "/v1/cluster/nodes/nosuch/options", `{"nofailover":true}`, [6]int{401, 401, 401, 403, 404, 401}},
		// Resume of a cluster that is not paused: past the checks, it
		// changes nothing.
		{"POST", "/v1/cluster/resume", "", [6]int{401, 401, 401, 403, 200, 401}},
		{"GET", "/v1/cluster/config", "", [6]int{401, 401, 401, 200, 200, 401}},
		// A parameter understudy owns: past the checks, refused, nothing
		// written.
		{"PUT", "/v1/cluster/config", `{"set":{"port":"1"}}`, [6]int{401, 401, 401, 403, 400, 401}},
		{"POST", "/v1/node/reload", "", [6]int{401, 401, 401, 403, 200, 401}},
		// The join call asks for no certificate: a wrong token is refused
		// whatever the caller presents, and the sixth failure from one
		// address within a minute is held off.
		{"POST", "/v1/cluster/join", `{"token":"ust1.wrong","node":"x","address":"127.0.0.46"}`, [6]int{403, 403, 403, 403, 403, 429}},
	}
	for _, e := range endpoints {
		for i, c := range callers {
			req, err := http.NewRequestWithContext(ctx, e.method, cfg.APIURL()+e.path, strings.NewReader(e.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.auth {
				req.SetBasicAuth("ops", "s3cret")
			}
			resp, err := clients[i].Do(req)
			if err != nil {
				t.Errorf("%s %s as %s: %v", e.method, e.path, c.name, err)
				continue
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != e.want[i] {
				t.Errorf("%s %s as %s: %d %s, want %d", e.method, e.path, c.name, resp.StatusCode, strings.TrimSpace(string(raw)), e.want[i])
			}
			if resp.StatusCode == 401 || resp.StatusCode == 403 {
				var body map[string]any
				if err := json.Unmarshal(raw, &body); err != nil || body["error"] == nil {
					t.Errorf("%s %s as %s: %d %s; want a JSON error", e.method, e.path, c.name, resp.StatusCode, raw)
				}
			}
		}
	}
	if after := clusterState(t, ctx, cc, keys, cfg); after != before {
		t.Errorf("refused calls changed the cluster:\nbefore %s\nafter  %s", before, after)
	}

	// The operator's change is let through and recorded with its name.
	req, _ := http.NewRequestWithContext(ctx, "PUT", cfg.APIURL()+"/v1/cluster/nodes/a/options", strings.NewReader(`{"check_ttl_multiplier":2}`))
	req.SetBasicAuth("ops", "s3cret")
	resp, err := clients[4].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the operator's options change: %s", resp.Status)
	}
	evs, err := cc.Events(ctx, keys.Events(), 20)
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for _, raw := range evs {
		var ev cluster.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind == "options" {
			by = append(by, ev.By)
		}
	}
	if len(by) != 1 || by[0] != "operator alice" {
		t.Fatalf("options events recorded by %q, want one by \"operator alice\"", by)
	}
}

// clusterState is what a refused call must not change: the leader key, the
// next-master key, every node's options, the members, and PostgreSQL's role
// and timeline.
func clusterState(t *testing.T, ctx context.Context, cc *consul.Client, keys cluster.Keys, cfg *config.Config) string {
	t.Helper()
	leader, err := cc.GetKey(ctx, keys.Leader(), true)
	if err != nil {
		t.Fatal(err)
	}
	nm, err := cc.GetKey(ctx, keys.NextMaster(), true)
	if err != nil {
		t.Fatal(err)
	}
	var opts, members []string
	if err := cc.ListJSON(ctx, keys.Prefix()+"options/", func(k string, raw []byte) error {
		opts = append(opts, k+"="+string(raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cc.ListJSON(ctx, keys.Members(), func(k string, _ []byte) error {
		members = append(members, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, postgres.ConnString(cfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var recovery bool
	var timeline int
	if err := conn.QueryRow(ctx, "select pg_is_in_recovery(), (select timeline_id from pg_control_checkpoint())").Scan(&recovery, &timeline); err != nil {
		t.Fatal(err)
	}
	// The leader key's value is the active's to rewrite (its lease, its
	// LSN): who holds it, with which session, in which term is what a
	// caller must not change.
	var l cluster.Leader
	if err := json.Unmarshal(leader.Value, &l); err != nil {
		t.Fatalf("leader key %q: %v", leader.Value, err)
	}
	return fmt.Sprintf("leader %s held by %q (lock %d); next-master %q (index %d); options %v; members %v; postgres in recovery %v, timeline %d",
		l.Node, leader.Session, leader.LockIndex, nm.Value, nm.ModifyIndex, opts, members, recovery, timeline)
}
