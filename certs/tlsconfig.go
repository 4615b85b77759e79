package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ServerTLS is the TLS configuration of the join API (and the handler-runner's
// HTTP API): it serves the node certificate followed by the CA certificate,
// so a joiner that has only the CA's fingerprint (PinnedClientTLS) can check
// the chain. It asks for a client certificate but checks none in the
// handshake: the join call authenticates by token and the joiner has no
// certificate yet, the load balancer's checks need none, and for the rest
// the API checks the certificate itself (VerifyClient against ClientCAs) so
// that a client with an expired or foreign one is told so in a JSON answer
// rather than by a TLS alert.
//
// The certificate and key are read again when they change (KeyPair): a
// renewed node certificate is served from the next handshake on.
func ServerTLS(p Paths) (*tls.Config, error) {
	caPEM, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, fmt.Errorf("server tls: %w", err)
	}
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("server tls: %s: %w", p.CA, err)
	}
	kp, err := NewKeyPair(p.Cert, p.Key, caCert)
	if err != nil {
		return nil, fmt.Errorf("server tls: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  pool,
	}
	kp.ServeWith(cfg)
	return cfg, nil
}

// ClientTLS is the TLS configuration of a client of the join API, of another
// node's HTTP API, or of Consul's HTTPS API: it trusts only the CA in caPEM
// (not the system roots), checks the server's name against the address
// dialled as usual, and presents clientCert when it is not nil (Consul's
// verify_incoming requires one).
func ClientTLS(caPEM []byte, clientCert *NodeCert) (*tls.Config, error) {
	caCert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("client tls: ca: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if clientCert != nil {
		pair, err := tls.X509KeyPair(clientCert.CertPEM, clientCert.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("client tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Fingerprint is "sha256:" and the hex SHA-256 of the certificate's DER,
// what `openssl x509 -fingerprint -sha256` shows (without the colons).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hashPrefix + hex.EncodeToString(sum[:])
}

// Fingerprint is the fingerprint of the CA certificate; `cluster start` can
// print it next to the join token for PinnedClientTLS.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// PinnedClientTLS is for a joiner, which does not have the CA yet: it accepts
// a server whose certificate chains to a CA with the given fingerprint, which
// the server (ServerTLS) sends after its own certificate. Without a pin the
// joiner would have to send its token to whoever answers at the address, and
// a man in the middle could use it to join and take the CA key. The server's
// name is not checked: the pinned CA signs only cluster nodes.
func PinnedClientTLS(caFingerprint string) (*tls.Config, error) {
	want := strings.ToLower(caFingerprint)
	if !strings.HasPrefix(want, hashPrefix) || len(want) != len(hashPrefix)+2*sha256.Size {
		return nil, fmt.Errorf("pinned client tls: fingerprint %q is not sha256:<64 hex digits>", caFingerprint)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification needs the CA in advance; this config
		// replaces it with VerifyConnection below, which always runs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, want)
		},
	}, nil
}

func verifyPinned(chain []*x509.Certificate, fingerprint string) error {
	if len(chain) == 0 {
		return errors.New("server sent no certificate")
	}
	for _, c := range chain[1:] {
		if Fingerprint(c) != fingerprint {
			continue
		}
		if !c.IsCA {
			return fmt.Errorf("certificate with fingerprint %s is not a CA", fingerprint)
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots:     roots,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("server certificate does not chain to the pinned CA: %w", err)
		}
		return nil
	}
	return fmt.Errorf("server did not present the CA with fingerprint %s", fingerprint)
}

// NodeTLS reads a node's TLS files and returns the configuration of its
// servers (ServerTLS) and of its clients of other nodes (ClientTLS with the
// node certificate as client certificate). Both follow a renewal of the
// node certificate (KeyPair).
func NodeTLS(p Paths) (server, client *tls.Config, err error) {
	if server, err = ServerTLS(p); err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, nil, err
	}
	kp, err := NewKeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, nil, err
	}
	if client, err = ClientTLS(caPEM, nil); err != nil {
		return nil, nil, err
	}
	kp.PresentWith(client)
	return server, client, nil
}
