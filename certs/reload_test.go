package certs

import (
	"crypto/tls"
	"slices"
	"testing"
	"time"
)

// TestRenewedCertificateIsServedWithoutARestart: a server made by ServerTLS
// serves the renewed node certificate once WriteFiles replaced the files,
// with the old one's names and addresses, and a client made by NodeTLS
// presents it.
func TestRenewedCertificateIsServedWithoutARestart(t *testing.T) {
	ca := newTestCA(t, "prod", time.Now())
	n := newTLSNode(t, ca, "n1")
	srv := serve(t, n.p)
	_, client, err := NodeTLS(n.p)
	if err != nil {
		t.Fatal(err)
	}
	served := func() (serial string, err error) {
		conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), client)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	if s, err := served(); err != nil || s != n.n.Cert.SerialNumber.String() {
		t.Fatalf("before the renewal: serial %s, %v; want %s", s, err, n.n.Cert.SerialNumber)
	}

	renewed, err := ca.Renew(n.n.Cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(renewed.Cert.DNSNames, n.n.Cert.DNSNames) || len(renewed.Cert.IPAddresses) != len(n.n.Cert.IPAddresses) {
		t.Fatalf("renewed names %v %v, want %v %v", renewed.Cert.DNSNames, renewed.Cert.IPAddresses, n.n.Cert.DNSNames, n.n.Cert.IPAddresses)
	}
	if _, err := WriteFiles(n.p.Dir, ca, false, renewed, -1, -1); err != nil {
		t.Fatal(err)
	}
	want := renewed.Cert.SerialNumber.String()
	var got string
	for deadline := time.Now().Add(5 * time.Second); got != want && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, err = served(); err != nil {
			t.Fatal(err)
		}
	}
	if got != want {
		t.Fatalf("5 s after the renewal the server still serves serial %s, want %s", got, want)
	}
	// The client side: the server sees the renewed certificate too.
	if body, err := get(srv, client); err != nil || body != "node n1" {
		t.Fatalf("the renewed client certificate: %q, %v", body, err)
	}
}

func TestRenewRefusesACertificateThatIsNoNodes(t *testing.T) {
	ca := newTestCA(t, "prod", time.Now())
	op, err := ca.IssueOperator("alice", 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Renew(op.Cert, time.Now()); err == nil {
		t.Fatal("Renew of an operator certificate succeeded")
	}
}
