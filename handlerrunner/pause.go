package handlerrunner

import (
	"context"
	"net/http"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// Pause (understudy cluster pause) stops what understudy does on its own:
// while the paused key exists no standby stands for election and no
// PostgreSQL that stopped is started again (a standby's, or a demoted
// active's), so that an operator can work on PostgreSQL or the machines
// without the cluster reacting. What keeps one writer is not paused: the
// active renews its lease and fences itself when it cannot, and a stray
// primary is stopped. /status keeps answering by who holds the lock and
// runs the primary. A pause outlives restarts of the daemons; it ends with
// understudy cluster resume.

// refreshPause reads the paused key; on an error it keeps what it knew,
// since a Consul that does not answer moves nothing anyway.
func (r *Runner) refreshPause(ctx context.Context) {
	p, err := readOptional[cluster.Pause](ctx, r.cc, r.keys.Paused())
	if err != nil {
		return
	}
	r.st.update(func(st *nodeapi.NodeStatus) { st.Paused = p })
	r.metrics.paused.Set(b2f(p != nil))
}

// readOptional reads key, under a second: nil when it does not exist.
func readOptional[T any](ctx context.Context, cc *consul.Client, key string) (*T, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var v T
	_, found, err := cc.GetJSON(ctx, key, &v)
	if err != nil || !found {
		return nil, err
	}
	return &v, nil
}

// paused is the pause as last read, nil when the cluster runs.
func (r *Runner) paused() *cluster.Pause { return r.st.get().Paused }

// handlePause writes the paused key (any node may: it is one Consul write),
// or deletes it for /v1/cluster/resume, and records who did.
func (r *Runner) handlePause(w http.ResponseWriter, req *http.Request) {
	var in nodeapi.PauseRequest
	if !decodeOptional(w, req, &in, `{"reason": "..."}`) {
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	who := caller(req.Context())
	p := cluster.Pause{By: who, At: time.Now().UTC(), Reason: in.Reason}
	if p.By == "" {
		p.By = "node " + r.name + "'s API"
	}
	if err := r.cc.PutJSON(ctx, r.keys.Paused(), p); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot write the paused key: %v; is consul up and has it a leader?", err)
		return
	}
	r.log.Warn("cluster paused: no election and no postgres restart until understudy cluster resume", "by", p.By, "reason", p.Reason)
	r.record(req.Context(), cluster.Event{Kind: cluster.EventPause, From: "running", To: "paused", Reason: in.Reason, By: who})
	r.st.update(func(st *nodeapi.NodeStatus) { st.Paused = &p })
	ans := nodeapi.PauseAnswer{Paused: &p}
	// Paused with the lock free (an election or a switchover under way),
	// the cluster stays without an active until the resume: said, not
	// refused, since an operator may pause a cluster that flaps on
	// purpose.
	if ks, l, err := r.readLeader(ctx, false); err == nil && ks.Session == "" {
		ans.Warning = "no node holds the leader lock: the cluster has no active until understudy cluster resume"
	} else if err == nil && l.Node != "" {
		ans.Active = l.Node
	}
	writeJSON(w, http.StatusOK, ans)
}

func (r *Runner) handleResume(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	var was cluster.Pause
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Paused(), &was); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the paused key: %v; is consul up and has it a leader?", err)
		return
	} else if !found {
		r.st.update(func(st *nodeapi.NodeStatus) { st.Paused = nil })
		writeJSON(w, http.StatusOK, nodeapi.PauseAnswer{})
		return
	}
	if err := r.cc.Delete(ctx, r.keys.Paused()); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot delete the paused key: %v; is consul up and has it a leader?", err)
		return
	}
	r.log.Info("cluster resumed", "by", caller(req.Context()), "paused_by", was.By, "paused_at", was.At)
	r.record(req.Context(), cluster.Event{Kind: cluster.EventPause, From: "paused", To: "running", By: caller(req.Context())})
	r.st.update(func(st *nodeapi.NodeStatus) { st.Paused = nil })
	writeJSON(w, http.StatusOK, nodeapi.PauseAnswer{})
}
