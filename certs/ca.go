package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

const (
	// CAValidity is how long a new CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// NodeValidity is how long a node certificate is valid (capped at the
	// CA's own expiry).
	NodeValidity = 2 * 365 * 24 * time.Hour
	// ExpiryWarning is when the check-runner starts warning that a
	// certificate (node or CA) needs renewing.
	ExpiryWarning = 30 * 24 * time.Hour

	// backdate moves NotBefore into the past so that a certificate signed on
	// a node whose clock runs ahead is already valid on the node that
	// receives it. Nodes are expected to run NTP; this covers small skews.
	backdate = 5 * time.Minute
)

// CA is the cluster's certificate authority: created once by `cluster
// start`, copied to every joining node (so whichever node is active can sign).
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NodeCert is one node's certificate and key. Cert may be nil when the value
// was built by hand from files; use LoadNodeCert to get it filled in.
type NodeCert struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// NewCA creates the cluster's CA: a self-signed P-256 root valid for ten
// years, named "understudy <cluster> CA", that may sign leaf certificates
// only (MaxPathLen 0).
func NewCA(clusterName string, now time.Time) (*CA, error) {
	if strings.TrimSpace(clusterName) == "" {
		return nil, errors.New("new ca: empty cluster name")
	}
	return newCA("understudy "+clusterName+" CA", now)
}

// NewPostgresCA creates the cluster's PostgreSQL CA, "understudy <cluster>
// PostgreSQL CA", like NewCA. It signs only PostgreSQL's certificates
// (IssuePostgres), and only PostgreSQL trusts it: a certificate it signed
// opens no Consul agent, whose TLS trusts the cluster CA alone. That is how
// the postgres OS user, which must hold its key (the server and
// walreceiver, pg_basebackup and pg_rewind read it), holds no key Consul
// accepts. Telling the two apart by extended key usage cannot work: the
// same certificate is PostgreSQL's server certificate and, for replication,
// a client certificate, and OpenSSL checks a client certificate's
// clientAuth usage as Go does, so whatever Consul refused PostgreSQL would
// refuse too.
func NewPostgresCA(clusterName string, now time.Time) (*CA, error) {
	if strings.TrimSpace(clusterName) == "" {
		return nil, errors.New("new postgres ca: empty cluster name")
	}
	return newCA("understudy "+clusterName+" PostgreSQL CA", now)
}

func newCA(commonName string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new ca: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   commonName,
			Organization: []string{"understudy"},
		},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(CAValidity).UTC(),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// SubjectKeyId is filled in by crypto/x509 for CA certificates.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new ca: sign: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	return LoadCA(encodeCert(der), keyPEM)
}

// LoadCA parses a CA from PEM (what WriteFiles wrote, or what the join call
// carried). It refuses a certificate that is not a CA allowed to sign
// certificates, that is not self-signed, or whose key is not the given key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca: certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("load ca: certificate %q is not a self-signed root: %w", cert.Subject.CommonName, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load ca: key does not match certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// IssueNode signs a certificate for node, valid for two years (never past the
// CA's expiry), for both server and client authentication. Its SANs are the
// node name, "server.<datacenter>.consul" (what Consul's
// verify_server_hostname checks), "localhost", "syncthing" (see the package
// doc), 127.0.0.1, ::1, and every entry of addrs: an IP becomes an IP SAN,
// anything else a DNS SAN; a "host:port" entry contributes its host.
func (ca *CA) IssueNode(node, datacenter string, addrs []string, now time.Time) (*NodeCert, error) {
	if node == "" || datacenter == "" {
		return nil, fmt.Errorf("issue node certificate: node (%q) and datacenter (%q) must be set", node, datacenter)
	}
	return ca.issue(node, append([]string{node, "server." + datacenter + ".consul", "localhost", "syncthing", "127.0.0.1", "::1"}, addrs...), now)
}

// IssuePostgres signs node's PostgreSQL certificate with the PostgreSQL CA
// (NewPostgresCA): server and client authentication, like a node
// certificate, valid as long, with the node name, "localhost", 127.0.0.1,
// ::1 and addrs as its SANs, and no Consul server name.
func (ca *CA) IssuePostgres(node string, addrs []string, now time.Time) (*NodeCert, error) {
	if node == "" {
		return nil, errors.New("issue postgres certificate: empty node name")
	}
	return ca.issue(node, append([]string{node, "localhost", "127.0.0.1", "::1"}, addrs...), now)
}

// issue signs a leaf certificate named node with names as its SANs.
func (ca *CA) issue(node string, names []string, now time.Time) (*NodeCert, error) {
	var sans sanSet
	for _, name := range names {
		if err := sans.add(name); err != nil {
			return nil, fmt.Errorf("issue node certificate for %s: %w", node, err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue node certificate: %w", err)
	}
	notAfter := now.Add(NodeValidity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: node, Organization: []string{"understudy"}},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              notAfter.UTC(),
		BasicConstraintsValid: true,
		// ECDSA keys sign; they never encipher keys, so DigitalSignature
		// is the only key usage.
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    sans.dns,
		IPAddresses: sans.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate for %s: sign: %w", node, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("issue node certificate for %s: %w", node, err)
	}
	return LoadNodeCert(encodeCert(der), keyPEM)
}

// LoadNodeCert parses a node certificate and its key from PEM and checks
// that they belong together. It does not check who signed it: see Verify.
func LoadNodeCert(certPEM, keyPEM []byte) (*NodeCert, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load node certificate: key does not match certificate %q", cert.Subject.CommonName)
	}
	return &NodeCert{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, nil
}

// Verify checks that the first certificate in certPEM was signed by this CA
// and is valid at now, and returns it. The error wraps crypto/x509's, so
// callers can tell an expired certificate (x509.CertificateInvalidError with
// Reason x509.Expired) from a foreign one (x509.UnknownAuthorityError).
func (ca *CA) Verify(certPEM []byte, now time.Time) (*x509.Certificate, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("verify certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("verify certificate %q against %q: %w", cert.Subject.CommonName, ca.Cert.Subject.CommonName, err)
	}
	return cert, nil
}

// ExpiresIn is how long until the first certificate in certPEM expires, for
// the check-runner: negative once it has expired, under ExpiryWarning is
// time to warn.
func ExpiresIn(certPEM []byte, now time.Time) (time.Duration, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return 0, fmt.Errorf("certificate expiry: %w", err)
	}
	return cert.NotAfter.Sub(now), nil
}

// sanSet collects SANs without duplicates, sorting each into DNS or IP.
type sanSet struct {
	dns  []string
	ips  []net.IP
	seen map[string]bool
}

func (s *sanSet) add(name string) error {
	name = strings.TrimSpace(name)
	if host, port, err := net.SplitHostPort(name); err == nil && isDigits(port) {
		name = host
	}
	if name == "" {
		return nil
	}
	if ip := net.ParseIP(name); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		s.once(ip.String(), func() { s.ips = append(s.ips, ip) })
		return nil
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !validDNSName(name) {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", name)
	}
	s.once(name, func() { s.dns = append(s.dns, name) })
	return nil
}

func (s *sanSet) once(key string, add func()) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if !s.seen[key] {
		s.seen[key] = true
		add()
	}
}

// validDNSName accepts what a node name or a resolvable host name looks
// like: dot-separated labels of letters, digits, '-' and '_' (Consul node
// names may contain '_'), at most 253 characters.
func validDNSName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// newSerial is a random 128-bit serial number, as RFC 5280 and the CA/B
// forum ask: unique without any state shared between the nodes that sign.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// encodeKey writes PKCS#8 ("PRIVATE KEY"), which Consul, Syncthing, Go and
// OpenSSL all read.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCertPEM returns the first CERTIFICATE block of data, skipping any
// other blocks before it.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE block in PEM data")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return cert, nil
		}
	}
}

// parseKeyPEM returns the first private key in data, PKCS#8 or SEC 1 (what
// `consul tls` and OpenSSL write), which must be ECDSA.
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY block in PEM data")
		}
		switch block.Type {
		case "EC PRIVATE KEY":
			key, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse EC private key: %w", err)
			}
			return key, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
			}
			key, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, want ECDSA", k)
			}
			return key, nil
		}
	}
}
