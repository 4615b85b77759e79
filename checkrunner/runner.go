package checkrunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/clusterlog"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// Runner is the check-runner of one node.
type Runner struct {
	cfg     *config.Config
	consul  *consul.Client
	pg      *postgres.Client
	svcs    *services.Manager
	log     *slog.Logger
	keys    cluster.Keys
	version string

	// state of the loop, touched only by Run's goroutine
	registered    bool
	retryAt       time.Time     // no registration attempt before this
	backoff       time.Duration // grows while the agent is unreachable
	lastHeartbeat time.Time
	// catalogChecked is when checkCatalog last read the catalog.
	catalogChecked time.Time
	last           map[string]Result // last reported result of each check
	consulDown     bool              // log the outage once, and its end
	// opts are the node's runtime options (options/<node>) as last read;
	// they override the file's checks.ttl_multiplier, checks.fail_fast,
	// node.priority and node.no_failover without a restart.
	opts cluster.NodeOptions
	// maintenance: the node is in maintenance (maintenance/<node>) as last
	// read; its failing checks are reported and logged as quieted.
	maintenance bool
	// files observes the mirrored folders; nil without files blocks.
	files *filesObserver
	// guard stops PostgreSQL on the active node when its handler-runner
	// is gone.
	guard *guard
	// publishing is set while a write of the member record is in flight;
	// bg waits for it when the runner stops.
	publishing atomic.Bool
	bg         sync.WaitGroup
	// renewAt is when the node certificate may be renewed again after a
	// failure (maybeRenew).
	renewAt time.Time
	// roles is when PostgreSQL last changed role, loaded from the node's
	// record once (rolesLoaded) so that a restart keeps it.
	roles       cluster.RoleClock
	rolesLoaded bool
	// clusterLog is cluster.log, which the handler-runner writes too: the
	// guard's fencing goes there as well (nil when logging.dir is empty).
	clusterLog *clusterlog.Log
}

// New returns the check-runner of the node cfg describes. version is
// understudy's own, published in the member record.
func New(cfg *config.Config, cc *consul.Client, pg *postgres.Client, svcs *services.Manager, log *slog.Logger, version string) *Runner {
	log = log.With("component", "check-runner", "node", cfg.Node.Name)
	return &Runner{
		cfg: cfg, consul: cc, pg: pg, svcs: svcs, version: version,
		log:   log,
		keys:  cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name),
		last:  map[string]Result{},
		files: newFilesObserver(cfg),
		guard: newGuard(cfg, log),

		clusterLog: clusterlog.New(cfg.ClusterLogPath()),
	}
}

// ProbeTimeout bounds each probe of one round (config.ProbeTimeout).
func ProbeTimeout(interval time.Duration) time.Duration { return config.ProbeTimeout(interval) }

// TTL is the TTL of a check updated every every (config.CheckTTL).
func TTL(every time.Duration, multiplier int, interval time.Duration) time.Duration {
	return config.CheckTTL(every, multiplier, interval)
}

// Run runs the checks every interval until ctx ends, then marks every check
// critical ("shutting down") so that a failover starts now rather than after
// the TTL, and returns nil.
func (r *Runner) Run(ctx context.Context) error {
	r.log.Info("starting", "interval", r.cfg.Checks.Interval, "heartbeat_interval", r.cfg.Checks.HeartbeatInterval,
		"ttl", TTL(r.cfg.Checks.Interval, r.cfg.Checks.TTLMultiplier, r.cfg.Checks.Interval),
		"fail_fast", r.cfg.Checks.FailFast, "consul", r.consul.Address(), "postgres", r.pg.Addr())
	defer r.pg.Close()
	defer r.clusterLog.Close()
	defer r.shutdown(ctx)
	defer r.bg.Wait() // before shutdown: the last record first, then every check critical

	watchdog, _ := daemon.SdWatchdogEnabled(false)
	if watchdog > 0 && watchdog < 2*r.cfg.Checks.Interval {
		r.log.Warn("systemd watchdog is shorter than two check intervals; raise WatchdogSec", "watchdog", watchdog)
	}
	t := time.NewTicker(r.cfg.Checks.Interval)
	defer t.Stop()
	for first := true; ; first = false {
		summary := r.runOnce(ctx)
		if first {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog+"\nSTATUS="+summary)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce observes the node, reports every check and publishes the member
// record. It returns a one-line summary for systemd's STATUS.
func (r *Runner) runOnce(ctx context.Context) string {
	now := time.Now()
	o := r.observe(ctx)
	results := evaluate(o)
	if ctx.Err() != nil {
		// Stopping: this round's probes were cut short; shutdown reports.
		return ""
	}
	r.applyOptions(o)
	if o.maintenanceErr == nil {
		r.maintenance = o.maintenance
	}
	if r.maintenance {
		quiet(results)
	}
	if ev := r.guard.check(ctx, o.active(), o.handlerErr, now); ev != nil {
		ev.Node, ev.Time = r.cfg.Node.Name, now.UTC()
		if err := r.clusterLog.Write(*ev); err != nil {
			r.log.Warn("cannot write the fencing to cluster.log", "err", err)
		}
		ectx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := r.consul.AppendEvent(ectx, r.keys.Events(), r.cfg.Node.Name, ev); err != nil {
			r.log.Warn("cannot record the fencing in the history", "err", err)
		}
		cancel()
	}
	r.checkCatalog(ctx, o, now)
	reported := r.report(ctx, results, now, false)
	r.maybeRenew(ctx, o, now)
	// The member record is a Raft write: without a Consul leader it waits
	// out its timeout. In the background, one at a time, so that it never
	// delays the next round's check reports: a check TTL that ran out
	// while Consul elected a leader would end the session, and an active
	// node's hold, once the new leader syncs it.
	m := r.member(o, now)
	if !r.rolesLoaded && o.ownRead {
		r.roles.Load(o.own)
		r.rolesLoaded = true
	}
	if r.rolesLoaded {
		m.RoleChanged = r.roles.Observe(m.Role, now)
	}
	if r.publishing.CompareAndSwap(false, true) {
		r.bg.Go(func() {
			defer r.publishing.Store(false)
			// Not cancelled with the run: the last record before a stop
			// is written too (Run waits for it).
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ProbeTimeout(r.cfg.Checks.Interval))
			defer cancel()
			if err := r.consul.PutJSON(pctx, r.keys.Member(r.cfg.Node.Name), m); err != nil && reported {
				r.log.Warn("publish member record", "err", err)
			}
		})
	}
	return r.summary(o, results)
}

// observe runs the probes in parallel, each under its own timeout: a hung
// PostgreSQL must not keep Consul's checks from being reported, nor the
// other way round.
func (r *Runner) observe(ctx context.Context) *observation {
	timeout := ProbeTimeout(r.cfg.Checks.Interval)
	o := &observation{self: r.cfg.Node.Name, pgAddr: r.pg.Addr()}
	began := time.Now()
	var wg sync.WaitGroup
	probe := func(f func(ctx context.Context)) {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			f(pctx)
		})
	}
	probe(func(ctx context.Context) { o.dialErr = r.pg.Dial(ctx) })
	probe(func(ctx context.Context) {
		if o.pingErr = r.pg.Ping(ctx); o.pingErr == nil {
			o.state, o.stateErr = r.pg.State(ctx)
		}
	})
	probe(func(ctx context.Context) { r.observeConsul(ctx, o) })
	probe(func(ctx context.Context) { r.observeServices(ctx, o) })
	probe(func(ctx context.Context) { r.files.observe(ctx, o, time.Now()) })
	if r.guard != nil {
		probe(func(ctx context.Context) { o.handlerErr = r.guard.probe(ctx) })
	}
	r.observeCerts(o)
	wg.Wait()
	if o.dialErr != nil || o.pingErr != nil {
		// Read after the probes: a restart that began while one ran
		// (and made it fail) is in the file by now.
		r.observePlannedRestart(o, began, time.Now())
	}
	if o.leaderErr != nil && len(o.services) > 0 {
		// Which services should run depends on the leader key.
		o.servicesErr = o.leaderErr
	}
	return o
}

// observePlannedRestart sets o.planned when the handler-runner restarted
// PostgreSQL during the round that ran from began to ended.
func (r *Runner) observePlannedRestart(o *observation, began, ended time.Time) {
	p, ok, err := readPlannedRestart(PlannedRestartFile(r.cfg.Node.DataDir))
	if err != nil {
		r.log.Warn("cannot read the planned restart window; a planned restart is reported as a failure", "err", err)
		return
	}
	if ok && p.covers(began, ended) {
		o.planned = &p
	}
}

func (r *Runner) observeConsul(ctx context.Context, o *observation) {
	o.agent, o.agentErr = r.consul.Agent(ctx)
	if !r.rolesLoaded {
		_, _, err := r.consul.GetJSON(ctx, r.keys.Member(r.cfg.Node.Name), &o.own)
		o.ownRead = err == nil
	}
	_, _, o.optionsErr = r.consul.GetJSON(ctx, r.keys.Options(r.cfg.Node.Name), &o.options)
	_, o.maintenance, o.maintenanceErr = r.consul.GetJSON(ctx, r.keys.Maintenance(r.cfg.Node.Name), &cluster.Maintenance{})
	var l cluster.Leader
	_, found, err := r.consul.GetJSON(ctx, r.keys.Leader(), &l)
	switch {
	case err != nil:
		o.leaderErr = err
		return
	case !found:
		return
	}
	o.leader = &l
	var m cluster.Member
	if _, found, err := r.consul.GetJSON(ctx, r.keys.Member(l.Node), &m); err == nil && found {
		o.leaderMember = &m
	}
}

func (r *Runner) observeServices(ctx context.Context, o *observation) {
	for _, svc := range r.cfg.Services {
		st, err := r.svcs.Status(ctx, svc)
		o.services = append(o.services, serviceState{
			name: svc.Name, activeOnly: svc.ActiveOnly, running: st.Running, detail: st.Detail, err: err,
		})
	}
}

// report sends every result to Consul, registering the service first when the
// agent does not have it (at start, after an agent restart), and adds the
// heartbeat when it is due. It returns false when the agent could not be
// reached. retried marks the one second attempt after the agent turned out to
// have lost the registration.
func (r *Runner) report(ctx context.Context, results map[string]Result, now time.Time, retried bool) bool {
	if !r.registered {
		if now.Before(r.retryAt) {
			return false
		}
		if err := r.register(ctx); err != nil {
			r.consulUnreachable(err, now)
			return false
		}
	}
	heartbeat := now.Sub(r.lastHeartbeat) >= r.cfg.Checks.HeartbeatInterval
	if heartbeat {
		results[CheckHeartbeat] = checkHeartbeat(now)
	}
	for _, name := range Checks {
		res, ok := results[name]
		if !ok {
			continue
		}
		r.logTransition(name, res)
		if res.Status == consul.Critical && !cluster.Or(r.opts.FailFast, r.cfg.Checks.FailFast) {
			// Without fail_fast a failing check is left to expire: one bad
			// probe within the TTL does not fail the node.
			continue
		}
		err := r.consul.UpdateTTL(ctx, CheckID(name), res.Status, res.Output)
		if errors.Is(err, consul.ErrNotRegistered) && !retried {
			r.log.Warn("consul agent lost the checks; registering again", "check", name)
			r.registered = false
			return r.report(ctx, results, now, true)
		}
		if err != nil {
			r.registered = false
			r.consulUnreachable(err, now)
			return false
		}
	}
	if r.consulDown {
		r.log.Info("consul agent reachable again; checks reported", "consul", r.consul.Address())
		r.consulDown = false
	}
	r.backoff = 0
	if heartbeat {
		r.lastHeartbeat = now
	}
	return true
}

// consulUnreachable logs the first failure of an outage and backs off the
// next registration attempt, with jitter, up to five seconds: soon enough to
// report within a TTL or two of the agent's return.
func (r *Runner) consulUnreachable(err error, now time.Time) {
	if !r.consulDown {
		r.log.Warn("cannot report checks to the consul agent; retrying", "consul", r.consul.Address(), "err", err)
		r.consulDown = true
	}
	r.backoff = min(max(2*r.backoff, 250*time.Millisecond), 5*time.Second)
	r.retryAt = now.Add(r.backoff/2 + rand.N(r.backoff/2+1))
}

func (r *Runner) register(ctx context.Context) error {
	c := r.cfg.Checks
	c.TTLMultiplier = r.multiplier()
	svc := consul.Service{
		ID: ServiceID, Name: ServiceID, Address: r.cfg.Node.Address, Port: r.cfg.Postgres.Port,
		Tags: r.cfg.Node.Tags, Meta: map[string]string{"node": r.cfg.Node.Name, "cluster": r.cfg.Cluster.Name},
	}
	for _, name := range Checks {
		every := c.Interval
		if name == CheckHeartbeat {
			every = c.HeartbeatInterval
		}
		svc.Checks = append(svc.Checks, consul.TTLCheck{
			CheckID: CheckID(name), Name: name, TTL: TTL(every, c.TTLMultiplier, c.Interval),
			Notes: "reported by understudy check-runner on " + r.cfg.Node.Name,
			// A registration again at runtime (a new TTL multiplier) keeps
			// what the checks said: starting critical would invalidate the
			// node's session and, on the active, start a failover.
			Status: r.last[name].Status,
		})
	}
	if err := r.consul.RegisterService(ctx, svc); err != nil {
		return err
	}
	r.registered = true
	// A fresh registration starts critical: report the heartbeat now.
	r.lastHeartbeat = time.Time{}
	r.log.Info("registered service and checks with consul", "service", ServiceID, "checks", len(svc.Checks))
	return nil
}

func (r *Runner) logTransition(name string, res Result) {
	prev, seen := r.last[name]
	r.last[name] = res
	if seen && prev.Status == res.Status {
		return
	}
	if res.Status == consul.Passing {
		r.log.Info("check passing", "check", name, "output", res.Output)
		return
	}
	if r.maintenance {
		// Kept in the journal, and marked: an operator works on the node.
		r.log.Info("check "+res.Status, "check", name, "output", res.Output, "maintenance", true)
		return
	}
	r.log.Warn("check "+res.Status, "check", name, "output", res.Output)
}

// shutdown marks every check critical with its own bounded context: ctx is
// already cancelled when it runs.
func (r *Runner) shutdown(ctx context.Context) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var errs []error
	for _, name := range Checks {
		errs = append(errs, r.consul.UpdateTTL(sctx, CheckID(name), consul.Critical, "shutting down: understudy check-runner stopped"))
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("could not mark checks critical on shutdown; they expire after their TTL", "err", err)
		return
	}
	r.log.Info("stopped; every check marked critical")
}

// catalogEvery is how often the check-runner makes sure Consul's catalog
// still has its checks.
const catalogEvery = 5 * time.Second

// checkCatalog registers the checks again when the catalog lost them: a
// node Consul reaped while it was cut off or frozen comes back with no
// checks in the catalog, and no session can be bound to them until the
// agent's next full sync. Registering again syncs them at once.
func (r *Runner) checkCatalog(ctx context.Context, o *observation, now time.Time) {
	if !r.registered || o.agentErr != nil || now.Sub(r.catalogChecked) < catalogEvery {
		return
	}
	r.catalogChecked = now
	cctx, cancel := context.WithTimeout(ctx, ProbeTimeout(r.cfg.Checks.Interval))
	defer cancel()
	ok, err := r.consul.CatalogHasCheck(cctx, o.agent.NodeName, CheckID(CheckListening))
	if err != nil || ok {
		return
	}
	r.log.Warn("consul's catalog lost this node's checks (the node was reaped as failed while away); registering them again")
	r.registered = false
}

// member is the node's member record as this round observed it.
func (r *Runner) member(o *observation, now time.Time) cluster.Member {
	m := cluster.Member{
		Name: r.cfg.Node.Name, Address: r.cfg.Node.Address, APIURL: r.cfg.APIURL(),
		Role: cluster.RoleUnknown, Tags: r.cfg.Node.Tags, Priority: cluster.Or(r.opts.Priority, r.cfg.Node.Priority),
		NoFailover: cluster.Or(r.opts.NoFailover, r.cfg.Node.NoFailover), TTLMultiplier: r.multiplier(), PostgresPort: r.cfg.Postgres.Port, LagBytes: -1,
		Versions: cluster.Versions{Understudy: r.version, Postgres: o.state.ServerVersion, Consul: o.agent.Version},
		Checks:   map[string]string{}, ConsulNode: o.agent.NodeName,
		Heartbeat: now.UTC(),
		Files:     o.folderStates(),
		Diverged:  postgres.KeptAside(r.cfg.Postgres.DataDir),
	}
	if p, err := cluster.ReadPartition(r.cfg.Node.DataDir, now, config.PartitionStale(r.cfg.Checks.Interval)); err == nil {
		m.Partition = &p
	}
	if r.files != nil {
		m.SyncthingDeviceID, m.SyncthingAddress = r.files.deviceID, "tcp://"+r.cfg.SyncthingListen()
	}
	for name, res := range r.last {
		m.Checks[name] = res.Status
	}
	if o.pingErr == nil && o.stateErr == nil {
		st := o.state
		m.Timeline = st.Timeline
		if st.InRecovery {
			m.Role, m.ReceiveLSN, m.ReplayLSN = cluster.RoleStandby, st.ReceiveLSN, st.ReplayLSN
			if st.Receiver != nil {
				m.UpstreamHost, m.UpstreamPort = st.Receiver.SenderHost, st.Receiver.SenderPort
			}
			if o.leaderMember != nil && o.leader.Node != r.cfg.Node.Name {
				m.LagBytes = cluster.Lag(o.leaderMember.WriteLSN, st.ReplayLSN)
			}
		} else {
			m.Role, m.WriteLSN, m.LagBytes = cluster.RolePrimary, st.WriteLSN, 0
		}
	}
	return m
}

func (r *Runner) summary(o *observation, results map[string]Result) string {
	var failing []string
	for _, name := range Checks {
		if res, ok := results[name]; ok && res.Status != consul.Passing {
			failing = append(failing, name+" "+res.Status)
		}
	}
	role := "standby"
	if o.active() {
		role = "active"
	}
	if r.maintenance {
		role = "in maintenance, " + role
	}
	if len(failing) == 0 {
		return fmt.Sprintf("%s; all checks passing", role)
	}
	return fmt.Sprintf("%s; %s", role, strings.Join(failing, ", "))
}

// multiplier is the effective checks.ttl_multiplier.
func (r *Runner) multiplier() int {
	return cluster.Or(r.opts.CheckTTLMultiplier, r.cfg.Checks.TTLMultiplier)
}

// applyOptions takes the runtime options this round read. A new TTL
// multiplier needs the checks registered again, with their new TTLs.
func (r *Runner) applyOptions(o *observation) {
	if o.optionsErr != nil {
		return // keep the last known options through a Consul outage
	}
	before := r.multiplier()
	if !reflect.DeepEqual(r.opts, o.options) {
		r.log.Info("runtime options changed", "options", fmt.Sprintf("%+v", o.options))
	}
	r.opts = o.options
	if r.multiplier() != before {
		r.registered = false
	}
}

// observeCerts reads how long the node certificate and the CA are valid,
// on a node set up by cluster start or join.
func (r *Runner) observeCerts(o *observation) {
	if !r.cfg.TLS() {
		return
	}
	ca, cert, _ := r.cfg.TLSFiles()
	now := time.Now()
	for _, c := range []struct{ name, path string }{{"node certificate", cert}, {"cluster CA", ca}} {
		st := certState{name: c.name, path: c.path}
		pem, err := os.ReadFile(c.path)
		if err == nil {
			st.expiresIn, err = certs.ExpiresIn(pem, now)
		}
		st.err = err
		o.certs = append(o.certs, st)
	}
}
