package certs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// The conventional file names in a node's TLS directory
// (/etc/understudy/tls by default, see internal/config).
const (
	CAFile     = "ca.pem"
	CAKeyFile  = "ca-key.pem"
	CertFile   = "node.pem"
	KeyFile    = "node-key.pem"
	publicMode = 0o644 // the CA certificate: public, other users verify with it
	secretMode = 0o600 // keys, and the node certificate with them
	dirMode    = 0o755 // only when WriteFiles creates dir: the files protect themselves
)

// The PostgreSQL CA's and the node's PostgreSQL certificate's files, beside
// the node's (NewPostgresCA says why PostgreSQL has a CA of its own).
const (
	PostgresCAFile    = "postgres-ca.pem"
	PostgresCAKeyFile = "postgres-ca-key.pem"
	PostgresCertFile  = "postgres.pem"
	PostgresKeyFile   = "postgres-key.pem"
)

// PostgresPaths returns the PostgreSQL CA's and certificate's names in dir,
// whether or not the files exist.
func PostgresPaths(dir string) Paths {
	return Paths{
		Dir:   dir,
		CA:    filepath.Join(dir, PostgresCAFile),
		CAKey: filepath.Join(dir, PostgresCAKeyFile),
		Cert:  filepath.Join(dir, PostgresCertFile),
		Key:   filepath.Join(dir, PostgresKeyFile),
	}
}

// Paths are the node's TLS files.
type Paths struct {
	Dir   string
	CA    string // ca.pem
	CAKey string // ca-key.pem; "" when WriteFiles was told not to write it
	Cert  string // node.pem
	Key   string // node-key.pem
}

// ReadPaths returns the conventional names in dir, whether or not the files
// exist.
func ReadPaths(dir string) Paths {
	return Paths{
		Dir:   dir,
		CA:    filepath.Join(dir, CAFile),
		CAKey: filepath.Join(dir, CAKeyFile),
		Cert:  filepath.Join(dir, CertFile),
		Key:   filepath.Join(dir, KeyFile),
	}
}

// WriteFiles writes the node's TLS files into dir (created if missing):
// ca.pem (0644), ca-key.pem (0600, only when includeCAKey), node-key.pem and
// node.pem (0600). Each file is replaced atomically; when uid or gid is >= 0
// the files are chowned to it (-1 leaves that id alone), which needs root.
// The node key is written before the node certificate, so a reader that
// reloads after WriteFiles returns always finds a matching pair; readers
// should reload only then. An existing ca-key.pem is left alone when
// includeCAKey is false.
func WriteFiles(dir string, ca *CA, includeCAKey bool, n *NodeCert, uid, gid int) (Paths, error) {
	return writeSet(ReadPaths(dir), ca, includeCAKey, n, uid, gid)
}

// WritePostgresFiles writes the PostgreSQL CA and the node's PostgreSQL
// certificate into dir (PostgresPaths) the way WriteFiles writes the
// node's; root's files, which PostgreSQL gets copies of.
func WritePostgresFiles(dir string, ca *CA, includeCAKey bool, n *NodeCert) (Paths, error) {
	return writeSet(PostgresPaths(dir), ca, includeCAKey, n, -1, -1)
}

func writeSet(p Paths, ca *CA, includeCAKey bool, n *NodeCert, uid, gid int) (Paths, error) {
	if ca == nil || n == nil {
		return Paths{}, errors.New("write tls files: CA and node certificate are both required")
	}
	dir := p.Dir
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return Paths{}, fmt.Errorf("write tls files: %w", err)
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{p.CA, ca.CertPEM, publicMode},
		{p.CAKey, ca.KeyPEM, secretMode},
		{p.Key, n.KeyPEM, secretMode},
		{p.Cert, n.CertPEM, secretMode},
	}
	if !includeCAKey {
		files = append(files[:1], files[2:]...)
		p.CAKey = ""
	}
	for _, f := range files {
		if err := writeFileAtomic(f.path, f.data, f.mode, uid, gid); err != nil {
			return Paths{}, fmt.Errorf("write tls files: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return Paths{}, fmt.Errorf("write tls files: %w", err)
	}
	return p, nil
}

// writeFileAtomic writes data to a temporary file next to path, sets its mode
// and owner before any data is in it that another user could read, fsyncs
// it and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	if len(data) == 0 {
		return fmt.Errorf("%s: nothing to write", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// Chmod, not the create mode: the umask must not change what we ask for.
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// syncDir makes the renames durable: without it a crash can bring back the
// old directory entries after WriteFiles returned.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// GossipKeyFile is where cluster start and join keep the Consul gossip key,
// in the node's TLS directory (0600): the active hands it to joining nodes.
const GossipKeyFile = "gossip.key"

// CopyFiles copies the node's CA certificate, certificate and key of src
// into dir (created 0700 if missing), owned by dir's owner: the copies a
// process of another user reads (the Consul agent runs as a user of its
// own, and must not read the CA key beside them). The key is copied before
// the certificate, as WriteFiles writes them.
func CopyFiles(src Paths, dir string) (Paths, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Paths{}, fmt.Errorf("copy tls files: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return Paths{}, fmt.Errorf("copy tls files: %w", err)
	}
	uid, gid := ownerOf(fi)
	dst := ReadPaths(dir)
	dst.CAKey = ""
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{src.CA, dst.CA, publicMode}, {src.Key, dst.Key, secretMode}, {src.Cert, dst.Cert, secretMode}} {
		data, err := os.ReadFile(f.from)
		if err != nil {
			return Paths{}, fmt.Errorf("copy tls files: %w", err)
		}
		if err := writeFileAtomic(f.to, data, f.mode, uid, gid); err != nil {
			return Paths{}, fmt.Errorf("copy tls files to %s: %w", dir, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return Paths{}, fmt.Errorf("copy tls files: %w", err)
	}
	return dst, nil
}

// ownerOf is the owner and group of a file, to give its copies.
func ownerOf(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}
