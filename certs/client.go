package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Role is what a client certificate of the cluster's CA lets its holder do
// on the node API.
type Role string

const (
	// RoleNode is a node certificate: what peers call of each other
	// (status, events, lease grants), read-only for an operator.
	RoleNode Role = "node"
	// RoleOperator is an operator certificate: also what changes the
	// cluster (switchover, removal, options).
	RoleOperator Role = "operator"
)

// OperatorValidity is how long an operator certificate is valid: a year,
// shorter than a node's, since it leaves the cluster's machines.
const OperatorValidity = 365 * 24 * time.Hour

// operatorUnit marks an operator certificate (its subject's OU). A node
// certificate has none: the certificates of clusters made before operator
// certificates existed keep their rights.
const operatorUnit = "operator"

// IssueOperator signs an operator certificate for name: client
// authentication only (it cannot serve the API, Consul or Syncthing, and
// Consul's verify_server_hostname refuses it as a server), valid for
// validity (OperatorValidity when 0), never past the CA's expiry.
func (ca *CA) IssueOperator(name string, validity time.Duration, now time.Time) (*NodeCert, error) {
	if name == "" {
		return nil, errors.New("issue operator certificate: a name is required, e.g. alice")
	}
	if validity <= 0 {
		validity = OperatorValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue operator certificate: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue operator certificate: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"understudy"}, OrganizationalUnit: []string{operatorUnit}},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              notAfter.UTC(),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue operator certificate for %s: sign: %w", name, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("issue operator certificate for %s: %w", name, err)
	}
	return LoadNodeCert(encodeCert(der), keyPEM)
}

// Client is who presented a client certificate, once VerifyClient has
// checked it.
type Client struct {
	Name string // the certificate's common name: the node or the operator
	Role Role
}

// String is how events and logs name the caller: "operator alice",
// "node n2".
func (c Client) String() string { return string(c.Role) + " " + c.Name }

// VerifyClient checks a client's certificate chain (leaf first, as
// tls.ConnectionState.PeerCertificates holds it) against the cluster CA in
// roots at now, for client authentication, and tells what it may do. The
// API's TLS asks for a certificate without checking it in the handshake
// (ServerTLS), so that this check can answer with a message that says what
// is wrong instead of a TLS alert. A certificate for client authentication
// that is neither an operator's nor a node's (one with server
// authentication too) has no role.
func VerifyClient(roots *x509.CertPool, chain []*x509.Certificate, now time.Time) (Client, error) {
	if len(chain) == 0 {
		return Client{}, errors.New("no client certificate")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return Client{}, fmt.Errorf("client certificate %q is not valid now (valid %s to %s)", leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly))
	case errors.As(err, &unknown):
		return Client{}, fmt.Errorf("client certificate %q is not signed by this cluster's CA", leaf.Subject.CommonName)
	case err != nil:
		return Client{}, fmt.Errorf("client certificate %q: %w", leaf.Subject.CommonName, err)
	}
	c := Client{Name: leaf.Subject.CommonName}
	switch {
	case slices.Contains(leaf.Subject.OrganizationalUnit, operatorUnit):
		c.Role = RoleOperator
	case slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth):
		c.Role = RoleNode
	default:
		return Client{}, fmt.Errorf("client certificate %q is neither a node's nor an operator's", leaf.Subject.CommonName)
	}
	return c, nil
}

// ReadCA loads the CA certificate and key a node keeps in its TLS
// directory (p.CA and p.CAKey): what signs a joiner's or an operator's
// certificate. Only root (or the agents' user) can read the key.
func ReadCA(p Paths) (*CA, error) {
	certPEM, err := os.ReadFile(p.CA)
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	keyPEM, err := os.ReadFile(p.CAKey)
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA's key: %w; run this on a node of the cluster, as root", err)
	}
	return LoadCA(certPEM, keyPEM)
}

// WriteCA writes ca's certificate (0644) and key (0600) into dir (made 0700
// when missing) as ca.pem and ca-key.pem, refusing to replace either.
func WriteCA(dir string, ca *CA) (Paths, error) {
	p := ReadPaths(dir)
	if err := writePair(dir, 0o700, p.CA, ca.CertPEM, p.CAKey, ca.KeyPEM, false, "the CA", "choose another directory"); err != nil {
		return Paths{}, err
	}
	return p, nil
}

// WriteOperator writes an operator's certificate and key into dir as
// NAME.pem (0644) and NAME-key.pem (0600), refusing to replace either
// unless replace is set, and returns their paths.
func WriteOperator(dir, name string, c *NodeCert, replace bool) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	err = writePair(dir, dirMode, certPath, c.CertPEM, keyPath, c.KeyPEM, replace, "the operator certificate",
		"remove it, choose another --out, or pass --force to replace it")
	if err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// writePair writes a certificate (0644) and its key (0600, first) into dir,
// made with mode when missing. Unless replace, it refuses when either file
// exists, saying so and what to do (hint).
func writePair(dir string, mode os.FileMode, certPath string, certPEM []byte, keyPath string, keyPEM []byte, replace bool, what, hint string) error {
	if !replace {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists; %s", p, hint)
			}
		}
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	if err := writeFileAtomic(keyPath, keyPEM, secretMode, -1, -1); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	if err := writeFileAtomic(certPath, certPEM, publicMode, -1, -1); err != nil {
		return fmt.Errorf("write %s: %w", what, err)
	}
	return syncDir(dir)
}
