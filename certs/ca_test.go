package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

func newTestCA(t testing.TB, name string, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA(name, now)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func issue(t testing.TB, ca *CA, node string, now time.Time, addrs ...string) *NodeCert {
	t.Helper()
	n, err := ca.IssueNode(node, "dc1", addrs, now)
	if err != nil {
		t.Fatalf("IssueNode(%s): %v", node, err)
	}
	return n
}

func TestNewCALoadCARoundTrip(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	c := ca.Cert
	if got, want := c.Subject.CommonName, "understudy prod CA"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage = %v, want CertSign|CRLSign", c.KeyUsage)
	}
	if d := c.NotAfter.Sub(now) - CAValidity; d < -time.Second || d > time.Second {
		t.Errorf("NotAfter = %v, want now + 10 years", c.NotAfter)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", c.PublicKey)
	}

	loaded, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatalf("LoadCA of a new CA's PEM: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) {
		t.Error("LoadCA did not return the same certificate and key")
	}

	// SEC 1 keys, what `consul tls ca create` and OpenSSL write, load too.
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if _, err := LoadCA(ca.CertPEM, sec1); err != nil {
		t.Errorf("LoadCA with a SEC 1 key: %v", err)
	}
}

func TestLoadCARefuses(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "a", now)
	other := newTestCA(t, "b", now)
	node := issue(t, ca, "n1", now)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})

	tests := []struct {
		name          string
		certPEM, keyP []byte
	}{
		{"key of another CA", ca.CertPEM, other.KeyPEM},
		{"node certificate with its own key", node.CertPEM, node.KeyPEM},
		{"not an ECDSA key", ca.CertPEM, edPEM},
		{"no certificate", nil, ca.KeyPEM},
		{"no key", ca.CertPEM, nil},
		{"key and certificate swapped", ca.KeyPEM, ca.CertPEM},
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ca.KeyPEM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := LoadCA(tc.certPEM, tc.keyP); err == nil {
				t.Fatalf("LoadCA accepted it: %v", got.Cert.Subject)
			} else {
				t.Log(err)
			}
		})
	}
}

func TestIssueNode(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	n := issue(t, ca, "node-1", now, "10.0.0.5", "10.0.0.5:8301", "db1.example.com.", "Node-1", "fd00::7", "")
	c := n.Cert

	wantDNS := []string{"node-1", "server.dc1.consul", "localhost", "syncthing", "db1.example.com"}
	if !slices.Equal(c.DNSNames, wantDNS) {
		t.Errorf("DNS SANs = %q, want %q", c.DNSNames, wantDNS)
	}
	var ips []string
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.0.0.5", "fd00::7"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
	for _, name := range []string{"node-1", "server.dc1.consul", "localhost", "127.0.0.1", "10.0.0.5", "syncthing"} {
		if err := c.VerifyHostname(name); err != nil {
			t.Errorf("VerifyHostname(%s): %v", name, err)
		}
	}
	if c.Subject.CommonName != "node-1" {
		t.Errorf("CN = %q, want node-1", c.Subject.CommonName)
	}
	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}; !slices.Equal(c.ExtKeyUsage, want) {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA {
		t.Errorf("KeyUsage = %v IsCA = %v, want DigitalSignature and not a CA", c.KeyUsage, c.IsCA)
	}
	if d := c.NotAfter.Sub(now) - NodeValidity; d < -time.Second || d > time.Second {
		t.Errorf("NotAfter = %v, want now + 2 years", c.NotAfter)
	}
	if !bytes.HasPrefix(n.KeyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("node key is not PKCS#8 PEM: %.40q", n.KeyPEM)
	}
	if bytes.Count(n.CertPEM, []byte("-----BEGIN ")) != 1 {
		t.Error("node.pem holds more than one certificate; Syncthing needs the leaf alone")
	}
	if _, err := LoadNodeCert(n.CertPEM, ca.KeyPEM); err == nil {
		t.Error("LoadNodeCert accepted the CA key for a node certificate")
	}
}

func TestIssueNodeRefuses(t *testing.T) {
	ca := newTestCA(t, "prod", time.Now())
	for _, tc := range []struct {
		name, node, dc string
		addrs          []string
	}{
		{"empty node", "", "dc1", nil},
		{"empty datacenter", "n1", "", nil},
		{"node name with a space", "node 1", "dc1", nil},
		{"address that is no name", "n1", "dc1", []string{"http://10.0.0.1/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.IssueNode(tc.node, tc.dc, tc.addrs, time.Now()); err == nil {
				t.Fatal("IssueNode accepted it")
			}
		})
	}
}

func TestIssueNodeNeverOutlivesCA(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	n := issue(t, ca, "n1", now.Add(9*365*24*time.Hour))
	if !n.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("NotAfter = %v, want the CA's %v", n.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	other := newTestCA(t, "prod", now) // same name, different key
	mine := issue(t, ca, "n1", now)
	foreign := issue(t, other, "n1", now)

	if got, err := ca.Verify(mine.CertPEM, now); err != nil || got.Subject.CommonName != "n1" {
		t.Fatalf("Verify(own certificate) = %v, %v", got, err)
	}
	if _, err := ca.Verify(mine.CertPEM, now.Add(NodeValidity-time.Hour)); err != nil {
		t.Errorf("Verify an hour before expiry: %v", err)
	}

	var unknown x509.UnknownAuthorityError
	if _, err := ca.Verify(foreign.CertPEM, now); !errors.As(err, &unknown) {
		t.Errorf("Verify(another CA's certificate) = %v, want x509.UnknownAuthorityError", err)
	}
	for _, at := range []time.Time{now.Add(NodeValidity + time.Hour), now.Add(-time.Hour)} {
		var invalid x509.CertificateInvalidError
		if _, err := ca.Verify(mine.CertPEM, at); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
			t.Errorf("Verify at %v = %v, want x509.Expired", at, err)
		}
	}
	if _, err := ca.Verify([]byte("not PEM"), now); err == nil {
		t.Error("Verify accepted garbage")
	}
}

// The CA moves with the cluster: a node that received the CA over the join
// call (LoadCA from PEM) signs certificates that every other node trusts.
func TestCAMovesWithCluster(t *testing.T) {
	now := time.Now()
	original := newTestCA(t, "prod", now)
	moved, err := LoadCA(original.CertPEM, original.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	joiner := issue(t, moved, "n2", now)
	if _, err := original.Verify(joiner.CertPEM, now); err != nil {
		t.Errorf("certificate signed by the moved CA does not verify against the original: %v", err)
	}
	first := issue(t, original, "n1", now)
	if _, err := moved.Verify(first.CertPEM, now); err != nil {
		t.Errorf("certificate signed by the original does not verify against the moved CA: %v", err)
	}
}

func TestExpiresIn(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	n := issue(t, ca, "n1", now)

	for _, tc := range []struct {
		name string
		at   time.Time
		warn bool
	}{
		{"fresh", now, false},
		{"31 days left", n.Cert.NotAfter.Add(-31 * 24 * time.Hour), false},
		{"29 days left", n.Cert.NotAfter.Add(-29 * 24 * time.Hour), true},
		{"expired", n.Cert.NotAfter.Add(time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ExpiresIn(n.CertPEM, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if want := n.Cert.NotAfter.Sub(tc.at); d != want {
				t.Errorf("ExpiresIn = %v, want %v", d, want)
			}
			if warn := d < ExpiryWarning; warn != tc.warn {
				t.Errorf("warn = %v, want %v (%v left)", warn, tc.warn, d)
			}
		})
	}
	if d, err := ExpiresIn(ca.CertPEM, now); err != nil || d < CAValidity-time.Minute {
		t.Errorf("ExpiresIn(CA) = %v, %v", d, err)
	}
	if _, err := ExpiresIn([]byte("nope"), now); err == nil {
		t.Error("ExpiresIn accepted garbage")
	}
}

func TestSANSetIPv4Mapped(t *testing.T) {
	var s sanSet
	for _, a := range []string{"::ffff:10.0.0.1", "10.0.0.1", "[fd00::1]:8300"} {
		if err := s.add(a); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.ips) != 2 || !s.ips[0].Equal(net.ParseIP("10.0.0.1")) || !s.ips[1].Equal(net.ParseIP("fd00::1")) {
		t.Errorf("ips = %v, want [10.0.0.1 fd00::1]", s.ips)
	}
}

// FuzzLoadCA: whatever PEM arrives over the join call or sits on disk,
// LoadCA returns an error or a real CA, and never panics.
func FuzzLoadCA(f *testing.F) {
	now := time.Now()
	ca := newTestCA(f, "fuzz", now)
	n := issue(f, ca, "n1", now)
	f.Add(ca.CertPEM, ca.KeyPEM)
	f.Add(n.CertPEM, n.KeyPEM)
	f.Add(ca.KeyPEM, ca.CertPEM)
	f.Add([]byte{}, []byte{})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		got, err := LoadCA(certPEM, keyPEM)
		_, _ = ExpiresIn(certPEM, now)
		_, _ = ca.Verify(certPEM, now)
		if err != nil {
			return
		}
		if !got.Cert.IsCA || !got.Key.PublicKey.Equal(got.Cert.PublicKey) {
			t.Fatalf("LoadCA accepted a non-CA or a mismatched key: %v", got.Cert.Subject)
		}
	})
}

// A PostgreSQL certificate serves and authenticates PostgreSQL's peers
// (server and client use), its CA alone vouches for it, and renewed it
// keeps its names: the cluster CA, which Consul trusts, does not.
func TestPostgresCertificate(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	pgCA, err := NewPostgresCA("prod", now)
	if err != nil {
		t.Fatal(err)
	}
	if pgCA.Cert.Subject.CommonName != "understudy prod PostgreSQL CA" {
		t.Errorf("postgres CA named %q", pgCA.Cert.Subject.CommonName)
	}
	pc, err := pgCA.IssuePostgres("n1", []string{"10.0.0.5"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(pc.Cert.DNSNames, "server.dc1.consul") {
		t.Errorf("postgres certificate names a consul server: %v", pc.Cert.DNSNames)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: now}
		opts.Roots.AddCert(pgCA.Cert)
		if _, err := pc.Cert.Verify(opts); err != nil {
			t.Errorf("postgres CA, usage %v: %v", usage, err)
		}
	}
	var unknown x509.UnknownAuthorityError
	if _, err := ca.Verify(pc.CertPEM, now); !errors.As(err, &unknown) {
		t.Errorf("the cluster CA verifies a postgres certificate: %v", err)
	}
	renewed, err := pgCA.RenewPostgres(pc.Cert, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(renewed.Cert.DNSNames, pc.Cert.DNSNames) || len(renewed.Cert.IPAddresses) != len(pc.Cert.IPAddresses) || renewed.Cert.Subject.CommonName != "n1" {
		t.Errorf("renewed %v %v, was %v %v", renewed.Cert.DNSNames, renewed.Cert.IPAddresses, pc.Cert.DNSNames, pc.Cert.IPAddresses)
	}
}
