package checkrunner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/clusterlog"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// renewRetry is how long after a failed renewal the check-runner tries
// again; the certificates check reports the expiry meanwhile.
const renewRetry = time.Hour

// Renewed is what RenewCertificate did.
type Renewed struct {
	Serial   string
	NotAfter time.Time
	// PostgresSerial is the serial of PostgreSQL's new certificate; ""
	// on a node without a PostgreSQL CA.
	PostgresSerial string
	// Reloaded names what took the new certificate at once; the rest
	// (an agent or PostgreSQL that is down) read it when they start.
	Reloaded []string
}

// RenewCertificate signs a new node certificate with the cluster's CA (its
// key is on every node), with the names and addresses of the old one,
// replaces the node's TLS files, renews PostgreSQL's certificate with it
// (renewPostgres), and has Consul's agent and PostgreSQL load theirs. The daemons' own servers and clients follow the files by themselves
// (certs.KeyPair). Syncthing keeps the identity it was given: its device ID
// is the certificate's hash, which its peers know it by, and it does not
// look at the validity of a peer's certificate. The check-runner calls it
// RenewBefore the expiry; `understudy certs renew` any time.
func RenewCertificate(ctx context.Context, cfg *config.Config, cc *consul.Client, log *slog.Logger, by string) (Renewed, error) {
	var out Renewed
	if !cfg.TLS() {
		return out, errors.New("this node was not set up by cluster start or join (no TLS): it has no certificate to renew")
	}
	dir, err := cfg.NodeTLSDir()
	if err != nil {
		return out, err
	}
	paths := certs.ReadPaths(dir)
	// One renewal at a time (the check-runner's and certs renew's), so
	// that the key and certificate on disk are one pair.
	unlock, err := lockDir(dir)
	if err != nil {
		return out, fmt.Errorf("renew the node certificate: %w", err)
	}
	defer unlock()
	ca, err := certs.ReadCA(paths)
	if err != nil {
		return out, fmt.Errorf("renew the node certificate: %w", err)
	}
	// The Consul agent reads copies of its own (cluster start and join made
	// them, owned by its user): they follow before it reloads.
	nc, old, err := certs.ReissueNode(paths, ca, false, cfg.ConsulAgentTLSDir(), time.Now())
	if err != nil {
		return out, fmt.Errorf("renew the node certificate: %w", err)
	}
	if out.PostgresSerial, err = renewPostgres(dir, time.Now()); err != nil {
		return out, fmt.Errorf("renew the postgresql certificate: %w", err)
	}
	out.Serial, out.NotAfter = nc.Cert.SerialNumber.Text(16), nc.Cert.NotAfter
	log.Info("node certificate renewed", "serial", out.Serial, "not_after", out.NotAfter, "previous_not_after", old.NotAfter, "by", by)

	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := cc.ReloadAgent(rctx); err != nil {
		log.Warn("the consul agent did not reload; it reads the new certificate when it restarts", "err", err)
	} else {
		out.Reloaded = append(out.Reloaded, "consul")
	}
	pg := postgres.NewInstance(cfg.Postgres, cfg.Node.Name, log)
	if err := pg.ReloadTLS(rctx); err != nil {
		log.Warn("postgres did not reload; it reads the new certificate when it restarts", "err", err)
	} else {
		out.Reloaded = append(out.Reloaded, "postgres")
	}
	ev := cluster.Event{Node: cfg.Node.Name, Time: time.Now().UTC(), Kind: cluster.EventCertificate,
		Reason:  fmt.Sprintf("node certificate renewed, valid until %s", out.NotAfter.UTC().Format(time.DateOnly)),
		Details: map[string]string{"serial": out.Serial, "not_after": out.NotAfter.UTC().Format(time.RFC3339), "by": by}}
	clog := clusterlog.New(cfg.ClusterLogPath())
	if err := errors.Join(clog.Write(ev), clog.Close()); err != nil {
		log.Warn("cannot write the renewal to cluster.log", "err", err)
	}
	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	if _, err := cc.AppendEvent(rctx, keys.Events(), cfg.Node.Name, ev); err != nil {
		log.Warn("cannot record the renewal in the history", "err", err)
	}
	return out, nil
}

// renewPostgres renews the node's PostgreSQL certificate (certs.NewPostgresCA)
// along with the node certificate: the two are signed together and expire
// together. A node whose TLS directory has no PostgreSQL CA (set up before
// PostgreSQL had one) has nothing to renew.
func renewPostgres(dir string, now time.Time) (serial string, err error) {
	p := certs.PostgresPaths(dir)
	if _, err := os.Stat(p.CA); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	ca, err := certs.ReadCA(p)
	if err != nil {
		return "", err
	}
	old, err := certs.ReadCert(p.Cert)
	if err != nil {
		return "", err
	}
	pc, err := ca.RenewPostgres(old, now)
	if err != nil {
		return "", err
	}
	if _, err := certs.WritePostgresFiles(dir, ca, false, pc); err != nil {
		return "", err
	}
	return pc.Cert.SerialNumber.Text(16), nil
}

// maybeRenew renews the node certificate once it expires within
// certs.RenewBefore, trying again renewRetry after a failure.
func (r *Runner) maybeRenew(ctx context.Context, o *observation, now time.Time) {
	if len(o.certs) == 0 || now.Before(r.renewAt) {
		return
	}
	node := o.certs[0]
	if node.err != nil || node.expiresIn >= certs.RenewBefore {
		return
	}
	// A node certificate never outlives the CA: once it ends with the CA, a
	// renewal would give the same expiry again. The certificates check
	// warns of the CA's.
	if len(o.certs) > 1 && o.certs[1].err == nil && node.expiresIn >= o.certs[1].expiresIn-time.Hour {
		return
	}
	// In the background: the reloads must not hold up the check reports.
	// Not before renewRetry again: a renewal that worked shows in the next
	// observation, one that did not is retried then.
	r.renewAt = now.Add(renewRetry)
	r.bg.Go(func() {
		if _, err := RenewCertificate(ctx, r.cfg, r.consul, r.log, "check-runner"); err != nil {
			r.log.Warn("cannot renew the node certificate; trying again in an hour", "expires_in", node.expiresIn.Round(time.Hour), "err", err)
		}
	})
}

// lockDir takes an exclusive flock on dir/.renew.lock, waiting for a
// renewal in progress.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".renew.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
