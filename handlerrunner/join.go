package handlerrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// Failed joins from one address: at most joinFailMax a joinFailWindow;
// past that 429 until the oldest failure leaves the window. At most
// joinEventMax refused joins a window are recorded as events (every one is
// logged), so that many addresses cannot fill Consul with them.
const (
	joinFailMax    = 5
	joinFailWindow = time.Minute
	joinFailKeys   = 1024
	joinEventMax   = 12
)

// handleJoin answers a joining node, on the active node of a TLS cluster
// only. Nothing about the cluster is said before the token is checked: a
// caller without a good one learns only that (403), and one that keeps
// failing is held off (429). A refused join leaves nothing in the cluster
// but its event.
func (r *Runner) handleJoin(w http.ResponseWriter, req *http.Request) {
	if !r.cfg.TLS() || req.TLS == nil {
		writeError(w, http.StatusNotFound, "this node was not set up by cluster start or join (no TLS): it cannot take joins")
		return
	}
	ip := remoteIP(req.RemoteAddr)
	if d := r.joinFails.wait(ip, time.Now()); d > 0 {
		secs := int(math.Ceil(d.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		// One key for every address: the warnings' map must not grow
		// with the addresses of an attack.
		r.warnEvery("join-limited", "join refused: too many failed joins", "from", req.RemoteAddr, "retry_after", secs)
		writeError(w, http.StatusTooManyRequests, "too many failed joins from %s: try again in %d s, with the newest join token", ip, secs)
		return
	}
	var in nodeapi.JoinRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `request body: %v; send {"token": "...", "node": "NAME", "address": "IP"}`, err)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	var tok certs.JoinTokenRecord
	if _, _, err := r.cc.GetJSON(ctx, r.keys.JoinToken(), &tok); err != nil {
		// The error names keys and agents: the log has it, the caller
		// (not yet known to hold a token) does not.
		r.warnEvery("join-token-read", "cannot read the join token", "err", err)
		writeError(w, http.StatusServiceUnavailable, "this node cannot check join tokens now (its Consul agent does not answer); try again, or join through another node")
		return
	}
	// A missing key leaves tok empty, which admits nobody.
	if err := tok.Check(in.Token, time.Now()); err != nil {
		r.refuseJoin(ctx, w, req, in.Node, err)
		return
	}
	if in.Version != "" && in.Version != r.version {
		writeError(w, http.StatusConflict, "version mismatch: this cluster runs understudy %s and the joining node %s; install %s on the joining node", r.version, in.Version, r.version)
		return
	}
	ks, l, err := r.readLeader(ctx, true)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the leader key: %v", err)
		return
	}
	if body, code, err := r.notTheActive(ks, l, "join through"); err != nil {
		writeErrorBody(w, code, err.Error(), body)
		return
	}
	if in.Node == "" || strings.ContainsAny(in.Node, "/ ") || in.Address == "" {
		writeError(w, http.StatusBadRequest, "node and address are required: the joining node's name and the address its peers reach it at")
		return
	}
	var m cluster.Member
	if _, found, _ := r.cc.GetJSON(ctx, r.keys.Member(in.Node), &m); found && m.Address != in.Address {
		writeError(w, http.StatusConflict, "a member named %s is in the cluster already at %s; pick another node.name, or remove it first (understudy cluster nodes remove %s)", in.Node, m.Address, in.Node)
		return
	}
	dir := filepath.Dir(r.cfg.Consul.CAFile)
	caCert, err1 := os.ReadFile(filepath.Join(dir, certs.CAFile))
	caKey, err2 := os.ReadFile(filepath.Join(dir, certs.CAKeyFile))
	gossip, err3 := os.ReadFile(filepath.Join(dir, certs.GossipKeyFile))
	pgPaths := certs.PostgresPaths(dir)
	pgCACert, err4 := os.ReadFile(pgPaths.CA)
	pgCAKey, err5 := os.ReadFile(pgPaths.CAKey)
	if err := joinErr(err1, err2, err3, err4, err5); err != nil {
		r.log.Error("cannot answer a join", "err", err)
		writeError(w, http.StatusInternalServerError, "this node lacks its cluster TLS material: %v", err)
		return
	}
	addrs, err := r.cc.GossipAddrs(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	acl, err := r.joinACL(ctx, in.Node)
	if err != nil {
		r.log.Error("cannot answer a join", "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot create the joining node's Consul agent token: %v", err)
		return
	}
	r.log.Info("answered a join", "joiner", in.Node, "address", in.Address)
	r.record(ctx, cluster.Event{Kind: cluster.EventJoin, To: in.Node, Reason: "joined at " + in.Address})
	writeJSON(w, http.StatusOK, nodeapi.JoinResponse{
		Cluster: r.cfg.Cluster.Name, KVPrefix: r.cfg.Cluster.KVPrefix,
		CACert: string(caCert), CAKey: string(caKey), GossipKey: strings.TrimSpace(string(gossip)),
		ConsulJoin: addrs, Active: r.name, PostgresHost: r.cfg.Postgres.Host, PostgresPort: r.cfg.Postgres.Port,
		PostgresCACert: string(pgCACert), PostgresCAKey: string(pgCAKey), ACL: acl,
	})
}

// refuseJoin answers a join whose token was refused (why, a
// *certs.TokenError), counts it against the caller's address, logs it and
// records it as an event.
func (r *Runner) refuseJoin(ctx context.Context, w http.ResponseWriter, req *http.Request, joiner string, why error) {
	now := time.Now()
	// The name comes from a caller that proved nothing: what is logged and
	// kept in Consul of it is bounded.
	joiner = strconv.QuoteToASCII(joiner)
	if len(joiner) > 66 {
		joiner = joiner[:64] + "..."
	}
	r.joinFails.fail(remoteIP(req.RemoteAddr), now)
	r.log.Warn("join refused", "from", req.RemoteAddr, "joiner", joiner, "why", why)
	if r.joinEvents.wait("", now) == 0 {
		r.joinEvents.fail("", now)
		r.record(ctx, cluster.Event{Kind: cluster.EventJoinRefused, To: joiner, Reason: why.Error(),
			Details: map[string]string{"from": req.RemoteAddr}})
	}
	var msg string
	switch {
	case errors.Is(why, certs.ErrTokenExpired):
		msg = fmt.Sprintf("%v: issue a new one with `understudy cluster token` on a node", why)
	case errors.Is(why, certs.ErrTokenRevoked):
		msg = fmt.Sprintf("%v (a newer one replaced it): use the newest token, or issue one with `understudy cluster token` on a node", why)
	default:
		msg = fmt.Sprintf("%v: use the newest token that `understudy cluster start` or `understudy cluster token` printed", why)
	}
	writeError(w, http.StatusForbidden, "%s", msg)
}

// joinACL creates the joiner's Consul agent token with the management
// token this node keeps, and returns it with the tokens every node shares;
// nil on a node whose Consul clients use no token file (a cluster whose
// Consul runs without ACLs). A join run again creates another agent token;
// the one before stays until the node is removed (deleteAgentTokens).
func (r *Runner) joinACL(ctx context.Context, node string) (*nodeapi.JoinACL, error) {
	if r.cfg.Consul.TokenFile == "" {
		return nil, nil
	}
	mgmt, err1 := os.ReadFile(r.cfg.ManagementTokenFile())
	daemons, err2 := os.ReadFile(r.cfg.Consul.TokenFile)
	if err := joinErr(err1, err2); err != nil {
		return nil, fmt.Errorf("%w; cluster start and cluster join write it", err)
	}
	secret, err := consul.NewSecret()
	if err != nil {
		return nil, err
	}
	m := strings.TrimSpace(string(mgmt))
	if err := r.cc.ACL(m).CreateToken(ctx, consul.AgentToken(node, secret)); err != nil {
		return nil, err
	}
	return &nodeapi.JoinACL{AgentToken: secret, DaemonsToken: strings.TrimSpace(string(daemons)), ManagementToken: m}, nil
}

func joinErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
