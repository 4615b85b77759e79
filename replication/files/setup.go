package files

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The files Prepare owns in Home. cert.pem, key.pem and config.xml are the
// names Syncthing looks for with --home; apikey is ours.
const (
	certName   = "cert.pem"
	keyName    = "key.pem"
	configName = "config.xml"
	apiKeyName = "apikey"
	homeMode   = 0o700 // Syncthing's own mode for its home: keys and database
	secretMode = 0o600
)

// syncthingCertName is the name Syncthing checks a peer's certificate
// against when the device has no certName of its own (lib/connections: the
// CommonName, else VerifyHostname). Node certificates carry it as a SAN;
// the certificates Prepare generates carry it as CN and SAN, as Syncthing's
// own do.
const syncthingCertName = "syncthing"

// generatedCertLifetime is Syncthing's own (20 years). Syncthing never checks
// a peer certificate's validity period, only its device ID and name, and it
// never renews a device certificate: an expiry would only confuse readers.
const generatedCertLifetime = 20 * 365 * 24 * time.Hour

// Setup is what Prepare needs to lay out a node's Syncthing home.
type Setup struct {
	// Home is Syncthing's configuration and database directory,
	// <node.data_dir>/syncthing; created with mode 0700.
	Home string
	// NodeName is this node's device name, as its peers show it.
	NodeName string
	// Listen is host:port of the sync protocol, on the node's own address
	// only; Syncthing listens on tcp://Listen and nothing else.
	Listen string
	// APIAddress is host:port of the REST API (Syncthing's "GUI" address),
	// normally 127.0.0.1:port: the API key is its only protection.
	APIAddress string
	// CertFile and KeyFile are the node certificate and key, copied into
	// Home as cert.pem and key.pem (0600): the node's Syncthing identity.
	// Both "" (a node without TLS): a self-signed ECDSA P-256 certificate is
	// generated once and kept on later calls.
	CertFile, KeyFile string
}

// Prepare lays out s.Home for Syncthing: the identity, the API key and
// config.xml, whose GUI user and unknown password make the API key the
// only way into the REST API (see guiUser). It is idempotent and meant to run before every start of
// Syncthing: files that already say the right thing are not rewritten, the
// API key and a generated identity are kept, and an existing config.xml
// keeps the devices and folders Apply put there (only its GUI and options
// are replaced). It must not run while Syncthing runs from Home: Syncthing
// rewrites config.xml from memory whenever its configuration changes.
func Prepare(s Setup) error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	if err := os.MkdirAll(s.Home, homeMode); err != nil {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone; Syncthing would
	// chmod it at start, but the key is in it from now on.
	if err := os.Chmod(s.Home, homeMode); err != nil {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	if err := installIdentity(s); err != nil {
		return fmt.Errorf("prepare syncthing home %s: %w", s.Home, err)
	}
	myID, err := HomeDeviceID(s.Home)
	if err != nil {
		return fmt.Errorf("prepare syncthing home %s: %w", s.Home, err)
	}
	apiKey, err := ensureAPIKey(s.Home)
	if err != nil {
		return fmt.Errorf("prepare syncthing home %s: %w", s.Home, err)
	}
	path := filepath.Join(s.Home, configName)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	hash, err := guiPassword(old)
	if err != nil {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	cfg, err := renderConfig(old, configValues{
		myID: myID, nodeName: s.NodeName, listen: s.Listen, apiAddress: s.APIAddress, apiKey: apiKey,
		guiPasswordHash: hash,
	})
	if err != nil {
		return fmt.Errorf("prepare syncthing home: %s: %w", path, err)
	}
	if err := writeIfChanged(path, cfg, secretMode); err != nil {
		return fmt.Errorf("prepare syncthing home: %w", err)
	}
	return nil
}

func (s Setup) validate() error {
	if s.Home == "" {
		return errors.New("no home directory given")
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		return fmt.Errorf("listen address %q: %w; want host:port", s.Listen, err)
	}
	if _, _, err := net.SplitHostPort(s.APIAddress); err != nil {
		return fmt.Errorf("API address %q: %w; want host:port", s.APIAddress, err)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return fmt.Errorf("certificate %q and key %q: give both, or neither to generate one", s.CertFile, s.KeyFile)
	}
	return nil
}

// Command is the argv of the long-running Syncthing for home: in the
// foreground, logging to stdout, no browser, no restarts or upgrades of its
// own (understudy's supervisor restarts it, the package upgrades it). Run it
// without Syncthing's ST* variables in the environment: STGUIADDRESS, for
// one, would move the API away from APIAddress.
func Command(binary, home string) []string {
	return []string{binary, "serve",
		"--home=" + home,
		"--no-browser",
		"--no-restart",
		"--no-upgrade",
		// Both matter only without a config.xml, which Prepare writes;
		// they keep a Syncthing started without it from sharing a
		// default folder or taking other ports than the configured ones.
		"--no-default-folder",
		"--skip-port-probing",
		// Without it `syncthing serve` is a monitor process that runs the
		// real one as its child, --no-restart or not (cmd/syncthing,
		// monitorMain). The supervisor would hold the monitor's PID: a
		// SIGKILL would orphan the child, which keeps the ports and the
		// database lock, and the next start fails. This (hidden) flag is
		// what the monitor sets for its child (STMONITORED); the tests
		// check the PID started is the one serving.
		"--internal-inner-process",
	}
}

// ReadAPIKey returns the REST API key Prepare stored in home.
func ReadAPIKey(home string) (string, error) {
	path := filepath.Join(home, apiKeyName)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("syncthing API key: %w; Prepare writes it before Syncthing starts", err)
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return "", fmt.Errorf("syncthing API key: %s is empty; delete it and run Prepare again, then restart Syncthing", path)
	}
	return key, nil
}

// ensureAPIKey keeps the key in home/apikey, generating it the first time:
// a client that read it before a restart keeps working after it.
func ensureAPIKey(home string) (string, error) {
	key, err := ReadAPIKey(home)
	if err == nil {
		return key, nil
	}
	if _, statErr := os.Stat(filepath.Join(home, apiKeyName)); !errors.Is(statErr, fs.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate syncthing API key: %w", err)
	}
	// Hex needs no escaping in XML, HTTP headers or shells.
	key = hex.EncodeToString(b)
	if err := writeIfChanged(filepath.Join(home, apiKeyName), []byte(key+"\n"), secretMode); err != nil {
		return "", err
	}
	return key, nil
}

// installIdentity puts the node certificate and key into home once, or
// keeps or generates a self-signed pair when the node has none.
func installIdentity(s Setup) error {
	certPath, keyPath := filepath.Join(s.Home, certName), filepath.Join(s.Home, keyName)
	if s.CertFile == "" {
		_, certErr := os.Stat(certPath)
		_, keyErr := os.Stat(keyPath)
		if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
			return generateIdentity(certPath, keyPath)
		}
		// A broken pair is not replaced: a new key is a new device ID,
		// which every peer would have to learn.
		if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
			return fmt.Errorf("syncthing identity: %w; remove %s and %s to generate a new one (a new device ID)", err, certPath, keyPath)
		}
		return nil
	}
	// An identity installed before is kept, even after the node
	// certificate was renewed: the device ID is the certificate's hash,
	// which the peers know this device by, and Syncthing does not check
	// the validity dates of a device's certificate.
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return nil
	}
	certPEM, err := os.ReadFile(s.CertFile)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.KeyFile)
	if err != nil {
		return fmt.Errorf("node key: %w", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("node certificate %s and key %s: %w", s.CertFile, s.KeyFile, err)
	}
	if err := writeIfChanged(keyPath, keyPEM, secretMode); err != nil {
		return err
	}
	return writeIfChanged(certPath, certPEM, secretMode)
}

// generateIdentity writes a self-signed ECDSA P-256 certificate named
// "syncthing" (CN and DNS SAN), which peers accept under Syncthing's default
// certName.
func generateIdentity(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate syncthing key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("generate syncthing certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: syncthingCertName, Organization: []string{"understudy"}},
		DNSNames:              []string{syncthingCertName},
		NotBefore:             now.Add(-time.Hour).UTC(),
		NotAfter:              now.Add(generatedCertLifetime).UTC(),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("generate syncthing certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("generate syncthing key: %w", err)
	}
	if err := writeIfChanged(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), secretMode); err != nil {
		return err
	}
	return writeIfChanged(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), secretMode)
}

// writeIfChanged replaces path with data atomically (a temporary file in the
// same directory, synced, then renamed) unless it already holds exactly
// data with mode perm.
func writeIfChanged(path string, data []byte, perm fs.FileMode) (err error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == perm {
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes it 0600; Chmod for other modes, before any data.
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
