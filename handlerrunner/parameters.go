package handlerrunner

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// The cluster-wide PostgreSQL parameters (understudy cluster config set)
// live in one key. Every node, in any role, writes them into its data
// directory and reloads its PostgreSQL when they change; a parameter that
// PostgreSQL reads at start only then waits for a restart, which the node
// reports (pending_restart) rather than doing on its own: restarting is the
// operator's call (understudy cluster restart --pending), since on the
// active it means a switchover. The loop runs beside the role loop and
// never holds it up.

// paramsWait is the blocking query's wait: also how often the node looks
// again at what its PostgreSQL says of its files (a restart, a switchover's
// included, clears pending_restart; a clone brings files to rewrite), so
// that what cluster restart --pending reads is at most this old.
const paramsWait = 2 * time.Second

// runParameters applies the parameters key until ctx ends.
func (r *Runner) runParameters(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		ks, next, err := r.cc.WatchKey(ctx, r.keys.Parameters(), index, paramsWait)
		if err != nil {
			r.warnEvery("parameters-watch", "cannot read the cluster-wide postgres parameters", "err", err)
			if !sleep(ctx, 2*time.Second) {
				return
			}
			index = 0
			continue
		}
		index = next
		var p cluster.Parameters
		if ks.Found {
			if err := json.Unmarshal(ks.Value, &p); err != nil {
				r.warnEvery("parameters-decode", "the cluster-wide postgres parameters are not understudy's JSON; fix them with understudy cluster config set", "err", err)
				continue
			}
		}
		r.applyParameters(ctx, p)
		// Bounds the rate should Consul answer at once every time.
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
}

// applyParameters writes p into the data directory, reloads a running
// PostgreSQL when the file changed, and records what PostgreSQL says of it
// in the node's status.
func (r *Runner) applyParameters(ctx context.Context, p cluster.Parameters) {
	var st nodeapi.ParametersState
	changed, err := r.pg.WriteParameters(p.Values)
	if err != nil {
		st.Error = err.Error()
		r.warnEvery("parameters-write", "cannot write the cluster-wide postgres parameters", "err", err)
	} else if r.pg.HasData() {
		// Applied only once written: a node without a data directory yet
		// (before its clone) has not.
		st.Version = p.At
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, running, _ := r.pg.Running(ctx)
	if changed && running {
		if err := r.pg.Reload(ctx); err != nil {
			st.Error = err.Error()
			r.log.Warn("cannot reload postgres after the cluster-wide parameters changed", "err", err)
		} else {
			r.log.Info("postgres reloaded: the cluster-wide parameters changed", "parameters", len(p.Values), "by", p.By)
		}
	}
	if running {
		if s, err := r.pg.Settings(ctx); err == nil {
			st.PendingRestart, st.Lowered, st.Errors = s.PendingRestart, s.Lowered, s.Errors
		} else if st.Error == "" {
			st.Error = err.Error()
		}
	}
	r.metrics.pendingRestart.Set(float64(len(st.PendingRestart)))
	r.st.update(func(ns *nodeapi.NodeStatus) { ns.Parameters = &st })
}

// handleConfig is GET /v1/cluster/config (the parameters) and PUT (a
// change: operators only, checked against this node's PostgreSQL first).
func (r *Runner) handleConfig(w http.ResponseWriter, req *http.Request) {
	switch req.Method {
	case http.MethodGet:
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		var p cluster.Parameters
		if _, _, err := r.cc.GetJSON(ctx, r.keys.Parameters(), &p); err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot read the parameters: %v; is consul up and has it a leader?", err)
			return
		}
		writeJSON(w, http.StatusOK, nodeapi.ConfigAnswer{Parameters: p})
	case http.MethodPut:
		if !operatorCaller(req.Context()) {
			writeError(w, http.StatusForbidden, "PUT %s needs an operator certificate; on a node, issue one with: understudy certs operator NAME", req.URL.Path)
			return
		}
		r.changeConfig(w, req)
	default:
		w.Header().Set("Allow", "GET, PUT")
		writeError(w, http.StatusMethodNotAllowed, "%s takes GET or PUT, not %s", req.URL.Path, req.Method)
	}
}

func (r *Runner) changeConfig(w http.ResponseWriter, req *http.Request) {
	var in cluster.ParameterChange
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, `request body: %v; send {"set": {"work_mem": "64MB"}, "unset": ["name"]}`, err)
		return
	}
	if len(in.Set)+len(in.Unset) == 0 {
		writeError(w, http.StatusBadRequest, `nothing to change; send {"set": {"work_mem": "64MB"}} or {"unset": ["work_mem"]}`)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	var refused []string
	for name, value := range in.Set {
		if err := errors.Join(cluster.ValidParameterName(name), cluster.ValidParameterValue(name, value)); err != nil {
			refused = append(refused, err.Error())
			continue
		}
		err := r.pg.CheckParameter(ctx, strings.ToLower(name), value)
		var pe *postgres.ParameterError
		if errors.As(err, &pe) {
			refused = append(refused, err.Error())
		} else if err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot check %s against %s's postgres: %v; send the change to a node whose postgres runs (the CLI sends it to the active)", name, r.name, err)
			return
		}
	}
	for _, name := range in.Unset {
		if err := cluster.ValidParameterName(name); err != nil {
			refused = append(refused, err.Error())
		}
	}
	if len(refused) > 0 {
		writeError(w, http.StatusBadRequest, "%s; nothing was changed", strings.Join(refused, "; "))
		return
	}
	who := caller(req.Context())
	// CAS: two operators changing different parameters at once both land.
	for range 5 {
		var cur cluster.Parameters
		index, _, err := r.cc.GetJSON(ctx, r.keys.Parameters(), &cur)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot read the parameters: %v; is consul up and has it a leader?", err)
			return
		}
		values, said := cur.Apply(in)
		if said == "" {
			writeJSON(w, http.StatusOK, nodeapi.ConfigAnswer{Parameters: cur})
			return
		}
		if err := r.pg.CheckParameterFile(ctx, values); err != nil {
			var pe *postgres.ParameterError
			if errors.As(err, &pe) {
				writeError(w, http.StatusBadRequest, "%v; nothing was changed", err)
			} else {
				writeError(w, http.StatusServiceUnavailable, "cannot check the parameters against %s's postgres: %v", r.name, err)
			}
			return
		}
		next := cluster.Parameters{Values: values, By: who, At: time.Now().UTC()}
		ok, err := r.cc.CASJSON(ctx, r.keys.Parameters(), next, index)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot write the parameters: %v; is consul up and has it a leader?", err)
			return
		}
		if !ok {
			continue
		}
		r.log.Info("cluster-wide postgres parameters changed", "change", said, "by", who)
		r.record(req.Context(), cluster.Event{Kind: cluster.EventConfig, Reason: said, By: who})
		writeJSON(w, http.StatusOK, nodeapi.ConfigAnswer{Parameters: next, Changed: said})
		return
	}
	writeError(w, http.StatusConflict, "the parameters kept changing under this request; retry")
}

// handleReload is POST /v1/node/reload: this node's PostgreSQL reads its
// configuration files again.
func (r *Runner) handleReload(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	if _, running, err := r.pg.Running(ctx); err != nil || !running {
		writeError(w, http.StatusConflict, "postgres does not run on %s; nothing to reload", r.name)
		return
	}
	if err := r.pg.Reload(ctx); err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	who := caller(req.Context())
	r.log.Info("postgres reloaded", "by", who)
	r.record(req.Context(), cluster.Event{Kind: cluster.EventReload, By: who})
	ans := nodeapi.ReloadAnswer{Node: r.name}
	if s, err := r.pg.Settings(ctx); err == nil {
		ans.PendingRestart, ans.Errors = s.PendingRestart, s.Errors
	}
	writeJSON(w, http.StatusOK, ans)
}
