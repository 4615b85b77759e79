package certs

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestGossipKey(t *testing.T) {
	k1, err := GossipKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GossipKey()
	raw, err := base64.StdEncoding.DecodeString(k1)
	if err != nil || len(raw) != 32 {
		t.Errorf("GossipKey = %q: %d bytes, %v; want 32 bytes of standard base64", k1, len(raw), err)
	}
	if k1 == k2 {
		t.Error("two gossip keys are equal")
	}
}

func TestJoinToken(t *testing.T) {
	token, hash, err := NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	other, otherHash, _ := NewJoinToken()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "ust1."))
	if !strings.HasPrefix(token, "ust1.") || err != nil || len(raw) != 32 {
		t.Errorf("token %q is not ust1.<base64url of 32 bytes>", token)
	}
	if !strings.HasPrefix(hash, "sha256:") || len(hash) != len("sha256:")+64 {
		t.Errorf("hash %q is not sha256:<64 hex digits>", hash)
	}

	for _, tc := range []struct {
		name, token, hash string
		want              bool
	}{
		{"its own hash", token, hash, true},
		{"another token", other, hash, false},
		{"another hash", token, otherHash, false},
		{"the hash used as token", hash, hash, false},
		{"token without prefix", strings.TrimPrefix(token, "ust1."), hash, false},
		{"truncated token", token[:len(token)-1], hash, false},
		{"empty token", "", hash, false},
		{"empty hash", token, "", false},
		{"hash without algorithm", token, strings.TrimPrefix(hash, "sha256:"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := VerifyJoinToken(tc.token, tc.hash); got != tc.want {
				t.Errorf("VerifyJoinToken = %v, want %v", got, tc.want)
			}
		})
	}

	// What is stored reveals nothing of the token: no piece of the token's
	// random part appears in the hash, in any encoding.
	secret := strings.TrimPrefix(token, "ust1.")
	for _, enc := range []string{secret, fmt.Sprintf("%x", raw), base64.StdEncoding.EncodeToString(raw)} {
		if strings.Contains(hash, enc[:16]) {
			t.Errorf("hash %q contains part of the token", hash)
		}
	}
}

// tlsNode is one node's TLS directory.
type tlsNode struct {
	ca *CA
	n  *NodeCert
	p  Paths
}

func newTLSNode(t *testing.T, ca *CA, name string) tlsNode {
	t.Helper()
	n := issue(t, ca, name, time.Now())
	p, err := WriteFiles(t.TempDir(), ca, false, n, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	return tlsNode{ca, n, p}
}

// serve starts an HTTPS server on loopback with ServerTLS(p); it answers
// with the common name of the client certificate it verified, or "anonymous".
func serve(t *testing.T, p Paths) *httptest.Server {
	t.Helper()
	cfg, err := ServerTLS(p)
	if err != nil {
		t.Fatalf("ServerTLS: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			fmt.Fprint(w, "anonymous")
			return
		}
		c, err := VerifyClient(cfg.ClientCAs, r.TLS.PeerCertificates, time.Now())
		if err != nil {
			fmt.Fprint(w, "refused: ", err)
			return
		}
		fmt.Fprint(w, c)
	}))
	// Served as the handler-runner serves it, through tls.NewListener:
	// StartTLS would add a certificate of its own, which wins over
	// GetCertificate for a client that sends no server name.
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Config.ErrorLog = log.New(testLog{t}, "[server] ", 0)
	srv.Start()
	srv.URL = strings.Replace(srv.URL, "http://", "https://", 1)
	t.Cleanup(srv.Close)
	return srv
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func get(srv *httptest.Server, cfg *tls.Config) (string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL) // https://127.0.0.1:port: checks the 127.0.0.1 IP SAN
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t, "prod", time.Now())
	server := newTLSNode(t, ca, "n1")
	client := newTLSNode(t, ca, "n2")
	srv := serve(t, server.p)
	foreignCA := newTestCA(t, "prod", time.Now())
	foreign := newTLSNode(t, foreignCA, "intruder")
	operator, err := ca.IssueOperator("alice", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueOperator("bob", time.Hour, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		caPEM   []byte
		cert    *NodeCert
		want    string // response body, or "" for a failed handshake
		wantErr string
	}{
		{"joiner without a certificate", ca.CertPEM, nil, "anonymous", ""},
		{"node presents its certificate", ca.CertPEM, client.n, "node n2", ""},
		{"operator presents hers", ca.CertPEM, operator, "operator alice", ""},
		{"client certificate from another CA", ca.CertPEM, foreign.n, `refused: client certificate "intruder" is not signed by this cluster's CA`, ""},
		{"expired operator certificate", ca.CertPEM, expired, `refused: client certificate "bob" is not valid now`, ""},
		{"client trusts another CA", foreignCA.CertPEM, nil, "", "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ClientTLS(tc.caPEM, tc.cert)
			if err != nil {
				t.Fatalf("ClientTLS: %v", err)
			}
			got, err := get(srv, cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GET = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("GET = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A joiner knows only the CA's fingerprint (printed with the join token).
func TestPinnedClientTLS(t *testing.T) {
	ca := newTestCA(t, "prod", time.Now())
	server := newTLSNode(t, ca, "n1")
	srv := serve(t, server.p)
	other := newTestCA(t, "prod", time.Now())

	for _, bad := range []string{ca.Fingerprint()[len("sha256:"):], "sha256:abc", ""} {
		if _, err := PinnedClientTLS(bad); err == nil {
			t.Errorf("PinnedClientTLS(%q) accepted a malformed fingerprint", bad)
		}
	}
	for _, tc := range []struct {
		name        string
		fingerprint string
		ok          bool
	}{
		{"the cluster's CA", ca.Fingerprint(), true},
		{"upper-case hex", "sha256:" + strings.ToUpper(ca.Fingerprint()[len("sha256:"):]), true},
		{"another CA", other.Fingerprint(), false},
		{"the server's own certificate", Fingerprint(server.n.Cert), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := PinnedClientTLS(tc.fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			got, err := get(srv, cfg)
			if tc.ok != (err == nil) {
				t.Fatalf("GET = %q, %v; want success %v", got, err, tc.ok)
			}
			t.Log(got, err)
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	if _, err := ServerTLS(ReadPaths(t.TempDir())); err == nil {
		t.Error("ServerTLS with no files succeeded")
	}
	if _, err := ClientTLS([]byte("nope"), nil); err == nil {
		t.Error("ClientTLS with no CA succeeded")
	}
	ca := newTestCA(t, "prod", time.Now())
	n := issue(t, ca, "n1", time.Now())
	if _, err := ClientTLS(ca.CertPEM, &NodeCert{CertPEM: n.CertPEM, KeyPEM: ca.KeyPEM}); err == nil {
		t.Error("ClientTLS with a mismatched client key succeeded")
	}
	node := newTLSNode(t, ca, "n2")
	if err := os.WriteFile(node.p.CA, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ServerTLS(node.p); err == nil {
		t.Error("ServerTLS with a broken ca.pem succeeded")
	}
}
