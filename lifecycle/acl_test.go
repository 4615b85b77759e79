package lifecycle_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
)

// TestConsulACLs: on a cluster cluster start made, Consul's ACLs deny by
// default. The daemons' token writes the cluster's keys and nothing else (no
// other prefix, no ACL rights); a certificate the cluster CA signed opens
// nothing without a token; PostgreSQL's certificate, even with the daemons'
// token, is refused by the TLS handshake. Nothing a refused call tried is in
// Consul afterwards. The tokens are files only their owner reads, and the
// postgres OS user's TLS files hold no copy of the node key.
func TestConsulACLs(t *testing.T) {
	testenv.RequireIntegration(t)
	ctx := context.Background()
	cfg, o := freshNode(t, "a", "127.0.0.87")
	if _, err := lifecycle.Start(ctx, cfg, o); err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	daemons := mustConsul(t, cfg)
	var leader map[string]any
	if _, found, err := daemons.GetJSON(ctx, keys.Leader(), &leader); err != nil || !found {
		t.Fatalf("the daemons' token reads the leader key: found %v, %v", found, err)
	}
	if err := daemons.PutJSON(ctx, keys.Prefix()+"acl-test", "mine"); err != nil {
		t.Fatalf("the daemons' token writes under %s: %v", keys.Prefix(), err)
	}

	// What the daemons' token may not do.
	for _, key := range []string{"elsewhere/x", cfg.Cluster.KVPrefix + "/other/leader"} {
		if err := daemons.PutJSON(ctx, key, "not mine"); !consul.IsPermissionDenied(err) {
			t.Errorf("the daemons' token writes %s: %v, want permission denied", key, err)
		}
	}
	token := readSecret(t, cfg.Consul.TokenFile)
	err := daemons.ACL(token).EnsurePolicy(ctx, "everything", "", `key_prefix "" { policy = "write" }`)
	if !consul.IsPermissionDenied(err) {
		t.Errorf("the daemons' token writes an acl policy: %v, want permission denied", err)
	}

	// A certificate of the cluster CA without a token: an operator's,
	// and the node's own.
	ca, err := certs.ReadCA(certs.ReadPaths(filepath.Dir(cfg.Consul.CAFile)))
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueOperator("mallory", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opCert, opKey, err := certs.WriteOperator(t.TempDir(), "mallory", op, false)
	if err != nil {
		t.Fatal(err)
	}
	for what, pair := range map[string][2]string{
		"an operator certificate": {opCert, opKey},
		"the node certificate":    {cfg.Consul.CertFile, cfg.Consul.KeyFile},
	} {
		cc := consulAs(t, cfg, pair[0], pair[1], "")
		if err := cc.PutJSON(ctx, keys.Leader(), "mallory"); !consul.IsPermissionDenied(err) {
			t.Errorf("%s without a token writes the leader key: %v, want permission denied", what, err)
		}
		if _, _, err := cc.GetJSON(ctx, keys.Leader(), &leader); !consul.IsPermissionDenied(err) {
			t.Errorf("%s without a token reads the leader key: %v, want permission denied", what, err)
		}
	}

	// PostgreSQL's certificate, root's and the postgres user's copy, with
	// the daemons' token: the handshake refuses it before any token counts.
	pgCopy := func(name string) string { return filepath.Join(cfg.Postgres.TLSDir, name) }
	for what, pair := range map[string][2]string{
		"the postgresql certificate":      {cfg.Postgres.CertFile, cfg.Postgres.KeyFile},
		"the postgres user's certificate": {pgCopy("postgres.pem"), pgCopy("postgres-key.pem")},
	} {
		cc := consulAs(t, cfg, pair[0], pair[1], token)
		err := cc.PutJSON(ctx, keys.Leader(), "postgres")
		if err == nil || consul.IsPermissionDenied(err) {
			t.Errorf("%s with the daemons' token: %v, want the TLS handshake refused", what, err)
		}
		t.Logf("%s refused: %v", what, err)
	}
	var after map[string]any
	if _, _, err := daemons.GetJSON(ctx, keys.Leader(), &after); err != nil || after["node"] != leader["node"] || after["node"] != "a" {
		t.Errorf("leader key after the refused writes: %v (%v), was %v", after, err, leader)
	}
	for _, key := range []string{"elsewhere/x", cfg.Cluster.KVPrefix + "/other/leader"} {
		var v string
		mgmt := consulAs(t, cfg, cfg.Consul.CertFile, cfg.Consul.KeyFile, readSecret(t, cfg.ManagementTokenFile()))
		if _, found, err := mgmt.GetJSON(ctx, key, &v); err != nil || found {
			t.Errorf("%s after a refused write: %q found %v, %v", key, v, found, err)
		}
	}

	// The secrets on disk.
	for path, mode := range map[string]os.FileMode{
		filepath.Dir(cfg.Consul.TokenFile):                             0o700,
		cfg.Consul.TokenFile:                                           0o600,
		cfg.ManagementTokenFile():                                      0o600,
		filepath.Join(cfg.Node.DataDir, "consul", "config", "acl.hcl"): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %v", path, fi.Mode(), err, mode)
		}
	}
	nodeKey, err := os.ReadFile(cfg.Consul.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cfg.Postgres.TLSDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("%s: %v %v", cfg.Postgres.TLSDir, entries, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(cfg.Postgres.TLSDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, bytes.TrimSpace(nodeKey)) {
			t.Errorf("%s holds the node key", e.Name())
		}
	}
}

// consulAs is a client of cfg's agent that presents the certificate and
// key given and token ("" none).
func consulAs(t *testing.T, cfg *config.Config, cert, key, token string) *consul.Client {
	t.Helper()
	c := cfg.Consul
	c.CertFile, c.KeyFile, c.Token, c.TokenFile = cert, key, token, ""
	cc, err := consul.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

func readSecret(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
