package handlerrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// Maintenance (understudy node maintenance on|off NAME) takes one node out
// of every choice of the next active while an operator works on it: the
// election excludes it (each electing node reads maintenance/ itself, and
// the node does not stand for election), a switchover or an operator's
// failover to it is refused with the reason, and its alarms are shown as
// quieted: its checks still run and are reported to Consul (its session,
// and so its eligibility, still follow them), but nodes list and cluster
// status show them as the maintenance's rather than as the cluster's
// problems, /metrics has understudy_node_maintenance to silence alerts
// with, and the events it records carry maintenance=true.
//
// The active node cannot be put in maintenance: the issue is silent, and
// an active that must not be chosen would have to step down with no
// planned successor, which is a switchover's job. The operator is told to
// switch over first. A node that becomes active while in maintenance (only
// by a race with an election already under way) stays active: demoting it
// would be an unplanned failover; nodes list shows it.

// refreshMaintenance reads this node's maintenance key; on an error it
// keeps what it knew.
func (r *Runner) refreshMaintenance(ctx context.Context) {
	m, err := readOptional[cluster.Maintenance](ctx, r.cc, r.keys.Maintenance(r.name))
	if err != nil {
		return
	}
	r.st.update(func(st *nodeapi.NodeStatus) { st.Maintenance = m })
	r.metrics.maintenance.Set(b2f(m != nil))
}

// inMaintenance is this node's maintenance as last read, nil when none.
func (r *Runner) inMaintenance() *cluster.Maintenance { return r.st.get().Maintenance }

// maintenances reads every node's maintenance, by name.
func (r *Runner) maintenances(ctx context.Context) (map[string]cluster.Maintenance, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := map[string]cluster.Maintenance{}
	err := r.cc.ListJSON(ctx, r.keys.Maintenances(), func(key string, raw []byte) error {
		var m cluster.Maintenance
		if json.Unmarshal(raw, &m) == nil {
			out[strings.TrimPrefix(key, r.keys.Maintenances())] = m
		}
		return nil
	})
	return out, err
}

// handleMaintenance serves PUT (on) and DELETE (off)
// /v1/cluster/nodes/NAME/maintenance.
func (r *Runner) handleMaintenance(w http.ResponseWriter, req *http.Request, name string) {
	var in nodeapi.MaintenanceRequest
	if req.Method == http.MethodPut && !decodeOptional(w, req, &in, `{"reason": "..."}`) {
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	// Taking a node out of maintenance needs no membership: a removed
	// node's key must not outlive it unclearable.
	if req.Method == http.MethodPut && !r.isMember(ctx, w, name) {
		return
	}
	who := caller(req.Context())
	if req.Method == http.MethodDelete {
		if err := r.cc.Delete(ctx, r.keys.Maintenance(name)); err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot delete the maintenance key of %s: %v; is consul up and has it a leader?", name, err)
			return
		}
		r.log.Info("maintenance ended", "target", name, "by", who)
		r.record(req.Context(), cluster.Event{Kind: cluster.EventMaintenance, From: "off", To: name, Reason: name + " out of maintenance", By: who})
		writeJSON(w, http.StatusOK, nodeapi.MaintenanceAnswer{Node: name})
		return
	}
	if code, err := r.mayMaintain(ctx, name); err != nil {
		writeError(w, code, "%v", err)
		return
	}
	mt := cluster.Maintenance{By: who, At: time.Now().UTC(), Reason: in.Reason}
	if mt.By == "" {
		mt.By = "node " + r.name + "'s API"
	}
	if err := r.cc.PutJSON(ctx, r.keys.Maintenance(name), mt); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot write the maintenance key of %s: %v; is consul up and has it a leader?", name, err)
		return
	}
	r.log.Warn("node in maintenance: never chosen as active until understudy node maintenance off", "target", name, "by", mt.By, "reason", mt.Reason)
	r.record(req.Context(), cluster.Event{Kind: cluster.EventMaintenance, From: "on", To: name, Reason: in.Reason, By: who})
	writeJSON(w, http.StatusOK, nodeapi.MaintenanceAnswer{Node: name, Maintenance: &mt})
}

// mayMaintain says why name may not be put in maintenance now: it is the
// active, or the election under way has chosen it (it would take the lock
// in a moment).
func (r *Runner) mayMaintain(ctx context.Context, name string) (int, error) {
	ks, l, err := r.readLeader(ctx, true)
	if err != nil {
		return http.StatusServiceUnavailable, fmt.Errorf("cannot read the leader key: %w; is consul up and has it a leader?", err)
	}
	if ks.Session != "" && l.Node == name {
		return http.StatusConflict, fmt.Errorf("%s is the active node: switch over first: understudy cluster set-active OTHER-NODE, then understudy node maintenance on %s", name, name)
	}
	if ks.Session == "" {
		if nm, found, _, err := r.readNextMaster(ctx); err == nil && found && nm.Term == ks.LockIndex && nm.Node == name {
			return http.StatusConflict, fmt.Errorf("the election under way chose %s; wait until it is over (understudy cluster status), then switch over and retry", name)
		}
	}
	return 0, nil
}
