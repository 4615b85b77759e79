package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// KeyPair is a certificate and key on disk that are read again when they
// change, so that a renewed node certificate (RenewBefore) reaches every TLS
// server and client of a running daemon without a restart. Files are
// replaced key first, then certificate (WriteFiles): a look between the two
// sees a pair that does not match, keeps the pair it had, and looks again.
type KeyPair struct {
	certFile, keyFile string
	// chain is appended to the certificate: the CA for a server whose
	// clients pin the CA's fingerprint (ServerTLS).
	chain [][]byte

	mu      sync.Mutex
	pair    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// recheck is how often Get looks at the files: often enough that a renewal
// is picked up at once, seldom enough to cost nothing per handshake.
const recheck = time.Second

// NewKeyPair reads the pair once, an error when it cannot be used.
func NewKeyPair(certFile, keyFile string, chain ...*x509.Certificate) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	for _, c := range chain {
		k.chain = append(k.chain, c.Raw)
	}
	st, err := k.stat()
	if err != nil {
		return nil, err
	}
	if err := k.load(st); err != nil {
		return nil, err
	}
	k.checked = time.Now()
	return k, nil
}

func (k *KeyPair) stat() ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, f := range []string{k.certFile, k.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("tls key pair: %w", err)
		}
		st[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return st, nil
}

func (k *KeyPair) load(st [2]fileStamp) error {
	pair, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("tls key pair %s, %s: %w", k.certFile, k.keyFile, err)
	}
	pair.Certificate = append(pair.Certificate[:1:1], k.chain...)
	k.pair, k.stamp = &pair, st
	return nil
}

// Get is the pair as the files hold it now, or the last good one while
// they cannot be read or do not match.
func (k *KeyPair) Get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < recheck {
		return k.pair
	}
	k.checked = time.Now()
	if st, err := k.stat(); err == nil && st != k.stamp {
		_ = k.load(st) // on error: the old pair, until the files match
	}
	return k.pair
}

// ServeWith makes cfg serve k's current pair.
func (k *KeyPair) ServeWith(cfg *tls.Config) {
	cfg.Certificates = nil
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.Get(), nil }
}

// PresentWith makes cfg present k's current pair as its client certificate.
func (k *KeyPair) PresentWith(cfg *tls.Config) {
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return k.Get(), nil }
}

// RenewBefore is how long before its expiry the check-runner renews the node
// certificate: well before ExpiryWarning, so that a renewal that fails
// (the CA key unreadable, a full disk) is reported by the certificates
// check for two months before anything stops working.
const RenewBefore = 90 * 24 * time.Hour

// Renew signs a new node certificate, with a new key, for the node and the
// names and addresses old has, valid NodeValidity from now.
func (ca *CA) Renew(old *x509.Certificate, now time.Time) (*NodeCert, error) {
	addrs := names(old)
	dc := ""
	for _, n := range old.DNSNames {
		if rest, ok := strings.CutPrefix(n, "server."); ok {
			if name, ok := strings.CutSuffix(rest, ".consul"); ok && name != "" {
				dc = name
			}
		}
	}
	if dc == "" {
		return nil, fmt.Errorf("renew %q: it names no server.<datacenter>.consul: not a node certificate of this cluster", old.Subject.CommonName)
	}
	return ca.IssueNode(old.Subject.CommonName, dc, addrs, now)
}

// ReadCert reads the certificate in the PEM file path.
func ReadCert(path string) (*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := parseCertPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ReissueNode signs the node certificate in p again with ca (Renew: its
// names and addresses, a new key), writes it and ca into p.Dir (the CA's
// key too when includeCAKey: a new CA), and refreshes the copies in copies
// when that directory exists (the Consul agent's, CopyFiles). It returns the
// new certificate and the one it replaced. A renewal passes the node's own
// CA, a replacement of the CA the new one.
func ReissueNode(p Paths, ca *CA, includeCAKey bool, copies string, now time.Time) (nc *NodeCert, old *x509.Certificate, err error) {
	if old, err = ReadCert(p.Cert); err != nil {
		return nil, nil, err
	}
	if nc, err = ca.Renew(old, now); err != nil {
		return nil, nil, err
	}
	if _, err := WriteFiles(p.Dir, ca, includeCAKey, nc, -1, -1); err != nil {
		return nil, nil, err
	}
	if copies == "" {
		return nc, old, nil
	}
	if _, err := os.Stat(copies); err == nil {
		if _, err := CopyFiles(p, copies); err != nil {
			return nil, nil, err
		}
	}
	return nc, old, nil
}

// RenewPostgres signs a new PostgreSQL certificate (IssuePostgres), with a
// new key, for the node and the names and addresses old has.
func (ca *CA) RenewPostgres(old *x509.Certificate, now time.Time) (*NodeCert, error) {
	return ca.IssuePostgres(old.Subject.CommonName, names(old), now)
}

// names are a certificate's SANs, DNS names and IP addresses alike.
func names(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}
