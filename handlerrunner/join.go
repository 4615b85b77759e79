package handlerrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
)

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	Token   string `json:"token"`
	Node    string `json:"node"`
	Address string `json:"address"`
	// Version is the joining node's understudy version: a cluster runs one.
	Version string `json:"version,omitempty"`
}

// JoinResponse is what a joining node needs: the cluster's CA (certificate
// and key, so whichever node is active later can sign), the Consul gossip
// key and servers to join, and where the active's PostgreSQL is to clone.
type JoinResponse struct {
	Cluster      string   `json:"cluster"`
	KVPrefix     string   `json:"kv_prefix"`
	CACert       string   `json:"ca_cert"`
	CAKey        string   `json:"ca_key"`
	GossipKey    string   `json:"gossip_key"`
	ConsulJoin   []string `json:"consul_join"`
	Active       string   `json:"active"`
	PostgresHost string   `json:"postgres_host"`
	PostgresPort int      `json:"postgres_port"`
}

// joinTokenRecord is the join-token key's value (written by cluster start).
type joinTokenRecord struct {
	Hash string `json:"hash"`
}

// handleJoin answers a joining node, on the active node of a TLS cluster
// only. A wrong token gets 403 and leaves nothing in the cluster: the
// attempt is only logged here.
func (r *Runner) handleJoin(w http.ResponseWriter, req *http.Request) {
	if !r.cfg.TLS() || req.TLS == nil {
		writeError(w, http.StatusNotFound, "this node was not set up by cluster start or join (no TLS): it cannot take joins")
		return
	}
	var in JoinRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `request body: %v; send {"token": "...", "node": "NAME", "address": "IP"}`, err)
		return
	}
	if in.Version != "" && in.Version != r.version {
		writeError(w, http.StatusConflict, "version mismatch: this cluster runs understudy %s and the joining node %s; install %s on the joining node", r.version, in.Version, r.version)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	ks, l, err := r.readLeader(ctx, true)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the leader key: %v", err)
		return
	}
	if ks.Session == "" || l.Node != r.name || !r.st.serving(time.Now(), r.fencing.Lease) {
		writeErrorBody(w, http.StatusConflict, fmt.Sprintf("this node (%s) is not the active node; join through the active node %s", r.name, l.Node),
			map[string]any{"active": l.Node, "active_api": l.APIURL})
		return
	}
	var tok joinTokenRecord
	if _, found, err := r.cc.GetJSON(ctx, r.keys.JoinToken(), &tok); err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the join token: %v", err)
		return
	} else if !found || !certs.VerifyJoinToken(in.Token, tok.Hash) {
		r.log.Warn("join refused: wrong token", "from", req.RemoteAddr, "joiner", in.Node)
		writeError(w, http.StatusForbidden, "the join token is not this cluster's; use the token `understudy cluster start` printed")
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
	if err := joinErr(err1, err2, err3); err != nil {
		r.log.Error("cannot answer a join", "err", err)
		writeError(w, http.StatusInternalServerError, "this node lacks its cluster TLS material: %v", err)
		return
	}
	addrs, err := r.cc.GossipAddrs(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	r.log.Info("answered a join", "joiner", in.Node, "address", in.Address)
	r.record(ctx, cluster.Event{Kind: cluster.EventJoin, To: in.Node, Reason: "joined at " + in.Address})
	writeJSON(w, http.StatusOK, JoinResponse{
		Cluster: r.cfg.Cluster.Name, KVPrefix: r.cfg.Cluster.KVPrefix,
		CACert: string(caCert), CAKey: string(caKey), GossipKey: strings.TrimSpace(string(gossip)),
		ConsulJoin: addrs, Active: r.name, PostgresHost: r.cfg.Postgres.Host, PostgresPort: r.cfg.Postgres.Port,
	})
}

func joinErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
