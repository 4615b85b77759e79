package handlerrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
)

// removeNode takes a standby out of the cluster, on the active node: out of
// Consul's gossip pool and Raft peers, its member record deleted and its
// replication slot dropped. The node must be stopped first (its daemons and
// Consul agent), or a running agent would gossip its way back and its
// check-runner publish the record again; force skips that check, for a node
// that is gone but whose API address now answers for something else.
func (r *Runner) removeNode(ctx context.Context, name string, force bool) (map[string]any, int, error) {
	// The node removed is often one just lost, maybe the Consul cluster's
	// Raft leader.
	ks, l, err := r.readLeaderPatiently(ctx)
	if err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cannot read the leader key: %w", err)
	}
	if body, code, err := r.notTheActive(ks, l, "send the removal to"); err != nil {
		return body, code, err
	}
	if name == r.name {
		return nil, http.StatusConflict, fmt.Errorf("%s is the active node; set another node active first (understudy cluster set-active NODE), then remove it", name)
	}
	var m cluster.Member
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, found, err := r.cc.GetJSON(mctx, r.keys.Member(name), &m)
	cancel()
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	if !found {
		return nil, http.StatusNotFound, fmt.Errorf("no member named %q; see GET /v1/status/cluster for the members", name)
	}
	if !force {
		if _, err := r.askPeer(ctx, m); err == nil {
			return nil, http.StatusConflict, fmt.Errorf("%s is still running; stop its understudy daemons and Consul agent first (or pass force=true if that address is no longer %s)", name, name)
		}
	}
	consulNode := m.ConsulNode
	if consulNode == "" {
		consulNode = name
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.cc.RemoveNode(rctx, consulNode); err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	if err := r.cc.Delete(rctx, r.keys.Member(name)); err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	// Its maintenance and options go with it: a node joined later under
	// the same name starts afresh.
	for _, k := range []string{r.keys.Maintenance(name), r.keys.Options(name)} {
		if err := r.cc.Delete(rctx, k); err != nil {
			r.log.Warn("cannot delete a removed node's key; delete it by hand", "key", k, "err", err)
		}
	}
	// The slot goes with the member: EnsureSlots drops the slots of
	// non-members.
	r.ensureSlots(rctx)
	reason := "removed through the API"
	if n, err := r.deleteAgentTokens(rctx, consulNode); err != nil {
		r.log.Warn("cannot delete the removed node's consul agent tokens; delete them by hand (consul acl token list, then consul acl token delete)", "node", consulNode, "err", err)
		reason += fmt.Sprintf("; its consul agent tokens could not be deleted (%v): delete them by hand", err)
	} else if n > 0 {
		reason += fmt.Sprintf("; %d consul agent token(s) of it deleted", n)
	}
	r.log.Info("removed node", "removed", name, "consul_node", consulNode)
	r.record(ctx, cluster.Event{Kind: cluster.EventRemove, From: name, Reason: reason, By: caller(ctx)})
	return map[string]any{"removed": name}, http.StatusOK, nil
}

// deleteAgentTokens deletes the Consul agent tokens of a removed node with
// the management token this node keeps (the one joinACL made them with);
// nothing in a cluster whose Consul runs without ACLs.
func (r *Runner) deleteAgentTokens(ctx context.Context, consulNode string) (int, error) {
	if r.cfg.Consul.TokenFile == "" {
		return 0, nil
	}
	mgmt, err := os.ReadFile(r.cfg.ManagementTokenFile())
	if err != nil {
		return 0, fmt.Errorf("%w; cluster start and cluster join write it", err)
	}
	return r.cc.ACL(strings.TrimSpace(string(mgmt))).DeleteNodeTokens(ctx, consulNode)
}

// handleNodes serves DELETE /v1/cluster/nodes/NAME, PUT
// /v1/cluster/nodes/NAME/options and PUT and DELETE
// /v1/cluster/nodes/NAME/maintenance.
func (r *Runner) handleNodes(w http.ResponseWriter, req *http.Request) {
	rest := strings.TrimPrefix(req.URL.Path, "/v1/cluster/nodes/")
	name, sub, _ := strings.Cut(rest, "/")
	switch {
	case name == "" || strings.Contains(sub, "/"):
		writeError(w, http.StatusNotFound, "no such endpoint %s; see DELETE /v1/cluster/nodes/NAME, PUT /v1/cluster/nodes/NAME/options", req.URL.Path)
	case sub == "" && req.Method == http.MethodDelete:
		r.handleRemoveNode(w, req, name)
	case sub == "options" && req.Method == http.MethodPut:
		r.handleNodeOptions(w, req, name)
	case sub == "maintenance" && (req.Method == http.MethodPut || req.Method == http.MethodDelete):
		r.handleMaintenance(w, req, name)
	case sub == "" || sub == "options" || sub == "maintenance":
		writeError(w, http.StatusMethodNotAllowed, "%s takes DELETE (remove the node); .../options takes PUT; .../maintenance takes PUT (on) or DELETE (off)", req.URL.Path)
	default:
		writeError(w, http.StatusNotFound, "no such endpoint %s; see DELETE /v1/cluster/nodes/NAME, PUT /v1/cluster/nodes/NAME/options", req.URL.Path)
	}
}

// handleNodeOptions merges the given runtime options into options/NAME; the
// node's daemons apply them within an interval.
func (r *Runner) handleNodeOptions(w http.ResponseWriter, req *http.Request, name string) {
	var in cluster.NodeOptions
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `request body: %v; send e.g. {"check_ttl_multiplier": 3, "nofailover": true}`, err)
		return
	}
	if err := in.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
	defer cancel()
	if !r.isMember(ctx, w, name) {
		return
	}
	// Read, merge, write with CAS: two updates at once must not undo each
	// other.
	for range 5 {
		var cur cluster.NodeOptions
		index, found, err := r.cc.GetJSON(ctx, r.keys.Options(name), &cur)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot read the options of %s: %v", name, err)
			return
		}
		if !found {
			index = 0
		}
		merged := cur.Merge(in)
		ok, err := r.cc.CASJSON(ctx, r.keys.Options(name), merged, index)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot write the options of %s: %v", name, err)
			return
		}
		if ok {
			r.log.Info("runtime options set", "target", name, "options", string(mustJSON(merged)), "by", caller(req.Context()))
			r.record(req.Context(), cluster.Event{Kind: "options", To: name, Reason: "runtime options " + string(mustJSON(merged)), By: caller(req.Context())})
			writeJSON(w, http.StatusOK, map[string]any{"node": name, "options": merged})
			return
		}
	}
	writeError(w, http.StatusConflict, "the options of %s keep changing; retry", name)
}

// readLeaderPatiently is a consistent read of the leader key for an
// operator's call about a node just lost, maybe the Consul cluster's Raft
// leader: it gives Consul the few seconds it needs to elect another.
func (r *Runner) readLeaderPatiently(ctx context.Context) (consul.KeyState, cluster.Leader, error) {
	for deadline := time.Now().Add(15 * time.Second); ; {
		ks, l, err := r.readLeader(ctx, true)
		if err == nil || time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			return ks, l, err
		}
	}
}

// isMember reports whether name has a member record; false with the
// answer written (404, or 503 when Consul could not be read).
func (r *Runner) isMember(ctx context.Context, w http.ResponseWriter, name string) bool {
	var m cluster.Member
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Member(name), &m); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the members from consul: %v; is consul up and has it a leader?", err)
		return false
	} else if !found {
		writeError(w, http.StatusNotFound, "no member named %q; see GET /v1/status/cluster for the members", name)
		return false
	}
	return true
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func (r *Runner) handleRemoveNode(w http.ResponseWriter, req *http.Request, name string) {
	force := req.URL.Query().Get("force") == "true"
	res, code, err := r.removeNode(req.Context(), name, force)
	if err != nil {
		writeErrorBody(w, code, err.Error(), res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
