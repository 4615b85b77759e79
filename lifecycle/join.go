package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/wait"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// JoinOptions are Join's own, besides Options.
type JoinOptions struct {
	// Active is the host:port of the active node's API.
	Active string
	// Token is the join token cluster start or cluster token printed.
	Token string
	// CAFingerprint is the cluster CA's fingerprint cluster start printed:
	// the joiner sends its token only to a server whose chain has that CA.
	CAFingerprint string
	// Force joins a node that has a database or a cluster identity: its
	// data directory is moved aside by the clone, never deleted.
	Force bool
}

// Join makes this node a standby of an existing cluster: it asks the active
// node's join API (over TLS, the CA pinned by its fingerprint) for the
// cluster's CA and Consul settings, signs its own certificate, joins Consul,
// clones PostgreSQL from the active (progress on Out), starts the daemons and
// returns once the node streams from the active. On failure it leaves
// Consul and undoes what it did.
func Join(ctx context.Context, cfg *config.Config, o Options, j JoinOptions) (err error) {
	o.defaults()
	if cfg.Consul.Scheme != "https" {
		return fmt.Errorf("cluster join sets Consul up with TLS: write consul { scheme = \"https\" } in %s", cfg.Path)
	}
	if j.CAFingerprint == "" || j.Token == "" {
		return errors.New("cluster join needs a join token (--token-file) and --ca-fingerprint, both printed by `understudy cluster start` or `understudy cluster token`")
	}
	l := layout{cfg.Node.DataDir}
	pg := postgres.NewInstance(cfg.Postgres, cfg.Node.Name, slog.New(slog.DiscardHandler))
	if id, found, err := ReadIdentity(cfg.Node.DataDir); err != nil {
		return err
	} else if found && !j.Force {
		return fmt.Errorf("%w: node %s has been in cluster %s since %s; pass --force to join anew (its PostgreSQL data is kept aside)",
			ErrInCluster, id.Node, id.Cluster, id.Since.Format(time.RFC3339))
	}
	if pg.HasData() && !j.Force {
		return fmt.Errorf("%s holds a PostgreSQL data directory; joining replaces it with a clone of the active node's: pass --force (it is kept aside as %s.old-<time>)", cfg.Postgres.DataDir, cfg.Postgres.DataDir)
	}
	if err := checkPostgresDataDir(cfg.Postgres.DataDir); err != nil {
		return err
	}
	if err := checkTokenFile(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Node.DataDir, 0o755); err != nil {
		return err
	}

	fmt.Fprintf(o.Out, "asking %s to join its cluster\n", j.Active)
	resp, err := askJoin(ctx, cfg, o, j)
	if err != nil {
		return err
	}
	if resp.Cluster != cfg.Cluster.Name {
		return fmt.Errorf("%s is the active node of cluster %s, but %s names cluster %s; write cluster { name = %q }", j.Active, resp.Cluster, cfg.Path, cfg.Cluster.Name, resp.Cluster)
	}

	u := &undo{log: o.Out}
	defer func() {
		if err != nil {
			u.run()
		}
	}()
	ca, err := certs.LoadCA([]byte(resp.CACert), []byte(resp.CAKey))
	if err != nil {
		return fmt.Errorf("the CA the active node sent: %w", err)
	}
	nc, err := ca.IssueNode(cfg.Node.Name, datacenter, []string{cfg.Node.Address}, time.Now())
	if err != nil {
		return err
	}
	// A join run again after one that was killed finds that run's files:
	// they are overwritten, and left on failure, as they were.
	if err := u.addRemoveNew(l.tls(), nil); err != nil {
		return err
	}
	paths, err := certs.WriteFiles(l.tls(), ca, true, nc, -1, -1)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.gossipKey(), []byte(resp.GossipKey+"\n"), 0o600); err != nil {
		return err
	}
	pgCA, err := certs.LoadCA([]byte(resp.PostgresCACert), []byte(resp.PostgresCAKey))
	if err != nil {
		return fmt.Errorf("the PostgreSQL CA the active node sent: %w", err)
	}
	if err := writePostgresCert(cfg, l, pgCA, time.Now()); err != nil {
		return err
	}
	if err := u.addRemoveNew(l.consul(), nil); err != nil {
		return err
	}
	tokens := joinTokens(resp.ACL)
	if tokens == nil {
		return fmt.Errorf("%s sent no Consul ACL tokens: its cluster's Consul runs without ACLs (set up by an understudy before them), and this one would deny every daemon; join with the cluster's understudy version", j.Active)
	}
	if err := u.addRemoveNew(filepath.Dir(cfg.Consul.TokenFile), nil); err != nil {
		return err
	}
	if err := writeTokenFiles(cfg, *tokens); err != nil {
		return err
	}
	if err := writeConsulConfig(cfg, l, o, paths, resp.GossipKey, tokens.Agent, false, resp.ConsulJoin); err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "starting the Consul agent and joining the cluster's servers")
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		return err
	}
	if err := u.startService(ctx, cfg, o, consulService(l, o)); err != nil {
		return err
	}
	// Leave gracefully on failure, before the agent is stopped (undo runs
	// last step first): a server that joined and then vanished would count
	// in the quorum until removed by hand.
	u.add("leave consul", func() error {
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cc.Leave(lctx)
	})
	if err := waitConsul(ctx, cc, 2*time.Minute); err != nil {
		return err
	}

	fmt.Fprintf(o.Out, "cloning PostgreSQL from %s (%s:%d)\n", resp.Active, resp.PostgresHost, resp.PostgresPort)
	// A database that was there (--force) is moved aside by the clone, not
	// removed; the undo takes away only a clone put where nothing was.
	if !pg.HasData() {
		if err := u.addRemoveNew(cfg.Postgres.DataDir, func() { stopPostgres(pg) }); err != nil {
			return err
		}
	}
	if err := u.addRemoveNew(cfg.Postgres.TLSDir, nil); err != nil {
		return err
	}
	bar := &progressBar{out: o.Out}
	up := postgres.Upstream{Host: resp.PostgresHost, Port: resp.PostgresPort}
	if err := pg.Clone(ctx, up, bar.update); err != nil {
		return err
	}
	bar.done()
	// Started here as the active's standby, so the handler-runner finds a
	// streaming standby to keep rather than a copy to place.
	if err := pg.StartStandby(ctx, &up); err != nil {
		return err
	}
	u.add("stop postgres", func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return pg.Stop(sctx, "fast")
	})

	if err := u.addRemoveNew(cfg.SyncthingHome(), nil); err != nil {
		return err
	}
	daemons, err := daemonServices(ctx, cfg, o)
	if err != nil {
		return err
	}
	fmt.Fprintln(o.Out, startingWords(daemons))
	for _, svc := range daemons {
		if err := u.startService(ctx, cfg, o, svc); err != nil {
			return err
		}
	}
	if err := waitStandby(ctx, cfg, o.Timeout); err != nil {
		return fmt.Errorf("the node did not become a streaming standby: %w; see %s", err, o.logs(l))
	}
	// Until autopilot makes its Consul server a voter, the node adds no
	// fault tolerance: losing another server then would lose the quorum.
	fmt.Fprintln(o.Out, "waiting for this node's Consul server to be a voter")
	if err := wait.Until(ctx, time.Minute, func() error {
		ok, err := cc.Voter(ctx, cfg.Node.Name)
		if err == nil && !ok {
			err = errors.New("not a voting raft server yet")
		}
		return err
	}); err != nil {
		return err
	}
	id := Identity{Cluster: cfg.Cluster.Name, Node: cfg.Node.Name, CAFingerprint: ca.Fingerprint(), Since: time.Now().UTC(), How: "join", UnitDir: o.unitDir()}
	return writeIdentity(cfg.Node.DataDir, id)
}

// joinTimeout bounds the join call: the active signs a certificate and
// answers with the cluster's secrets.
const joinTimeout = 30 * time.Second

// askJoin calls the active's join API with the CA pinned.
func askJoin(ctx context.Context, cfg *config.Config, o Options, j JoinOptions) (nodeapi.JoinResponse, error) {
	var out nodeapi.JoinResponse
	tlsCfg, err := certs.PinnedClientTLS(j.CAFingerprint)
	if err != nil {
		return out, err
	}
	in := nodeapi.JoinRequest{Token: j.Token, Node: cfg.Node.Name, Address: cfg.Node.Address, Version: o.Version}
	base := "https://" + strings.TrimPrefix(strings.TrimPrefix(j.Active, "https://"), "http://")
	err = nodeapi.NewNodeClient(tlsCfg, "", "").Do(ctx, base, http.MethodPost, "/v1/cluster/join", in, &out, joinTimeout)
	var ae *nodeapi.APIError
	switch {
	case errors.As(err, &ae):
		return out, fmt.Errorf("join through %s refused (%d %s): %s", j.Active, ae.Status, http.StatusText(ae.Status), ae.Message)
	case err != nil:
		return out, fmt.Errorf("join through %s: %w; is it the address of the active node's API (api.listen), and the CA fingerprint the one cluster start printed?", j.Active, err)
	}
	return out, nil
}

// waitStandby waits until the node's API says it is a standby that streams.
func waitStandby(ctx context.Context, cfg *config.Config, timeout time.Duration) error {
	nc, err := NodeClient(cfg)
	if err != nil {
		return err
	}
	return wait.Until(ctx, timeout, func() error {
		st, err := nc.NodeStatus(ctx, cfg.APIURL(), apiTimeout)
		if err != nil {
			return err
		}
		if st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming {
			return fmt.Errorf("the node is %s, streaming %v", st.Role, st.Postgres.Streaming)
		}
		return nil
	})
}

// progressBar draws pg_basebackup's progress on one line.
type progressBar struct {
	out  io.Writer
	last int
}

func (b *progressBar) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	if pct == b.last {
		return
	}
	b.last = pct
	fill := pct / 4
	fmt.Fprintf(b.out, "\r  [%s%s] %3d%% %d/%d MiB", strings.Repeat("#", fill), strings.Repeat(".", 25-fill), pct, done>>20, total>>20)
}

func (b *progressBar) done() { fmt.Fprintln(b.out) }
