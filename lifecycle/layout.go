package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/certs"
)

// layout is where a node in a cluster keeps what lifecycle writes, under
// node.data_dir.
type layout struct{ dir string }

func (l layout) tls() string          { return filepath.Join(l.dir, "tls") }
func (l layout) consul() string       { return filepath.Join(l.dir, "consul") }
func (l layout) consulConfig() string { return filepath.Join(l.dir, "consul", "config") }
func (l layout) consulData() string   { return filepath.Join(l.dir, "consul", "data") }
func (l layout) gossipKey() string    { return filepath.Join(l.dir, "tls", certs.GossipKeyFile) }
func (l layout) services() string     { return filepath.Join(l.dir, "services") }
func (l layout) identity() string     { return filepath.Join(l.dir, "cluster.json") }

// Identity says which cluster the node belongs to; its file is what makes
// a node "already in a cluster".
type Identity struct {
	Cluster       string    `json:"cluster"`
	Node          string    `json:"node"`
	CAFingerprint string    `json:"ca_fingerprint"`
	Since         time.Time `json:"since"`
	How           string    `json:"how"` // "start" or "join"
	// UnitDir is where the node's systemd units are, for a node whose
	// processes run as units (Options.Systemd); "" for supervised ones.
	UnitDir string `json:"unit_dir,omitempty"`
}

// ReadIdentity reads the node's identity; found is false for a node in no
// cluster.
func ReadIdentity(dataDir string) (id Identity, found bool, err error) {
	path := layout{dataDir}.identity()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, true, fmt.Errorf("read %s: %w", path, err)
	}
	return id, true, nil
}

func writeIdentity(dataDir string, id Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	path := layout{dataDir}.identity()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}
