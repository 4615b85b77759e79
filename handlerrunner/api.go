package handlerrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/jsonfile"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// maxBody bounds what a request may send: the API takes small JSON only.
const maxBody = 64 << 10

// handler routes the API. Every error is JSON with a message that says what
// to do; a panic in a handler is turned into a 500, never a dead daemon.
func (r *Runner) handler() http.Handler {
	mux := http.NewServeMux()
	// Callers with credentials share one cap, taken once they are known,
	// so that anonymous callers cannot take the slots the peers' lease
	// grants and status calls need; the join call, which anyone may try,
	// has a small cap of its own; the open checks have none.
	sem, joins := make(chan struct{}, maxInFlight), make(chan struct{}, maxJoinsInFlight)
	route := func(need access, method, path string, h http.HandlerFunc) {
		serve := func(w http.ResponseWriter, req *http.Request) {
			if method != "" && req.Method != method {
				w.Header().Set("Allow", method)
				writeError(w, http.StatusMethodNotAllowed, "%s takes %s, not %s", path, method, req.Method)
				return
			}
			h(w, req)
		}
		switch need {
		case accessToken:
			serve = limit(joins, serve)
		case accessNode, accessOperator:
			serve = limit(sem, serve)
		}
		mux.HandleFunc(path, r.authorize(need, path, serve))
	}
	// The load balancer's checks answer GET, HEAD and OPTIONS alike, as
	// Patroni's do; / is /status, as Patroni's / is /primary, because
	// HAProxy's bare "option httpchk" sends OPTIONS /. Each is open exactly
	// when its GET is (api.open names /status for /).
	check := func(path, openAs string, h http.HandlerFunc) {
		mux.HandleFunc(path, r.authorize(accessOpen, openAs, healthMethods(openAs, h)))
	}
	check("/status", "/status", r.handleStatus)
	check("/{$}", "/status", r.handleStatus)
	check("/health", "/health", r.handleHealth)
	check("/replica", "/replica", r.handleReplica)
	route(accessOpen, http.MethodGet, "/metrics", promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP)
	route(accessNode, http.MethodGet, "/v1/status/node", r.handleNode)
	route(accessNode, http.MethodGet, "/v1/status/cluster", r.handleCluster)
	route(accessNode, http.MethodGet, "/v1/status/partition", r.handlePartition)
	route(accessNode, http.MethodGet, "/v1/consul/keyring", r.handleConsulKeyring)
	route(accessNode, http.MethodGet, "/v1/events", r.handleEvents)
	route(accessOperator, http.MethodPost, "/v1/cluster/switchover", r.handleSwitchover)
	route(accessOperator, "", "/v1/cluster/nodes/", r.handleNodes)
	route(accessOperator, http.MethodPost, "/v1/cluster/pause", r.handlePause)
	route(accessOperator, http.MethodPost, "/v1/cluster/resume", r.handleResume)
	// GET for nodes, PUT for operators (handleConfig checks).
	route(accessNode, "", "/v1/cluster/config", r.handleConfig)
	route(accessOperator, http.MethodPost, "/v1/node/reload", r.handleReload)
	route(accessOperator, http.MethodPost, "/v1/node/restart", r.handleRestart)
	route(accessOperator, http.MethodPost, "/v1/node/reinit", r.handleReinit)
	route(accessOperator, http.MethodPost, "/v1/cluster/failover", r.handleFailover)
	route(accessToken, http.MethodPost, "/v1/cluster/join", r.handleJoin)
	route(accessNode, http.MethodPost, "/v1/lease/grant", r.handleGrant)
	route(accessNode, http.MethodGet, "/v1/lease/grants", r.handleGrants)
	route(accessNode, "", "/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint %s %s; see /v1/status/cluster, /status, /health, /replica, /metrics", req.Method, req.URL.Path)
	})
	return recoverer(mux, r)
}

// healthMethods serves h for GET, and for HEAD and OPTIONS with the same
// status and headers and no body (Patroni's do_HEAD and do_OPTIONS): a
// load balancer's check reads the status line only, whichever method its
// configuration sends.
func healthMethods(path string, h http.HandlerFunc) http.HandlerFunc {
	const allow = "GET, HEAD, OPTIONS"
	return func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet:
			h(w, req)
		case http.MethodHead, http.MethodOptions:
			w.Header().Set("Allow", allow)
			h(statusOnly{w}, req)
		default:
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "%s takes %s, not %s", path, allow, req.Method)
		}
	}
}

// statusOnly passes a response's status and headers and drops its body.
type statusOnly struct{ http.ResponseWriter }

func (w statusOnly) Write(b []byte) (int, error) { return len(b), nil }

// serve runs the API until ctx ends.
func (r *Runner) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           r.handler(),
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the API on %s: %w", ln.Addr(), err)
	}
	return nil
}

func recoverer(next http.Handler, r *Runner) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				r.log.Error("panic in API handler", "path", req.URL.Path, "panic", p)
				writeError(w, http.StatusInternalServerError, "internal error; see the handler-runner's log")
			}
		}()
		next.ServeHTTP(w, req)
	})
}

// handleStatus is HAProxy's check: 200 on the active that is serving, 400
// on every other node and on an active that cannot confirm its lock.
func (r *Runner) handleStatus(w http.ResponseWriter, _ *http.Request) {
	st := r.st.get()
	body := nodeapi.StatusAnswer{Node: r.name, Role: st.Role}
	if r.st.serving(time.Now(), r.fencing.Lease) {
		if r.minority() != nil {
			body.Minority = true
			w.Header().Set(nodeapi.MinorityHeader, "true")
		}
		writeJSON(w, http.StatusOK, body)
		return
	}
	writeJSON(w, http.StatusBadRequest, body)
}

// handleHealth is 200 when the node is healthy in any role: PostgreSQL
// answers and the node's checks pass (it has a session).
func (r *Runner) handleHealth(w http.ResponseWriter, req *http.Request) {
	st := r.nodeStatus(req.Context())
	code := http.StatusOK
	if !st.Postgres.Running || st.Postgres.Error != "" || !st.HasSession {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

// handleReplica is 200 on a standby that streams from the active within
// maximum_lag_on_failover (or ?lag=BYTES).
func (r *Runner) handleReplica(w http.ResponseWriter, req *http.Request) {
	maxLag := r.cfg.Postgres.MaximumLagOnFailover
	if s := req.URL.Query().Get("lag"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "lag=%q is not a number of bytes; write e.g. ?lag=1048576", s)
			return
		}
		maxLag = v
	}
	st := r.nodeStatus(req.Context())
	lag := r.lagBytes(req.Context(), st)
	body := map[string]any{"node": r.name, "role": st.Role, "streaming": st.Postgres.Streaming, "lag_bytes": lag}
	if st.Role == nodeapi.RoleStandby && st.Postgres.Streaming && lag >= 0 && lag <= maxLag {
		writeJSON(w, http.StatusOK, body)
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, body)
}

func (r *Runner) handleNode(w http.ResponseWriter, req *http.Request) {
	writeJSON(w, http.StatusOK, r.nodeStatus(req.Context()))
}

// handlePartition is this node's consul-watcher's view, read from the
// local file it writes every round: it answers in a partition, where the
// node's Consul may take no writes. A view older than
// config.PartitionStale says so (stale: true); none at all is a 503.
func (r *Runner) handlePartition(w http.ResponseWriter, _ *http.Request) {
	p, err := cluster.ReadPartition(r.cfg.Node.DataDir, time.Now(), config.PartitionStale(r.cfg.Checks.Interval))
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (r *Runner) handleCluster(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	// Without a Consul leader (an outage, in which failsafe may keep the
	// active serving) the operator still sees the cluster as this node's
	// server last knew it, marked stale: at once when the server knows it
	// has no leader, else once a read that needs one fails.
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	sks, known, serr := r.cc.GetKeyStaleLeader(sctx, r.keys.Leader())
	cancel()
	if serr == nil && !known {
		r.writeClusterStale(ctx, w, sks)
		return
	}
	ks, l, err := r.readLeader(ctx, false)
	if err != nil {
		if serr != nil {
			writeError(w, http.StatusServiceUnavailable, "cannot read the cluster from consul: %v; is the local consul agent running?", err)
			return
		}
		r.writeClusterStale(ctx, w, sks)
		return
	}
	out := nodeapi.ClusterStatus{Cluster: r.cfg.Cluster.Name, Members: []cluster.Member{}}
	if ks.Session != "" {
		out.Leader = l.Node
	}
	if nm, found, _, err := r.readNextMaster(ctx); err == nil && found {
		out.NextMaster = &nm
	}
	for _, m := range r.members(ctx) {
		if m.Address != "" || m.Name != r.name {
			out.Members = append(out.Members, m)
		}
	}
	if h, err := r.cc.ServersHealth(ctx); err == nil {
		sh := nodeapi.ServersHealth(h)
		out.Consul = &sh
	}
	var p cluster.Pause
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Paused(), &p); err == nil && found {
		out.Paused = &p
	}
	if mt, err := r.maintenances(ctx); err == nil && len(mt) > 0 {
		out.Maintenance = mt
	}
	writeJSON(w, http.StatusOK, out)
}

// writeClusterStale answers the cluster status from the leader key ks and
// the members as the local Consul server has them.
func (r *Runner) writeClusterStale(ctx context.Context, w http.ResponseWriter, ks consul.KeyState) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out := nodeapi.ClusterStatus{Cluster: r.cfg.Cluster.Name, Members: []cluster.Member{}, Stale: true}
	if l := decodeLeader(ks); ks.Session != "" {
		out.Leader = l.Node
	}
	_ = r.cc.ListJSONStale(ctx, r.keys.Members(), func(_ string, raw []byte) error {
		var m cluster.Member
		if json.Unmarshal(raw, &m) == nil && m.Name != "" {
			out.Members = append(out.Members, m)
		}
		return nil
	})
	writeJSON(w, http.StatusOK, out)
}

func (r *Runner) handleEvents(w http.ResponseWriter, req *http.Request) {
	limit := 100
	if s := req.URL.Query().Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > 10000 {
			writeError(w, http.StatusBadRequest, "limit=%q: write a number from 1 to 10000", s)
			return
		}
		limit = v
	}
	evs, err := r.cc.Events(req.Context(), r.keys.Events(), limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read events from consul: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func (r *Runner) handleSwitchover(w http.ResponseWriter, req *http.Request) {
	var body nodeapi.SwitchoverRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `request body: %v; send {"target": "NODE", "timeout": "60s"}`, err)
		return
	}
	timeout, err := parseTimeout(body.Timeout)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if body.Target == "" {
		writeError(w, http.StatusBadRequest, `no target; send {"target": "NODE"} with the name of a standby`)
		return
	}
	// The answer comes when the target holds the lock: past the server's
	// write timeout when the switchover's own is longer.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second))
	res, code, err := r.switchover(req.Context(), body.Target, timeout)
	if err != nil {
		writeErrorBody(w, code, err.Error(), res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// parseTimeout is a request's wait for a change to complete: 60 s when
// unset, at most an hour.
func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 60 * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("timeout %q: write a duration up to 1h, like \"60s\"", s)
	}
	return d, nil
}

// decodeOptional decodes a request body that may be absent into v; false
// (the answer written) when it is not the JSON example shows.
func decodeOptional(w http.ResponseWriter, req *http.Request, v any, example string) bool {
	if req.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "request body: %v; send %s or nothing", err, example)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, a ...any) {
	writeErrorBody(w, code, fmt.Sprintf(format, a...), nil)
}

func writeErrorBody(w http.ResponseWriter, code int, msg string, extra map[string]any) {
	body := map[string]any{"error": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, code, body)
}

// handleConsulKeyring gives the gossip keyring of this node's Consul agent
// (as its consul-watcher keeps it) to another node's consul-watcher, which
// resets its agent to join this node's Consul cluster at the heal of an
// active-minority partition. Node certificates only, and only over TLS:
// the key admits its holder to the cluster's gossip.
func (r *Runner) handleConsulKeyring(w http.ResponseWriter, req *http.Request) {
	if r.clientCAs == nil || !strings.HasPrefix(caller(req.Context()), "node ") {
		writeError(w, http.StatusForbidden, "the consul keyring is given to the cluster's nodes only, over TLS with a node certificate")
		return
	}
	var k nodeapi.ConsulKeyring
	found, err := jsonfile.Read(cluster.ConsulKeyringFile(r.cfg.Node.DataDir), &k)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	case !found || len(k.Keys) == 0:
		writeError(w, http.StatusNotFound, "no consul keyring kept on %s: its consul-watcher keeps it only in partition_mode active-minority, on a node set up by cluster start or join", r.name)
	default:
		writeJSON(w, http.StatusOK, k)
	}
}

// minority is the side this node runs on in an active-minority
// partition, from its consul-watcher's fresh view; nil when none.
func (r *Runner) minority() *cluster.Minority {
	if r.cfg.Cluster.PartitionMode != config.PartitionActiveMinority {
		return nil
	}
	p, err := cluster.ReadPartition(r.cfg.Node.DataDir, time.Now(), config.PartitionStale(r.cfg.Checks.Interval))
	if err != nil || p.Stale {
		return nil
	}
	return p.Minority
}
