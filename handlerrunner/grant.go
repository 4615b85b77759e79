package handlerrunner

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// Peer grants carry the active's lease over a Consul leader election, the
// seconds in which no renewal commits because Consul has no leader: when
// the node that runs Consul's leader, a standby, is lost, the election
// (1-2 s at raft_multiplier 1, measured up to 3.4 s with pre-vote rounds)
// must not make the active fence itself.
//
// The active asks once its renewals have failed for a while and its own
// Consul agent still answers. A peer grants only if its own Consul agent
// answers but cannot serve a consistent read (which needs a leader with a
// majority behind it), it is a standby, and the leader key it last read
// names the asking session. (A server keeps naming a dead leader until its
// own heartbeat timeout, so "which leader do you know" is not the
// question.) Granting makes the peer forget when it saw the active's last
// renewal (leaseSeen.grant): should it
// acquire the lock later, it waits out a whole Takeover from its next read,
// after the grant, so it cannot start writing before the extended lease is
// over. The active extends its lease, from the moment it sent the round,
// only when it and the peers that granted are a majority of the cluster:
// every Consul leader needs the vote of one of their servers, so none had a
// working majority while they granted. A node that did not grant can acquire
// the lock only after a new leader invalidated the active's session; if the
// active's server is with that leader, the active learns it from its next
// renewal and stops within Renew + Stop, inside the lock delay the
// invalidation starts (Validate checks lock_delay against that); if it is
// not, the granting peers now know a leader and grant no more, so the
// active's lease ends one Lease after a round sent before that leader
// existed, and the node that acquires reads the key, as every read after a
// failed or slow one, as a fresh sighting.
//
// consul.outage = "failsafe" adds a second rule, for outages longer than an
// election (servers stopped, no quorum): a round in which every other
// member granted carries the lease, whether or not the active's and the
// peers' agents answer. Every node that could acquire the lock later has
// then forgotten its sighting of the active's renewals and will wait a
// whole Takeover from a read after its grant, which needs no Consul to be
// true. A peer grants such a request (FailsafeOnly) while its own agent does
// not answer; it still refuses while it sees a working leader. Without it
// ("fence") the majority rule carries the lease for at most ElectionCarry
// after the last committed renewal. The arithmetic is in config.Fencing.

// grantTimeout bounds one grant question to a peer: the round must end
// well within the lease it would extend.
const grantTimeout = 500 * time.Millisecond

// handleGrant is POST /v1/lease/grant.
func (r *Runner) handleGrant(w http.ResponseWriter, req *http.Request) {
	var g nodeapi.GrantRequest
	if err := json.NewDecoder(io.LimitReader(req.Body, maxBody)).Decode(&g); err != nil || g.Holder == "" || g.Session == "" {
		writeError(w, http.StatusBadRequest, "the body must be JSON {\"holder\": NODE, \"session\": ID}")
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), 300*time.Millisecond)
	defer cancel()
	rep := r.grant(ctx, g)
	if rep.Granted {
		r.infoEvery("lease-grant", "granted the active's lease while Consul has no leader", "holder", g.Holder, "failsafe_only", rep.FailsafeOnly)
	}
	writeJSON(w, http.StatusOK, rep)
}

func (r *Runner) grant(ctx context.Context, g nodeapi.GrantRequest) nodeapi.GrantReply {
	refuse := func(why string) nodeapi.GrantReply { return nodeapi.GrantReply{Why: why} }
	if role := r.st.get().Role; role != nodeapi.RoleStandby {
		return refuse("this node is " + string(role) + ", not a standby")
	}
	_, err := r.cc.Leader(ctx)
	agentDown := err != nil
	switch {
	case agentDown && !g.Failsafe:
		return refuse("the local consul agent does not answer: " + err.Error())
	case !agentDown:
		// A consistent read needs a leader that still has a majority
		// behind it: if one answers, the active must renew through it,
		// not through this node.
		if _, err := r.cc.GetKey(ctx, r.keys.Leader(), true); err == nil {
			return refuse("consul has a working leader here: renew through it")
		}
	}
	if !r.seen.grant(g.Session) {
		return refuse("the leader key this node last read is not held by that session")
	}
	r.granted.Lock()
	defer r.granted.Unlock()
	if r.granted.at == nil {
		r.granted.at = map[string]fence.Mono{}
	}
	r.granted.at[g.Session] = fence.Now()
	return nodeapi.GrantReply{Granted: true, FailsafeOnly: agentDown}
}

// handleGrants is GET /v1/lease/grants?session=ID.
func (r *Runner) handleGrants(w http.ResponseWriter, req *http.Request) {
	sess := req.URL.Query().Get("session")
	if sess == "" {
		writeError(w, http.StatusBadRequest, "name the session: ?session=ID")
		return
	}
	at, ok := r.lastGrant(sess)
	rec := nodeapi.GrantRecord{Granted: ok}
	if ok {
		rec.AgoMS = fence.Now().Sub(at).Milliseconds()
	}
	writeJSON(w, http.StatusOK, rec)
}

func (r *Runner) lastGrant(sess string) (fence.Mono, bool) {
	r.granted.Lock()
	defer r.granted.Unlock()
	at, ok := r.granted.at[sess]
	return at, ok
}

// grantsFor asks every member but this node and prev's holder when it last
// granted prev's session (this node's own grants it knows): the latest such
// moment on this node's clock, 0 when none did. ok is false when a member
// does not answer: then nobody can say the lease was not carried.
func (r *Runner) grantsFor(ctx context.Context, prev cluster.Leader) (latest fence.Mono, ok bool) {
	if at, mine := r.lastGrant(prev.Session); mine {
		latest = at
	}
	var mu sync.Mutex
	members, err := r.readMembers(ctx)
	if err != nil {
		return latest, false // who could have granted is not known
	}
	ok = true
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Name == r.name || m.Name == prev.Node {
			continue
		}
		wg.Go(func() {
			rec, err := r.askGrants(ctx, m, prev.Session)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				ok = false
			case rec.Granted:
				// At most ago_ms ago, on this node's clock: the answer
				// took some time to arrive, so count from now.
				latest = max(latest, fence.Now().Add(-time.Duration(rec.AgoMS)*time.Millisecond))
			}
		})
	}
	wg.Wait()
	return latest, ok
}

func (r *Runner) askGrants(ctx context.Context, m cluster.Member, sess string) (nodeapi.GrantRecord, error) {
	var rec nodeapi.GrantRecord
	err := r.callPeer(ctx, m, http.MethodGet, "/v1/lease/grants?session="+url.QueryEscape(sess), nil, &rec, grantTimeout)
	return rec, err
}

// grantDue says whether the lease has gone 4 renewals without a commit: time
// to ask the peers.
func (h *holder) grantDue() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.grantDueLocked()
}

func (h *holder) grantDueLocked() bool { return h.f.Lease-h.until.Sub(fence.Now()) >= 4*h.f.Renew }

// askGrants runs one round (when grantDue). Without Failsafe it needs the
// local Consul agent to answer (a hung agent is a node cut off from Consul:
// no grant then); with it, a round every member grants carries the lease
// regardless.
func (h *holder) askGrants(ctx context.Context) {
	sent := fence.Now()
	lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := h.r.cc.Leader(lctx)
	cancel()
	agentUp := err == nil
	if !agentUp && !h.f.Failsafe {
		return
	}
	members := h.members()
	if len(members) < 2 {
		return
	}
	var mu sync.Mutex
	granted := []string{}
	var failsafeOnly, refused []string
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Name == h.r.name {
			continue
		}
		wg.Go(func() {
			rep, err := h.r.askGrant(ctx, m, nodeapi.GrantRequest{Holder: h.r.name, Session: h.sessID, Failsafe: h.f.Failsafe})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				refused = append(refused, m.Name+": "+err.Error())
			case !rep.Granted:
				refused = append(refused, m.Name+": "+rep.Why)
			case rep.FailsafeOnly:
				failsafeOnly = append(failsafeOnly, m.Name)
			default:
				granted = append(granted, m.Name)
			}
		})
	}
	wg.Wait()
	if !h.grantDue() {
		return // a renewal committed meanwhile
	}
	rule := carry(h.f, agentUp, len(members), len(granted), len(failsafeOnly), h.carried())
	if rule != notCarried {
		c := &nodeapi.LeaseCarry{Rule: nodeapi.CarryMajority, GrantedBy: granted,
			Since: time.Now().Add(-h.carried()).UTC().Truncate(time.Millisecond)}
		if rule == carriedByAll {
			c.Rule, c.GrantedBy = nodeapi.CarryFailsafe, append(slices.Clone(granted), failsafeOnly...)
		}
		h.r.setCarry(c)
	}
	switch rule {
	case carriedByMajority:
		h.extend(sent, false)
		h.r.warnEvery("lease-granted", "consul has no leader; the lease is carried by the peers' grants",
			"granted_by", strings.Join(granted, ","), "refused", strings.Join(refused, "; "))
	case carriedByAll:
		h.extend(sent, false)
		h.r.warnEvery("lease-failsafe", "consul has no leader; failsafe: every member confirms this node as the active, so it keeps taking writes (consul.outage = \"failsafe\")",
			"granted_by", strings.Join(append(granted, failsafeOnly...), ","), "carried_for", h.carried().Round(time.Second))
	default:
		h.r.warnEvery("lease-refused", "consul has no leader and the peers do not carry the lease; the node stops taking writes when it runs out",
			"remaining", h.Remaining().Round(time.Millisecond), "outage", outageMode(h.f), "carried_for", h.carried().Round(time.Millisecond),
			"granted_by", strings.Join(granted, ","), "granted_failsafe_only", strings.Join(failsafeOnly, ","), "refused", strings.Join(refused, "; "))
	}
}

// How a grant round carries the lease, if it does.
const (
	notCarried = iota
	carriedByMajority
	carriedByAll
)

// carry decides whether a grant round carries the lease (config.Fencing
// has the rules): members is the cluster's size, this node included;
// granted and failsafeOnly count the other members' grants of each kind;
// carried is how long grants have carried the lease since the last
// committed renewal.
func carry(f config.Fencing, agentUp bool, members, granted, failsafeOnly int, carried time.Duration) int {
	switch {
	case f.Failsafe && granted+failsafeOnly == members-1:
		return carriedByAll
	case agentUp && 1+granted >= members/2+1 && (f.Failsafe || carried < f.ElectionCarry):
		return carriedByMajority
	}
	return notCarried
}

func outageMode(f config.Fencing) string {
	if f.Failsafe {
		return config.OutageFailsafe
	}
	return config.OutageFence
}

// carried is how long grants have carried the lease: since the send time of
// the last renewal Consul committed.
func (h *holder) carried() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fence.Now().Sub(h.committed)
}

// members is the membership as last read, for grants while Consul cannot
// be read.
func (h *holder) members() []cluster.Member {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peers
}

func (h *holder) setMembers(ms []cluster.Member) {
	if len(ms) == 0 {
		return
	}
	h.mu.Lock()
	h.peers = ms
	h.mu.Unlock()
}

func (r *Runner) askGrant(ctx context.Context, m cluster.Member, g nodeapi.GrantRequest) (nodeapi.GrantReply, error) {
	var rep nodeapi.GrantReply
	err := r.callPeer(ctx, m, http.MethodPost, "/v1/lease/grant", g, &rep, grantTimeout)
	return rep, err
}
