package postgres

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/config"
)

// The names of the copies in cfg.TLSDir. On a node set up by cluster start
// or join they are copies of the PostgreSQL CA and certificate
// (certs.NewPostgresCA), not of the node's, whose key Consul accepts.
const (
	tlsCAName   = "ca.pem"
	tlsCertName = "postgres.pem"
	tlsKeyName  = "postgres-key.pem"
)

// tlsFiles are the copies of cfg's CA certificate, certificate and key in
// cfg.TLSDir, which both the server and every client understudy starts
// use: the certificate is for server and client authentication alike.
// All "" on a node without TLS.
type tlsFiles struct{ CA, Cert, Key string }

func tlsCopies(cfg config.Postgres) tlsFiles {
	if cfg.CertFile == "" {
		return tlsFiles{}
	}
	return tlsFiles{
		CA:   filepath.Join(cfg.TLSDir, tlsCAName),
		Cert: filepath.Join(cfg.TLSDir, tlsCertName),
		Key:  filepath.Join(cfg.TLSDir, tlsKeyName),
	}
}

// params are the libpq parameters of a connection with PostgreSQL's
// certificate; nil without TLS.
//
// verify-ca, not verify-full: the server must show a certificate the cluster
// CA signed, but its name is not checked, because a peer may be reached by
// an address its certificate's SANs do not name in every setup (a second
// interface, NAT, a DNS name added later). Every certificate that CA signs
// is a node of the cluster, which is what the check is for.
func (f tlsFiles) params() [][2]string {
	if f.Cert == "" {
		return nil
	}
	return [][2]string{{"sslmode", "verify-ca"}, {"sslrootcert", f.CA}, {"sslcert", f.Cert}, {"sslkey", f.Key}}
}

// authParams are the libpq parameters that log understudy's user in: the
// password file and the certificate, either or both.
func authParams(passFile string, tf tlsFiles) [][2]string {
	var kv [][2]string
	if passFile != "" {
		kv = append(kv, [2]string{"passfile", passFile})
	}
	return append(kv, tf.params()...)
}

// ConnString is the libpq connection string of cfg's server as cfg.User,
// the way understudy's own connections are made: with PostgreSQL's
// certificate on a TLS node, sslmode=prefer elsewhere. Every field is named
// so that PG* variables in the environment cannot point it at another
// server. The password, if any, is not in it.
func ConnString(cfg config.Postgres) string {
	kv := [][2]string{{"host", cfg.Host}, {"port", strconv.Itoa(cfg.Port)}, {"user", cfg.User}, {"dbname", cfg.Database}}
	if ssl := tlsCopies(cfg).params(); ssl != nil {
		return conninfo(append(kv, ssl...))
	}
	return conninfo(append(kv, [2]string{"sslmode", "prefer"}))
}

// copyTLS copies PostgreSQL's CA certificate, certificate and key into
// cfg.TLSDir for u (the directory 0700, the files 0600, all u's) and returns
// the copies; without TLS it does nothing. PostgreSQL's programs (the
// server, its walreceiver, pg_basebackup, pg_rewind) run as u and cannot
// read root's originals, and the server refuses a key others may read. The
// copies are outside the data directory, so that neither a clone nor a
// rewind carries them around, and root (the daemons' own connections) reads
// them too. It runs before everything that uses them (Init, Clone, Rewind,
// every start), so a renewed certificate is picked up at the next one.
func (i *Instance) copyTLS(u osUser) (tlsFiles, error) {
	dst := tlsCopies(i.cfg)
	if dst.Cert == "" {
		return dst, nil
	}
	fail := func(err error) (tlsFiles, error) {
		return tlsFiles{}, fmt.Errorf("copy the TLS files for postgres into %s: %w", i.cfg.TLSDir, err)
	}
	// MkdirAll leaves an existing directory's mode as it is.
	if err := os.MkdirAll(i.cfg.TLSDir, 0o700); err != nil {
		return fail(err)
	}
	if err := os.Chmod(i.cfg.TLSDir, 0o700); err != nil {
		return fail(err)
	}
	if err := u.chown(i.cfg.TLSDir); err != nil {
		return fail(err)
	}
	src, err := readPair(i.cfg)
	if err != nil {
		return fail(err)
	}
	for _, f := range []struct {
		b   []byte
		dst string
	}{{src[0], dst.CA}, {src[2], dst.Key}, {src[1], dst.Cert}} {
		if err := writeFileAtomic(f.dst, f.b, 0o600, u); err != nil {
			return fail(err)
		}
	}
	return dst, nil
}

// readPair reads the CA, certificate and key, the latter two again
// while they do not match: a renewal in another process replaces the key,
// then the certificate, and the copies must be one pair.
func readPair(cfg config.Postgres) ([3][]byte, error) {
	var out [3][]byte
	for attempt := 0; ; attempt++ {
		for j, f := range []string{cfg.CAFile, cfg.CertFile, cfg.KeyFile} {
			b, err := os.ReadFile(f)
			if err != nil {
				return out, fmt.Errorf("%w; `understudy cluster start` and `cluster join` write it (consul.ca_file, cert_file and key_file name it)", err)
			}
			out[j] = b
		}
		_, err := tls.X509KeyPair(out[1], out[2])
		if err == nil {
			return out, nil
		}
		if attempt == 10 {
			return out, fmt.Errorf("%s and %s are not a pair: %w", cfg.CertFile, cfg.KeyFile, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientAuth readies what a PostgreSQL program run as u logs in to a peer
// with (the password file, the TLS copies) and returns it as libpq
// parameters.
func (i *Instance) clientAuth(u osUser) ([][2]string, error) {
	pf, err := i.passfile(u)
	if err != nil {
		return nil, err
	}
	tf, err := i.copyTLS(u)
	if err != nil {
		return nil, err
	}
	return authParams(pf, tf), nil
}

// ReloadTLS copies PostgreSQL's TLS files to cfg.TLSDir again and, when the
// server runs, has it reload them (PostgreSQL reads ssl_cert_file and
// ssl_key_file again on a reload): after a renewal of the certificate,
// new connections see the new one, established ones keep theirs.
func (i *Instance) ReloadTLS(ctx context.Context) error {
	if tlsCopies(i.cfg).Cert == "" {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return err
	}
	if _, err := i.copyTLS(u); err != nil {
		return err
	}
	if _, running, err := i.Running(ctx); err != nil || !running {
		return err
	}
	err = i.withConn(ctx, func(conn *pgx.Conn) error {
		var ok bool
		return conn.QueryRow(ctx, "select pg_reload_conf()").Scan(&ok)
	})
	if err != nil {
		return fmt.Errorf("reload postgres at %s for its new certificate: %w", i.client.Addr(), err)
	}
	return nil
}
