package lifecycle

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/clusterlog"
	"github.com/understudy-ha/understudy/internal/config"
)

// Replacing the cluster's CA (understudy certs new-ca, then certs
// replace-ca on every node) takes the cluster down for as long as it takes
// to run on each node: a node's Consul server, API and Syncthing trust the
// one CA in its TLS directory, so a node on the new CA and one on the old
// cannot talk. The README's "Replacing the cluster CA" is the procedure:
// node stop everywhere, new-ca on one node, the new CA copied to the
// others, replace-ca on each, node start (the old active first). The
// PostgreSQL CA is another CA and stays; so does Syncthing's identity (its
// device ID is the hash of the certificate it was set up with).

// ReplacedCA is what ReplaceCA did.
type ReplacedCA struct {
	// Fingerprint is the new CA's.
	Fingerprint string
	// Aside is where the old CA, its key and the old node certificate
	// and key were moved.
	Aside string
	// Serial and NotAfter are the new node certificate's.
	Serial   string
	NotAfter time.Time
}

// ReplaceCA makes ca the node's CA: the node certificate is signed again by
// it (the same names and addresses, a new key), the old CA, its key and the
// old node certificate and key are moved aside (never deleted), the Consul
// agent's copies follow, and the node's identity records the new
// fingerprint. It refuses while the node's Consul agent or API answers:
// run `understudy node stop` first.
func ReplaceCA(cfg *config.Config, ca *certs.CA, now time.Time) (ReplacedCA, error) {
	var out ReplacedCA
	if !cfg.TLS() {
		return out, errors.New("this node was not set up by cluster start or join (no TLS): it has no CA to replace")
	}
	id, found, err := ReadIdentity(cfg.Node.DataDir)
	if err != nil {
		return out, err
	}
	if !found {
		return out, fmt.Errorf("%s is in no cluster (no %s): nothing to replace", cfg.Node.Name, layout{cfg.Node.DataDir}.identity())
	}
	for what, addr := range map[string]string{"its Consul agent": cfg.Consul.Address, "its API": cfg.API.Listen} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return out, fmt.Errorf("%s answers at %s: the node runs; run understudy node stop on every node first (a node on the new CA and one on the old cannot talk)", what, addr)
		}
	}
	dir, err := cfg.NodeTLSDir()
	if err != nil {
		return out, err
	}
	paths := certs.ReadPaths(dir)
	if ca.Fingerprint() == id.CAFingerprint {
		return out, fmt.Errorf("%s already has the CA %s", cfg.Node.Name, id.CAFingerprint)
	}
	// Aside first, copied: until the new files are in place the old ones
	// stay where they are.
	aside := filepath.Join(dir, "replaced-"+now.UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return out, fmt.Errorf("replace the CA: keep the old files aside: %w", err)
	}
	for _, p := range []string{paths.CA, paths.CAKey, paths.Cert, paths.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			return out, fmt.Errorf("replace the CA: keep the old files aside: %w", err)
		}
		if err := os.WriteFile(filepath.Join(aside, filepath.Base(p)), b, 0o600); err != nil {
			return out, fmt.Errorf("replace the CA: keep the old files aside: %w", err)
		}
	}
	nc, _, err := certs.ReissueNode(paths, ca, true, cfg.ConsulAgentTLSDir(), now)
	if err != nil {
		return out, fmt.Errorf("replace the CA: %w; the old files are in %s", err, aside)
	}
	out = ReplacedCA{Fingerprint: ca.Fingerprint(), Aside: aside, Serial: nc.Cert.SerialNumber.Text(16), NotAfter: nc.Cert.NotAfter}
	id.CAFingerprint = out.Fingerprint
	if err := writeIdentity(cfg.Node.DataDir, id); err != nil {
		return out, err
	}
	// Consul is down: the history (events in Consul) cannot have it, the
	// node's cluster.log does.
	clog := clusterlog.New(cfg.ClusterLogPath())
	ev := cluster.Event{Node: cfg.Node.Name, Time: now.UTC(), Kind: cluster.EventCertificate,
		Reason:  "cluster CA replaced by " + out.Fingerprint + "; node certificate signed again; the old files are in " + aside,
		Details: map[string]string{"ca_fingerprint": out.Fingerprint, "serial": out.Serial, "aside": aside}}
	if err := errors.Join(clog.Write(ev), clog.Close()); err != nil {
		return out, fmt.Errorf("the CA was replaced, but cluster.log could not say so: %w", err)
	}
	return out, nil
}
