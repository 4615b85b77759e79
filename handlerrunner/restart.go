package handlerrunner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// A restart of a standby's PostgreSQL (understudy cluster restart) is done
// by the role loop itself, between two looks at the leader key: the loop
// would otherwise see PostgreSQL stop and start it again at the same time.
// The active's PostgreSQL is never restarted in place: that would stop the
// cluster's writes for as long as the restart takes with nobody else to
// take them; cluster restart moves the active role first (a switchover,
// which stops and starts the old active's PostgreSQL on the way).

// restartReq asks the role loop for a restart of PostgreSQL, or with
// reinit for its data directory to be cloned afresh from the active (the
// old one kept aside); done gets the outcome, or for a reinit nil once the
// loop has taken it (a clone may take hours: its outcome is in the
// events and in the node's status).
type restartReq struct {
	by     string
	reinit bool
	// active: a restart in place of the active's PostgreSQL, taken by the
	// active loop (restartActive).
	active bool
	done   chan error
}

// restartWait bounds how long the API waits for the role loop to take a
// restart request and carry it out; takeWait how long it waits for the
// loop to take one (the loop looks every checks interval, or between two
// attempts to rejoin).
const (
	restartWait = 2 * time.Minute
	takeWait    = 30 * time.Second
)

// handleRestart is POST /v1/node/restart: a standby's PostgreSQL, or with
// ?active=1 the active's, in place.
func (r *Runner) handleRestart(w http.ResponseWriter, req *http.Request) {
	st := r.st.get()
	active := req.URL.Query().Get("active") == "1"
	switch {
	case active && st.Role != nodeapi.RoleActive:
		writeError(w, http.StatusConflict, "%s is %s, not the active node: nothing was restarted; see understudy cluster status", r.name, st.Role)
		return
	case !active && st.Role != nodeapi.RoleStandby:
		writeError(w, http.StatusConflict, "%s is %s, not a standby: only a standby's postgres is restarted in place; for the active, understudy cluster restart --all moves the active role first (or set-active another node, then restart this one)", r.name, st.Role)
		return
	}
	// A restart may outlast the server's write timeout: it gets its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(restartWait + 10*time.Second))
	ctx, cancel := context.WithTimeout(req.Context(), restartWait)
	defer cancel()
	rq := restartReq{by: caller(req.Context()), active: active, done: make(chan error, 1)}
	started := time.Now()
	take := time.NewTimer(takeWait)
	defer take.Stop()
	select {
	case r.restarts <- rq:
	case <-take.C:
		writeError(w, http.StatusServiceUnavailable, "the role loop of %s did not take the restart within %v (it left the standby role?); see its log", r.name, takeWait)
		return
	case <-ctx.Done():
		return
	}
	select {
	case err := <-rq.done:
		if err != nil {
			writeError(w, http.StatusInternalServerError, "restart postgres on %s: %v", r.name, err)
			return
		}
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, "the restart of postgres on %s did not end within %v; see its log", r.name, restartWait)
		return
	}
	writeJSON(w, http.StatusOK, nodeapi.RestartAnswer{Node: r.name, Took: time.Since(started).Round(time.Millisecond).String()})
}

// takeRestart carries out a pending request, if any, in the standby or
// rejoining loop; l is the leader key as just read, held by another node.
// It tells whether the data directory was cloned afresh (the node then is
// a standby of l.Node).
func (r *Runner) takeRestart(ctx context.Context, role nodeapi.Role, l cluster.Leader) (recloned bool) {
	var rq restartReq
	select {
	case rq = <-r.restarts:
	default:
		return false
	}
	switch {
	case rq.active:
		rq.done <- fmt.Errorf("%s is %s now, not the active node; nothing was restarted", r.name, role)
	case rq.reinit:
		return r.reinit(ctx, l, rq.by, rq.done)
	case role != nodeapi.RoleStandby:
		rq.done <- fmt.Errorf("%s is %s, not a standby: its postgres is being started by understudy already; see its log, or understudy cluster reinit %s", r.name, role, r.name)
	default:
		rq.done <- r.restartStandby(ctx, l, rq.by)
	}
	return false
}

// reinit replaces the data directory with a clone of the active's. taken
// is answered once PostgreSQL is stopped: from then on the node's status
// says it is not streaming until the clone runs.
func (r *Runner) reinit(ctx context.Context, l cluster.Leader, by string, taken chan<- error) bool {
	r.log.Warn("reinitializing postgres: cloning afresh from the active node (the old data directory is kept aside)", "active", l.Node, "by", by)
	// Immediate: a damaged server may not finish a checkpoint, and its data
	// is being replaced anyway (and kept aside as it is).
	if err := r.pg.Stop(ctx, "immediate"); err != nil {
		r.log.Error("reinit: cannot stop postgres", "err", err)
		taken <- fmt.Errorf("stop postgres: %w", err)
		return false
	}
	taken <- nil
	up := postgres.Upstream{Host: l.Address, Port: l.PostgresPort}
	start := time.Now()
	aside, err := r.pg.CloneKeepingAside(ctx, up, nil)
	if err == nil {
		r.wasPrimary = false
		err = r.pg.StartStandby(ctx, &up)
	}
	if err != nil {
		r.log.Error("reinit failed", "active", l.Node, "err", err)
		r.record(ctx, cluster.Event{Kind: cluster.EventReinit, Reason: "failed: " + err.Error(), By: by})
		return false
	}
	r.upstream = l.Node
	took := time.Since(start).Round(time.Millisecond)
	r.log.Info("reinitialized postgres from the active node", "active", l.Node, "old_data_dir", aside, "took", took)
	r.record(ctx, cluster.Event{Kind: cluster.EventReinit, Reason: "cloned afresh from " + l.Node + "; the old data directory is in " + orNone(aside), By: by,
		Details: map[string]string{"aside": aside, "took": took.String()}})
	return true
}

func orNone(s string) string {
	if s == "" {
		return "(none: it was empty)"
	}
	return s
}

// handleReinit is POST /v1/node/reinit: answered once the role loop has
// taken the request.
func (r *Runner) handleReinit(w http.ResponseWriter, req *http.Request) {
	st := r.st.get()
	if st.Role != nodeapi.RoleStandby && st.Role != nodeapi.RoleRejoining {
		writeError(w, http.StatusConflict, "%s is %s: only a standby (or a node trying to rejoin) is cloned afresh; the active's data is the cluster's", r.name, st.Role)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), takeWait)
	defer cancel()
	rq := restartReq{by: caller(req.Context()), reinit: true, done: make(chan error, 1)}
	select {
	case r.restarts <- rq:
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, "the role loop of %s did not take the reinit within %v (no active node to clone from?); see its log", r.name, takeWait)
		return
	}
	if err := <-rq.done; err != nil {
		writeError(w, http.StatusInternalServerError, "reinit of %s: %v; nothing was changed", r.name, err)
		return
	}
	writeJSON(w, http.StatusAccepted, nodeapi.RestartAnswer{Node: r.name})
}

func (r *Runner) restartStandby(ctx context.Context, l cluster.Leader, by string) error {
	if err := r.standbyWouldStart(ctx); err != nil {
		return err
	}
	r.log.Info("restarting postgres", "by", by)
	return r.restartPostgres(ctx, by, "postgres restarted", func() error {
		if err := r.pg.StartStandby(ctx, r.followed(l)); err != nil {
			return fmt.Errorf("start postgres again as a standby: %w", err)
		}
		return nil
	})
}

// belowPrimaryWait bounds how long a standby's restart waits for the
// standby to learn that its primary runs values as low as its own next
// ones: after the primary's restart (cluster restart --all, lowering one)
// the standby streams again within wal_retrieve_retry_interval (5 s) and
// learns them from the first record it replays.
const belowPrimaryWait = 15 * time.Second

// standbyWouldStart is nil when the standby's PostgreSQL, stopped now,
// would start again: a standby whose next value of one of
// postgres.StandbyAtLeastPrimary is lower than its primary's refuses to
// start ("recovery aborted because of insufficient parameter settings")
// and would stay down. It waits up to belowPrimaryWait for the primary's
// values to come down, and otherwise says what to do, with nothing stopped.
func (r *Runner) standbyWouldStart(ctx context.Context) error {
	deadline := time.Now().Add(belowPrimaryWait)
	for {
		next, err := r.pg.NextSettings(ctx)
		if err != nil {
			return err
		}
		cd, err := r.pg.ControlData(ctx)
		if err != nil {
			return err
		}
		below := postgres.BelowPrimary(next, cd.PrimarySettings)
		if len(below) == 0 {
			return nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			return fmt.Errorf("postgres would start with %s, lower than its primary runs, and would refuse to start as its standby; nothing was restarted: the primary must run the lower values first (understudy cluster restart --all restarts the active in place first when it has them pending)", strings.Join(below, ", "))
		}
	}
}

// restartActive restarts the active's PostgreSQL in place, from the active
// loop (which holds the lock and the lease all along): the one way to lower
// a parameter a standby needs at least the primary's value of
// (postgres.StandbyAtLeastPrimary), since whichever node is the primary
// must run the lower value before any standby does. Writes pause for the
// restart; no other node may take over meanwhile (the checks report the
// restart as planned, so the session and the lock stay). A PostgreSQL that
// does not start again ends the active role: the caller steps down. So
// does a lease lost meanwhile (lost closed): PostgreSQL is then not started
// at all, and should the lease run out after this look the watchdog stops
// it, as it would any primary.
func (r *Runner) restartActive(ctx context.Context, by string, lost <-chan struct{}) error {
	r.log.Warn("restarting postgres on the active node in place; writes pause until it is back", "by", by)
	return r.restartPostgres(ctx, by, "postgres restarted in place on the active node", func() error {
		select {
		case <-lost:
			return errors.New("the lease was lost during the restart; postgres stays stopped")
		default:
		}
		if err := r.pg.StartPrimary(ctx); err != nil {
			return fmt.Errorf("start postgres again as the primary: %w", err)
		}
		return nil
	})
}

// restartPostgres stops PostgreSQL (fast) and starts it with start, within
// a planned restart window, records the restart and applies the parameters
// that waited for it.
func (r *Runner) restartPostgres(ctx context.Context, by, reason string, start func() error) error {
	// The check-runner reports this restart as planned, which keeps the
	// node's session (checkrunner/planned.go). Without the window it would
	// be reported as a failure: worth a warning, not a refusal.
	window := checkrunner.PlannedRestartFile(r.cfg.Node.DataDir)
	if err := checkrunner.BeginPlannedRestart(window, by, time.Now(), restartWait); err != nil {
		r.log.Warn("the check-runner will report this restart as a failure; the node's consul session ends until postgres is back", "err", err)
	}
	defer func() {
		if err := checkrunner.EndPlannedRestart(window, time.Now()); err != nil {
			r.log.Warn("cannot end the planned restart window; it ends by itself", "err", err, "within", restartWait)
		}
	}()
	started := time.Now()
	if err := r.pg.Stop(ctx, "fast"); err != nil {
		return err
	}
	if err := start(); err != nil {
		return err
	}
	r.record(ctx, cluster.Event{Kind: cluster.EventRestart, Reason: reason, By: by,
		Details: map[string]string{"took": time.Since(started).Round(time.Millisecond).String()}})
	// What waited for this restart is in force now.
	var p cluster.Parameters
	if _, _, err := r.cc.GetJSON(ctx, r.keys.Parameters(), &p); err == nil {
		r.applyParameters(ctx, p)
	}
	return nil
}
