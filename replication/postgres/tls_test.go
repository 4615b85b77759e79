package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// withTLS is i's data directory as a TLS node's: a certificate of ca for
// the node written beside it as `cluster start` writes one (root's, 0600),
// and the configuration internal/config derives for such a node.
func withTLS(t *testing.T, i *Instance, ca *certs.CA) *Instance {
	t.Helper()
	dir := filepath.Dir(i.DataDir())
	nc, err := ca.IssueNode(i.node, "dc1", []string{i.cfg.Host}, time.Now())
	must(t, err)
	p, err := certs.WriteFiles(filepath.Join(dir, "tls"), ca, false, nc, -1, -1)
	must(t, err)
	cfg := i.cfg
	cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.TLSDir = p.CA, p.Cert, p.Key, filepath.Join(dir, "postgres-tls")
	j := NewInstance(cfg, i.node, slog.New(slog.NewTextHandler(t.Output(), nil)))
	j.noSync, j.extraConf = true, testConf
	t.Cleanup(func() { stopForGood(t, j) })
	return j
}

// connectFrom connects to i with the libpq parameters params, from the
// local address from ("" for the kernel's choice, 127.0.0.1 on loopback),
// and returns the error.
func connectFrom(i *Instance, from, params string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres %s", i.cfg.Host, i.cfg.Port, params))
	if err != nil {
		return err
	}
	if from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		cc.DialFunc = d.DialContext
	}
	// Present the certificate whoever signed it, as libpq does: Go's client
	// sends none that the server's list of CAs does not name, and then the
	// server's own check would go untested.
	if tc := cc.TLSConfig; tc != nil && len(tc.Certificates) > 0 {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.Certificates[0], nil }
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// On a TLS node understudy's user gets in with a certificate of the cluster
// CA and in no other way; a data directory made without TLS gets it at its
// first start (as `cluster start` adopts one); a clone made and streaming
// with certificates proves that pg_basebackup and primary_conninfo use
// them, and a rewind after a failover that pg_rewind does.
func TestCertificateAuth(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	ca, err := certs.NewCA("t", time.Now())
	must(t, err)
	plain := newTestInstance(t, "a", "127.0.0.71")
	must(t, plain.Init(ctx))
	a := withTLS(t, plain, ca)
	must(t, a.StartPrimary(ctx))

	for _, l := range settingLines(readFile(t, filepath.Join(a.DataDir(), "pg_hba.conf"))) {
		if strings.Contains(l, "trust") {
			t.Errorf("pg_hba.conf of a TLS node trusts someone: %s", l)
		}
	}
	if ident := readFile(t, filepath.Join(a.DataDir(), "pg_ident.conf")); !strings.Contains(ident, "\nunderstudy  /^.*$  postgres\n") {
		t.Errorf("pg_ident.conf lacks the cluster CA's map:\n%s", ident)
	}
	checkOwner(t, a.cfg.TLSDir, 0o700)
	for _, name := range []string{tlsCAName, tlsCertName, tlsKeyName} {
		checkOwner(t, filepath.Join(a.cfg.TLSDir, name), 0o600)
	}
	// The node's own client: its certificate's CN is "a", mapped to postgres.
	st, err := a.Client().State(ctx)
	must(t, err)
	if st.InRecovery {
		t.Fatalf("state %+v, want a primary", st)
	}

	// Another CA, and a certificate of the cluster CA for a name that is
	// no node's, both readable by the test (root).
	other, err := certs.NewCA("other", time.Now())
	must(t, err)
	foreign, err := other.IssueNode("a", "dc1", nil, time.Now())
	must(t, err)
	fp, err := certs.WriteFiles(filepath.Join(testDir(t, "foreign"), "tls"), other, false, foreign, -1, -1)
	must(t, err)
	own, err := ca.IssueNode("tool", "dc1", nil, time.Now())
	must(t, err)
	op, err := certs.WriteFiles(filepath.Join(testDir(t, "tool"), "tls"), ca, false, own, -1, -1)
	must(t, err)

	const elsewhere = "127.0.0.73" // not initdb's 127.0.0.1: another host
	for _, tc := range []struct {
		name, from, params, want string
	}{
		{"no TLS from another host", elsewhere, "sslmode=disable", "no pg_hba.conf entry"},
		{"TLS without a certificate", elsewhere, "sslmode=require", "requires a valid client certificate"},
		{"TLS without a certificate from loopback", "", "sslmode=require", "requires a valid client certificate"},
		// The server's certificate checks out (the cluster CA): the server
		// refuses the client's in the handshake.
		{"a certificate of another CA", elsewhere, "sslmode=verify-ca sslrootcert=" + op.CA + " sslcert=" + fp.Cert + " sslkey=" + fp.Key, "unknown certificate authority"},
		// initdb's loopback line asks for a password, which postgres has not.
		{"no TLS from loopback", "", "sslmode=disable", "password authentication failed"},
	} {
		err := connectFrom(a, tc.from, tc.params)
		// With TLS 1.3 the client's handshake ends before the server
		// looks at its certificate: the server's alert can lose the race
		// with the client's first write, which then meets a reset.
		refused := err != nil && (strings.Contains(err.Error(), tc.want) ||
			tc.want == "unknown certificate authority" && strings.Contains(err.Error(), "connection reset by peer"))
		if !refused {
			t.Errorf("%s: %v; want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	if err := connectFrom(a, elsewhere, "sslmode=verify-ca sslrootcert="+op.CA+" sslcert="+op.Cert+" sslkey="+op.Key); err != nil {
		t.Errorf("a certificate of the cluster CA: %v; want it let in", err)
	}

	b := withTLS(t, newTestInstance(t, "b", "127.0.0.72"), ca)
	must(t, a.EnsureSlots(ctx, []string{"a", "b"}))
	must(t, b.Clone(ctx, upstream(a), nil))
	up := upstream(a)
	must(t, b.StartStandby(ctx, &up))
	waitStreaming(t, b, a)
	var ssl bool
	var dn string
	must(t, query(a, "select s.ssl, coalesce(s.client_dn, '') from pg_stat_replication r join pg_stat_ssl s using (pid) where r.application_name = 'b'", &ssl, &dn))
	if !ssl || !strings.Contains(dn, "CN=b") {
		t.Errorf("b streams with ssl %v as %q; want TLS with b's certificate", ssl, dn)
	}

	// A failover, and the old primary, with a write the new one never got,
	// rewound to the new one's history: pg_rewind and the checkpoint it
	// asks of its source connect with certificates too.
	must(t, b.Promote(ctx))
	must(t, b.EnsureSlots(ctx, []string{"a", "b"}))
	mustExec(t, a, "create table lost (v text)")
	must(t, a.Stop(ctx, "immediate"))
	_, err = a.Rewind(ctx, upstream(b))
	must(t, err)
	upB := upstream(b)
	must(t, a.StartStandby(ctx, &upB))
	waitStreaming(t, a, b)
}
