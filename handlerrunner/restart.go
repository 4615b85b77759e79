package handlerrunner

import (
	"context"
	"fmt"
	"net/http"
	"time"

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

// restartReq asks the standby loop for a restart; done gets its outcome.
type restartReq struct {
	by   string
	done chan error
}

// restartWait bounds how long the API waits for the role loop to take a
// restart request and carry it out.
const restartWait = 2 * time.Minute

// handleRestart is POST /v1/node/restart.
func (r *Runner) handleRestart(w http.ResponseWriter, req *http.Request) {
	st := r.st.get()
	if st.Role != nodeapi.RoleStandby {
		writeError(w, http.StatusConflict, "%s is %s, not a standby: only a standby's postgres is restarted in place; for the active, understudy cluster restart --all moves the active role first (or set-active another node, then restart this one)", r.name, st.Role)
		return
	}
	// A restart may outlast the server's write timeout: it gets its own.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(restartWait + 10*time.Second))
	ctx, cancel := context.WithTimeout(req.Context(), restartWait)
	defer cancel()
	rq := restartReq{by: caller(req.Context()), done: make(chan error, 1)}
	started := time.Now()
	select {
	case r.restarts <- rq:
	case <-ctx.Done():
		writeError(w, http.StatusServiceUnavailable, "the role loop of %s did not take the restart within %v (it left the standby role?); see its log", r.name, restartWait)
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

// takeRestart carries out a pending restart request, if any, in the
// standby loop. l is the leader key as just read.
func (r *Runner) takeRestart(ctx context.Context, l cluster.Leader) {
	var rq restartReq
	select {
	case rq = <-r.restarts:
	default:
		return
	}
	rq.done <- r.restartStandby(ctx, l, rq.by)
}

func (r *Runner) restartStandby(ctx context.Context, l cluster.Leader, by string) error {
	r.log.Info("restarting postgres", "by", by)
	if err := r.pg.Stop(ctx, "fast"); err != nil {
		return err
	}
	var up *postgres.Upstream
	if r.upstream != "" && l.Node == r.upstream {
		up = &postgres.Upstream{Host: l.Address, Port: l.PostgresPort}
	}
	if err := r.pg.StartStandby(ctx, up); err != nil {
		return fmt.Errorf("start postgres again as a standby: %w", err)
	}
	r.record(ctx, cluster.Event{Kind: cluster.EventRestart, Reason: "postgres restarted", By: by})
	// What waited for this restart is in force now.
	var p cluster.Parameters
	if _, _, err := r.cc.GetJSON(ctx, r.keys.Parameters(), &p); err == nil {
		r.applyParameters(ctx, p)
	}
	return nil
}
