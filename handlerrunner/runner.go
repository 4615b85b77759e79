package handlerrunner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/clusterlog"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// Timing of the role loop, decided here (the README states the resulting
// failover bounds).
const (
	// holdTick is how often the active looks at its PostgreSQL and at
	// next-master. The lease is renewed and watched on its own timing
	// (config.Fencing), never held up by these looks.
	holdTick = 250 * time.Millisecond
	// fenceTimeout bounds the teardown of the active role.
	fenceTimeout = 30 * time.Second
	// stepDownGrace keeps a node that stepped down because of its own
	// failure out of the next elections, so a standby that kept streaming
	// takes over rather than the node that just failed.
	stepDownGrace = 15 * time.Second
	// rewindAfter is how long a standby may fail to stream from the active
	// before it is stopped and rewound (a timeline it cannot follow).
	rewindAfter = 15 * time.Second
	// slowRead is how much longer than usual a read of the leader key may
	// take before this node takes it for one Consul held while it had no
	// leader, and forgets when it saw the holder's last renewal.
	slowRead = 500 * time.Millisecond
	// peerTimeout bounds one question to a peer's API during an election.
	peerTimeout = time.Second
)

// Runner is the handler-runner of one node.
type Runner struct {
	cfg     *config.Config
	cc      *consul.Client
	pg      *postgres.Instance
	pgc     *postgres.Client
	svcs    *services.Manager
	log     *slog.Logger
	keys    cluster.Keys
	version string
	name    string
	peers   *nodeapi.NodeClient
	auth    *basicAuth
	// serverTLS serves the API over HTTPS on a TLS node (nil otherwise);
	// the peers client then trusts the cluster CA and presents the node
	// certificate.
	serverTLS *tls.Config
	// clientCAs is the cluster CA that client certificates must chain to
	// (nil without TLS).
	clientCAs *x509.CertPool
	metrics   *metrics
	sess      *session
	st        state
	// files drives the node's Syncthing; nil without files blocks.
	files *mirror
	// fencing is the timing the one-writer guarantee rests on; lease is the
	// file the watchdog reads it from; watchdog is the watchdog as a
	// supervised program; seen is when this node first saw the holder's
	// latest renewal.
	fencing  config.Fencing
	lease    *fence.Lease
	watchdog config.Service
	fenceSvc *services.Manager
	seen     leaseSeen
	// granted is when this node last granted each session's lease.
	granted struct {
		sync.Mutex
		at map[string]fence.Mono
	}

	// Touched only by the role loop's goroutine.
	upstream   string // the node this standby follows, "" for none
	wasPrimary bool   // PostgreSQL ran as a primary since it last followed: rewind before following
	// startFailures counts PostgreSQL's exits at start as a standby of
	// startFailedWith, the active, in a row (follow).
	startFailures   int
	startFailedWith string
	heldWith        string // the session the leader key was acquired with
	takenFrom       string // the node that held the leader key before this one
	// takenFromValue is the leader key as it was when this node acquired it,
	// and acquiredAt when the acquiring request was sent: the old lease to
	// wait out, and the start of this node's own.
	takenFromValue cluster.Leader
	acquiredAt     fence.Mono
	switchingTo    *cluster.NextMaster

	warnMu   sync.Mutex
	lastWarn map[string]time.Time
	// clusterLog is cluster.log (logging.dir): every event this node
	// records, nil when off.
	clusterLog *clusterlog.Log

	// restarts hands operator restarts to the standby loop (restart.go).
	restarts chan restartReq

	// joinFails counts refused joins by the caller's address, joinEvents
	// the refused joins recorded as events (handleJoin).
	joinFails, joinEvents *failLimiter
}

// New returns the handler-runner of the node cfg describes. It reads the
// basic auth file, so a bad one stops the daemon at start.
func New(cfg *config.Config, cc *consul.Client, pg *postgres.Instance, svcs *services.Manager, log *slog.Logger, version string) (*Runner, error) {
	auth, err := loadBasicAuth(cfg.API.BasicAuthFile)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "handler-runner", "node", cfg.Node.Name)
	var serverTLS, clientTLS *tls.Config
	if cfg.TLS() {
		ca, cert, key := cfg.TLSFiles()
		if serverTLS, clientTLS, err = certs.NodeTLS(certs.Paths{CA: ca, Cert: cert, Key: key}); err != nil {
			return nil, fmt.Errorf("TLS for the API: %w", err)
		}
	}
	// Every call to a peer sets its own timeout, at most peerTimeout.
	user, password := auth.credentials()
	peers := nodeapi.NewNodeClient(clientTLS, user, password)
	var clientCAs *x509.CertPool
	if serverTLS != nil {
		clientCAs = serverTLS.ClientCAs
	}
	r := &Runner{
		cfg: cfg, cc: cc, pg: pg, pgc: pg.Client(), svcs: svcs, log: log, version: version,
		keys:  cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name),
		name:  cfg.Node.Name,
		peers: peers, serverTLS: serverTLS, clientCAs: clientCAs,
		auth:     auth,
		metrics:  newMetrics(),
		fencing:  cfg.Fencing(),
		lastWarn: map[string]time.Time{},
		files:    newMirror(cfg, log),
		// The handler-runner writes cluster.log: it records the role
		// transitions and nearly every cluster event (the check-runner
		// adds the few it records, to the same file).
		clusterLog: clusterlog.New(cfg.ClusterLogPath()),

		restarts:   make(chan restartReq),
		joinFails:  newFailLimiter(joinFailMax, joinFailWindow, joinFailKeys),
		joinEvents: newFailLimiter(joinEventMax, joinFailWindow, 1),
	}
	if err := r.openFence(log); err != nil {
		return nil, err
	}
	r.metrics.reg.MustRegister(newMemberCollector(r))
	r.sess = &session{
		cc: cc, log: log, kick: make(chan struct{}, 1),
		every: min(cfg.Checks.Interval, cfg.Consul.SessionTTL/3),
		opts: consul.SessionOptions{
			Name:      "understudy-handler-runner " + cfg.Node.Name,
			Checks:    sessionChecks,
			TTL:       cfg.Consul.SessionTTL,
			LockDelay: cfg.Consul.LockDelay,
		},
	}
	r.st.st = nodeapi.NodeStatus{Name: r.name, Role: nodeapi.RoleRejoining, Since: time.Now(), Reason: "starting",
		NoFailover: cfg.Node.NoFailover, Priority: cfg.Node.Priority}
	return r, nil
}

// Run serves the API and runs the role loop until ctx ends. On the way out
// the active fences itself (services stopped, PostgreSQL stopped, lock
// released) before the session is destroyed: the lock must not be free while
// this node still takes writes.
func (r *Runner) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w; set api.listen to a free address", r.cfg.API.Listen, err)
	}
	if r.serverTLS != nil {
		ln = tls.NewListener(ln, r.serverTLS)
	}
	r.log.Info("starting", "api", ln.Addr().String(), "session_ttl", r.cfg.Consul.SessionTTL,
		"lock_delay", r.cfg.Consul.LockDelay, "lease", r.fencing.Lease, "takeover_wait", r.fencing.Takeover())
	defer r.pgc.Close()
	if err := r.startWatchdog(ctx); err != nil {
		ln.Close()
		return err
	}
	defer r.stopWatchdog()

	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() { r.sess.run(bg) })
	wg.Go(func() { r.beat(bg) })
	wg.Go(func() { r.runFiles(bg) })
	wg.Go(func() { r.runParameters(bg) })
	wg.Go(func() {
		if serveErr = r.serve(bg, ln); serveErr != nil {
			stopLoop()
		}
	})
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	r.loop(loopCtx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopBG()
	wg.Wait()
	r.log.Info("stopped")
	_ = r.clusterLog.Close()
	return serveErr
}

// loop is the role state machine: one function per role, each returning the
// next role and why.
func (r *Runner) loop(ctx context.Context) {
	role, reason := nodeapi.RoleRejoining, "handler-runner starting"
	r.enter(ctx, "", role, reason)
	for ctx.Err() == nil {
		var next nodeapi.Role
		switch role {
		case nodeapi.RoleRejoining:
			next, reason = r.runRejoining(ctx)
		case nodeapi.RoleStandby:
			next, reason = r.runStandby(ctx)
		case nodeapi.RoleCandidate:
			next, reason = r.runCandidate(ctx)
		case nodeapi.RoleActive:
			// Its teardown passes through demoting and fences.
			next, reason = r.runActive(ctx)
			role = nodeapi.RoleDemoting
		}
		if ctx.Err() != nil && role != nodeapi.RoleDemoting {
			return
		}
		r.enter(ctx, role, next, reason)
		role = next
	}
}

// enter records a transition: log, status, metrics, event.
func (r *Runner) enter(ctx context.Context, from, to nodeapi.Role, reason string) {
	if from == to {
		return
	}
	r.log.Info("role transition", "from", from, "to", to, "reason", reason)
	r.st.update(func(st *nodeapi.NodeStatus) { st.Role, st.Since, st.Reason = to, time.Now(), reason })
	r.metrics.transition(from, to)
	ev := cluster.Event{Kind: "transition", From: string(from), To: string(to), Reason: reason}
	if from == "" {
		// The daemon's start: in cluster.log, where a restart is worth a
		// line, not in the cluster's history.
		ev.Node, ev.Time = r.name, time.Now().UTC()
		r.logEvent(ev)
		return
	}
	r.record(ctx, ev)
}

// record appends an event to cluster.log and under events/, best effort:
// history must not hold up a failover. The file comes first: it does not
// wait for Consul.
func (r *Runner) record(ctx context.Context, ev cluster.Event) {
	ev.Node, ev.Time = r.name, time.Now().UTC()
	if r.inMaintenance() != nil {
		// Kept, and marked: what a node in maintenance does is the
		// maintenance's, not the cluster's problem.
		d := map[string]string{"maintenance": "true"}
		for k, v := range ev.Details {
			d[k] = v
		}
		ev.Details = d
	}
	r.logEvent(ev)
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if _, err := r.cc.AppendEvent(ectx, r.keys.Events(), r.name, ev); err != nil {
		r.warnEvery("record-event", "cannot record event in consul", "kind", ev.Kind, "err", err)
	}
}

// logEvent writes ev to cluster.log; a failure is warned about, not
// retried.
func (r *Runner) logEvent(ev cluster.Event) {
	if err := r.clusterLog.Write(ev); err != nil {
		r.warnEvery("cluster-log", "cannot write cluster.log", "err", err)
	}
}

// warnEvery logs a warning at most every 30 s per key: a retry loop that
// fails every interval must not flood the journal.
func (r *Runner) warnEvery(key, msg string, args ...any) {
	if r.due(key) {
		r.log.Warn(msg, args...)
	}
}

// infoEvery is warnEvery at level info.
func (r *Runner) infoEvery(key, msg string, args ...any) {
	if r.due(key) {
		r.log.Info(msg, args...)
	}
}

// due says whether key was last logged 30 s ago or more, and if so notes
// that it is logged now.
func (r *Runner) due(key string) bool {
	r.warnMu.Lock()
	defer r.warnMu.Unlock()
	now := time.Now()
	if now.Sub(r.lastWarn[key]) < 30*time.Second {
		return false
	}
	r.lastWarn[key] = now
	return true
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readLeader reads the leader key; consistent reads go through the Raft
// leader, for decisions that must not act on a stale answer.
func (r *Runner) readLeader(ctx context.Context, consistent bool) (consul.KeyState, cluster.Leader, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	asked := time.Now()
	ks, err := r.cc.GetKey(ctx, r.keys.Leader(), consistent)
	l := decodeLeader(ks)
	r.seen.read(l, err, time.Since(asked) > slowRead)
	return ks, l, err
}

// notTheActive tells a call only the serving active takes (a switchover,
// a removal, a join) where to go instead, nil when this node is that
// active. ks and l are the leader key as just read. A key without a
// session still names its last holder: that node is not the active, and
// naming it would send the caller to a node that says the same, so the
// answer is 503 (an election runs; retry) rather than 409 with an active.
// So is the moment between acquiring the lock and serving (promotion).
func (r *Runner) notTheActive(ks consul.KeyState, l cluster.Leader, what string) (map[string]any, int, error) {
	switch {
	case ks.Session == "":
		return map[string]any{"active": ""}, http.StatusServiceUnavailable,
			fmt.Errorf("no node holds the leader lock now (an election or a failover runs); retry once understudy cluster status shows an active node")
	case l.Node != r.name:
		return map[string]any{"active": l.Node, "active_api": l.APIURL}, http.StatusConflict,
			fmt.Errorf("this node (%s) is not the active node; %s the active node %s", r.name, what, l.Node)
	case !r.st.serving(time.Now(), r.fencing.Lease):
		return map[string]any{"active": l.Node, "active_api": l.APIURL}, http.StatusServiceUnavailable,
			fmt.Errorf("this node (%s) holds the leader lock but does not serve yet (it is being promoted, or it is fencing); retry in a few seconds", r.name)
	}
	return nil, 0, nil
}

func decodeLeader(ks consul.KeyState) cluster.Leader {
	var l cluster.Leader
	if ks.Found {
		_ = json.Unmarshal(ks.Value, &l)
	}
	return l
}

var errStopping = errors.New("handler-runner stopping")
