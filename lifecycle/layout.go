package lifecycle

import (
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/jsonfile"
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
	found, err = jsonfile.Read(layout{dataDir}.identity(), &id)
	return id, found, err
}

func writeIdentity(dataDir string, id Identity) error {
	return jsonfile.Write(layout{dataDir}.identity(), id)
}
