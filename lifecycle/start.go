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
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/wait"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// Options of Start.
type Options struct {
	// Consul and Understudy are the programs the node's processes run.
	Consul, Understudy string
	// Syncthing is the program that mirrors the files blocks when the
	// configuration names none (syncthing.binary); "" finds it with
	// FindSyncthing.
	Syncthing string
	// SerfPort and ServerPort are the Consul agent's LAN gossip and server
	// (Raft, RPC) ports: 8301 and 8300 by default.
	SerfPort, ServerPort int
	// Services runs the node's processes; it must have a state directory.
	Services *services.Manager
	// Systemd runs the node's processes as systemd units, written into
	// UnitDir and enabled: systemd restarts each one when it exits, starts
	// them at boot, and keeps their output in the journal. Without it they
	// are programs Services supervises, which outlive the command but are
	// not restarted once it has exited (a host without systemd, the dev
	// cluster).
	Systemd bool
	// UnitDir is where the units go (services.UnitDir by default).
	UnitDir string
	// Out receives progress lines for the operator.
	Out io.Writer
	// Timeout bounds the wait for the node to be active (default 2m).
	Timeout time.Duration
	// Version is this understudy's version: a joining node must run the
	// active node's.
	Version string
	// TokenTTL is how long the join token cluster start prints admits
	// nodes (default 1h); `cluster token` issues another.
	TokenTTL time.Duration
}

// DefaultTokenTTL is how long a join token admits nodes unless told
// otherwise: long enough to set up the other nodes, short enough that a
// token left in a shell history or a ticket is soon worth nothing.
const DefaultTokenTTL = time.Hour

func (o *Options) defaults() {
	if o.SerfPort == 0 {
		o.SerfPort = 8301
	}
	if o.ServerPort == 0 {
		o.ServerPort = 8300
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.UnitDir == "" {
		o.UnitDir = services.UnitDir
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultTokenTTL
	}
}

// Result is what the operator gets from Start and IssueToken.
type Result struct {
	// Token is the join token, shown once: only its hash is kept.
	Token string
	// TokenExpires is when the token stops admitting nodes.
	TokenExpires time.Time
	// CAFingerprint lets a joining node check it talks to this cluster.
	CAFingerprint string
}

// ErrInCluster is returned by Start for a node that already belongs to a
// cluster.
var ErrInCluster = errors.New("this node is already in a cluster")

// ClusterConfig is the value of the cluster's config key.
type ClusterConfig struct {
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
	CreatedBy     string    `json:"created_by"`
	CAFingerprint string    `json:"ca_fingerprint"`
}

// Start makes a fresh node a one-node cluster and its active node: the CA
// and the node certificate, Consul with TLS and a gossip key, PostgreSQL
// initialised (or an existing data directory adopted), the cluster's config
// and a join token valid for o.TokenTTL in Consul, the check-runner and
// handler-runner running. It returns once the node is active. On failure
// everything it did is undone, an adopted data directory excepted: only
// what it created is removed, and a PostgreSQL data directory that holds
// files but no database is refused before anything is done.
func Start(ctx context.Context, cfg *config.Config, o Options) (_ Result, err error) {
	o.defaults()
	if cfg.Consul.Scheme != "https" {
		return Result{}, fmt.Errorf("cluster start sets Consul up with TLS: write consul { scheme = \"https\" } in %s (the address and the TLS files then follow node.data_dir)", cfg.Path)
	}
	l := layout{cfg.Node.DataDir}
	if id, found, err := ReadIdentity(cfg.Node.DataDir); err != nil {
		return Result{}, err
	} else if found {
		return Result{}, fmt.Errorf("%w: node %s has been in cluster %s since %s (%s); a node starts or joins one cluster once",
			ErrInCluster, id.Node, id.Cluster, id.Since.Format(time.RFC3339), l.identity())
	}
	if err := checkPostgresDataDir(cfg.Postgres.DataDir); err != nil {
		return Result{}, err
	}
	if err := checkTokenFile(cfg); err != nil {
		return Result{}, err
	}
	// node.data_dir stays on failure, even when this run made it: the
	// processes' logs that the error points at are under it.
	if err := os.MkdirAll(cfg.Node.DataDir, 0o755); err != nil {
		return Result{}, err
	}
	u := &undo{log: o.Out}
	defer func() {
		if err != nil {
			u.run()
		}
	}()

	fmt.Fprintln(o.Out, "creating the cluster CA, this node's certificate, the Consul gossip key and PostgreSQL's CA and certificate")
	now := time.Now()
	ca, err := certs.NewCA(cfg.Cluster.Name, now)
	if err != nil {
		return Result{}, err
	}
	nc, err := ca.IssueNode(cfg.Node.Name, datacenter, []string{cfg.Node.Address}, now)
	if err != nil {
		return Result{}, err
	}
	gossip, err := certs.GossipKey()
	if err != nil {
		return Result{}, err
	}
	pgCA, err := certs.NewPostgresCA(cfg.Cluster.Name, now)
	if err != nil {
		return Result{}, err
	}
	if err := u.addRemoveNew(l.tls(), nil); err != nil {
		return Result{}, err
	}
	paths, err := certs.WriteFiles(l.tls(), ca, true, nc, -1, -1)
	if err != nil {
		return Result{}, err
	}
	if err := writePostgresCert(cfg, l, pgCA, now); err != nil {
		return Result{}, err
	}
	if err := os.WriteFile(l.gossipKey(), []byte(gossip+"\n"), 0o600); err != nil {
		return Result{}, err
	}
	tokens, err := newACLTokens()
	if err != nil {
		return Result{}, err
	}
	if err := u.addRemoveNew(l.consul(), nil); err != nil {
		return Result{}, err
	}
	if err := writeConsulConfig(cfg, l, o, paths, gossip, tokens.Agent, true, nil); err != nil {
		return Result{}, err
	}

	fmt.Fprintln(o.Out, "starting the Consul agent (a server, TLS on every port, ACLs default deny)")
	if err := u.startService(ctx, cfg, o, consulService(l, o)); err != nil {
		return Result{}, err
	}
	if err := bootstrapOnLeader(ctx, cfg, o, tokens); err != nil {
		return Result{}, err
	}
	if err := u.addRemoveNew(filepath.Dir(cfg.Consul.TokenFile), nil); err != nil {
		return Result{}, err
	}
	if err := writeTokenFiles(cfg, tokens); err != nil {
		return Result{}, err
	}
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		return Result{}, err
	}
	if err := waitConsul(ctx, cc, time.Minute); err != nil {
		return Result{}, err
	}

	pg := postgres.NewInstance(cfg.Postgres, cfg.Node.Name, slog.New(slog.DiscardHandler))
	// PostgreSQL's copy of its certificate and key goes there (initdb, or the
	// handler-runner for an adopted directory).
	if err := u.addRemoveNew(cfg.Postgres.TLSDir, nil); err != nil {
		return Result{}, err
	}
	if pg.HasData() {
		fmt.Fprintf(o.Out, "adopting the PostgreSQL data directory %s\n", cfg.Postgres.DataDir)
	} else {
		fmt.Fprintf(o.Out, "initialising PostgreSQL in %s\n", cfg.Postgres.DataDir)
		if err := u.addRemoveNew(cfg.Postgres.DataDir, func() { stopPostgres(pg) }); err != nil {
			return Result{}, err
		}
		if err := pg.Init(ctx); err != nil {
			return Result{}, err
		}
	}

	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	// The token's lifetime starts now, not when the command did: initdb
	// and the wait for Consul may have taken minutes.
	token, rec, err := certs.IssueJoinToken(nil, cfg.Node.Name, time.Now(), o.TokenTTL)
	if err != nil {
		return Result{}, err
	}
	if err := cc.PutJSON(ctx, keys.Config(), ClusterConfig{Name: cfg.Cluster.Name, Created: now.UTC(), CreatedBy: cfg.Node.Name, CAFingerprint: ca.Fingerprint()}); err != nil {
		return Result{}, err
	}
	if err := cc.PutJSON(ctx, keys.JoinToken(), rec); err != nil {
		return Result{}, err
	}

	if err := u.addRemoveNew(cfg.SyncthingHome(), nil); err != nil {
		return Result{}, err
	}
	daemons, err := daemonServices(ctx, cfg, o)
	if err != nil {
		return Result{}, err
	}
	fmt.Fprintln(o.Out, startingWords(daemons))
	for _, svc := range daemons {
		if err := u.startService(ctx, cfg, o, svc); err != nil {
			return Result{}, err
		}
	}
	if err := waitActive(ctx, cfg, o.Timeout); err != nil {
		return Result{}, fmt.Errorf("the node did not become active: %w; see %s", err, o.logs(l))
	}
	id := Identity{Cluster: cfg.Cluster.Name, Node: cfg.Node.Name, CAFingerprint: ca.Fingerprint(), Since: now.UTC(), How: "start", UnitDir: o.unitDir()}
	if err := writeIdentity(cfg.Node.DataDir, id); err != nil {
		return Result{}, err
	}
	return Result{Token: token, TokenExpires: rec.ExpiresAt, CAFingerprint: ca.Fingerprint()}, nil
}

// writePostgresCert signs the node's PostgreSQL certificate with pgCA and
// writes both beside the node's TLS files, where the configuration's
// PostgreSQL TLS files are (config: postgres.TLSDir gets copies of them).
func writePostgresCert(cfg *config.Config, l layout, pgCA *certs.CA, now time.Time) error {
	pc, err := pgCA.IssuePostgres(cfg.Node.Name, []string{cfg.Node.Address, cfg.Postgres.Host}, now)
	if err != nil {
		return err
	}
	_, err = certs.WritePostgresFiles(l.tls(), pgCA, true, pc)
	return err
}

// bootstrapOnLeader waits for the new agent to elect itself, without a
// token (/v1/status/leader needs none; everything else is denied until
// the bootstrap), then bootstraps the cluster's ACLs.
func bootstrapOnLeader(ctx context.Context, cfg *config.Config, o Options, t aclTokens) error {
	anon := cfg.Consul
	anon.Token, anon.TokenFile = "", ""
	cc, err := consul.New(anon)
	if err != nil {
		return err
	}
	err = wait.Until(ctx, time.Minute, func() error {
		leader, err := cc.Leader(ctx)
		if err == nil && leader == "" {
			err = errors.New("no raft leader yet")
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(o.Out, "bootstrapping Consul's ACLs: the management, daemons' and agent tokens")
	return bootstrapACL(ctx, cc, cfg, t)
}

// waitConsul waits until the agent answers over TLS and the cluster has a
// Raft leader.
func waitConsul(ctx context.Context, cc *consul.Client, timeout time.Duration) error {
	return wait.Until(ctx, timeout, func() error {
		a, err := cc.Agent(ctx)
		if err != nil {
			return err
		}
		if a.Leader == "" {
			return errors.New("no raft leader yet")
		}
		return nil
	})
}

// apiTimeout bounds each call of cluster start and join to their node's
// API while they wait for it.
const apiTimeout = 2 * time.Second

// waitActive waits until the node's /status answers 200.
func waitActive(ctx context.Context, cfg *config.Config, timeout time.Duration) error {
	nc, err := NodeClient(cfg)
	if err != nil {
		return err
	}
	apiURL := cfg.APIURL()
	return wait.Until(ctx, timeout, func() error {
		_, err := nc.Active(ctx, apiURL, apiTimeout)
		var ae *nodeapi.APIError
		if errors.As(err, &ae) {
			return fmt.Errorf("%s/status answers %d %s", apiURL, ae.Status, http.StatusText(ae.Status))
		}
		return err
	})
}

// NodeClient is a client of the cluster's APIs as this node: it trusts
// only the cluster CA, presents the node certificate, and sends the user
// and password of api.basic_auth_file when one is set.
func NodeClient(cfg *config.Config) (*nodeapi.NodeClient, error) {
	ca, cert, key := cfg.TLSFiles()
	_, client, err := certs.NodeTLS(certs.Paths{CA: ca, Cert: cert, Key: key})
	if err != nil {
		return nil, err
	}
	var user, password string
	if f := cfg.API.BasicAuthFile; f != "" {
		if user, password, err = nodeapi.ReadBasicAuth(f); err != nil {
			return nil, fmt.Errorf("api.basic_auth_file: %w", err)
		}
	}
	return nodeapi.NewNodeClient(client, user, password), nil
}

// stopPostgres stops the PostgreSQL an undo step is about to remove the
// data directory of.
func stopPostgres(pg *postgres.Instance) {
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = pg.Stop(sctx, "immediate")
}
