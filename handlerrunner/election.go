package handlerrunner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// runCandidate takes part in the election that a free leader key starts.
// Every healthy standby computes the same choice from the same live answers
// and writes it to next-master with CAS, so the first write wins and the
// others read it: the cluster agrees on one name. The named node acquires
// the leader key; if it has not within takeoverTimeout, it is passed over.
func (r *Runner) runCandidate(ctx context.Context) (nodeapi.Role, string) {
	deadline := time.Now().Add(r.electionTimeout())
	passedOver := map[string]bool{}
	for time.Now().Before(deadline) {
		ks, l, err := r.readLeader(ctx, true)
		if err != nil {
			r.warnEvery("election-leader", "cannot read the leader key during an election; retrying", "err", err)
			if !sleep(ctx, 200*time.Millisecond) {
				return nodeapi.RoleCandidate, errStopping.Error()
			}
			continue
		}
		if ks.Session != "" {
			return nodeapi.RoleRejoining, "the election ended: " + l.Node + " holds the leader key"
		}
		// Role loop change (cluster failover --to): a node is a candidate
		// in a paused cluster only for an operator's next-master naming
		// it (runStandby). Once that record no longer names it for this
		// term (it withdrew), it must not choose a node itself.
		if r.paused() != nil {
			if nm, ok := r.operatorChoice(ctx, ks.LockIndex); !ok || nm.Node != r.name {
				return nodeapi.RoleStandby, "the cluster is paused: no election until understudy cluster resume"
			}
		}
		nm, err := r.agreeOnNextMaster(ctx, ks, l, passedOver)
		if errors.As(err, new(errFormerHolding)) {
			r.warnEvery("election-former", "not choosing yet", "why", err)
			if !sleep(ctx, 100*time.Millisecond) {
				return nodeapi.RoleCandidate, errStopping.Error()
			}
			continue
		}
		if err != nil {
			r.warnEvery("election-choose", "no node can be chosen as the next active; waiting", "err", err)
			if !sleep(ctx, r.cfg.Checks.Interval) {
				return nodeapi.RoleCandidate, errStopping.Error()
			}
			continue
		}
		if nm.Node == r.name {
			if ok, why := r.takeOver(ctx, nm, l); ok {
				r.takenFrom = l.Node
				return nodeapi.RoleActive, why
			} else if ctx.Err() == nil {
				r.withdraw(ctx, nm, why)
				return nodeapi.RoleStandby, why
			}
			return nodeapi.RoleCandidate, errStopping.Error()
		}
		if r.waitForTakeover(ctx, nm) {
			return nodeapi.RoleRejoining, "the election chose " + nm.Node
		}
		r.log.Warn("the chosen node did not take the leader key; passing it over", "chosen", nm.Node)
		passedOver[nm.Node] = true
	}
	return nodeapi.RoleStandby, "the election timed out"
}

// errFormerHolding: no choice yet, the former active still runs its
// primary under its lease (candidates).
type errFormerHolding struct{ why string }

func (e errFormerHolding) Error() string { return e.why }

// electionTimeout bounds one candidacy: time for two takeovers.
func (r *Runner) electionTimeout() time.Duration { return 2*r.takeoverTimeout() + 5*time.Second }

// takeoverTimeout is how long the chosen node has to acquire the lock: the
// lock delay plus time for the acquire, and the wait for the WAL in a
// switchover.
func (r *Runner) takeoverTimeout() time.Duration { return r.cfg.Consul.LockDelay + 10*time.Second }

// agreeOnNextMaster returns the next-master of this election: the one
// already written for it, or the choice of this node written with CAS.
// next-master belongs to an election when its term is the leader key's
// LockIndex: acquiring the lock increments it, so a choice from an earlier
// election is never taken for a current one.
func (r *Runner) agreeOnNextMaster(ctx context.Context, ks consul.KeyState, l cluster.Leader, passedOver map[string]bool) (cluster.NextMaster, error) {
	for range 3 {
		cur, found, index, err := r.readNextMaster(ctx)
		if err != nil {
			return cluster.NextMaster{}, err
		}
		if found && cur.Node != "" && cur.Term == ks.LockIndex && !passedOver[cur.Node] {
			return cur, nil
		}
		cands, holding, err := r.candidates(ctx, passedOver, l.Node)
		if err != nil {
			return cluster.NextMaster{}, err
		}
		if holding != "" {
			return cluster.NextMaster{}, errFormerHolding{holding}
		}
		name, why, err := cluster.ChooseNextMaster(cands, r.lastPrimaryLSN(ctx, l), r.cfg.Postgres.MaximumLagOnFailover, r.syncSet(ctx, l))
		if err != nil {
			return cluster.NextMaster{}, err
		}
		nm := cluster.NextMaster{Node: name, By: r.name, Reason: why, At: time.Now().UTC(), Term: ks.LockIndex}
		if !found {
			index = 0
		}
		ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), nm, index)
		if err != nil {
			return cluster.NextMaster{}, err
		}
		if ok {
			r.log.Info("chose next active", "next_master", name, "reason", why, "term", ks.LockIndex)
			return nm, nil
		}
		// Another candidate wrote first: read its choice.
	}
	return cluster.NextMaster{}, errors.New("next-master keeps changing under this node; retrying")
}

// operatorChoice is the next-master an operator's failover wrote for term
// (cluster failover --to), if that is what next-master holds.
func (r *Runner) operatorChoice(ctx context.Context, term uint64) (cluster.NextMaster, bool) {
	nm, found, _, err := r.readNextMaster(ctx)
	return nm, err == nil && found && nm.Operator && nm.Term == term && nm.Node != ""
}

func (r *Runner) readNextMaster(ctx context.Context) (cluster.NextMaster, bool, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ks, err := r.cc.GetKey(ctx, r.keys.NextMaster(), true)
	if err != nil || !ks.Found {
		return cluster.NextMaster{}, false, 0, err
	}
	var nm cluster.NextMaster
	if err := json.Unmarshal(ks.Value, &nm); err != nil {
		// A value that is not ours is overwritten by the next choice.
		return cluster.NextMaster{}, true, ks.ModifyIndex, nil
	}
	return nm, true, ks.ModifyIndex, nil
}

// candidates asks every member, this node included, for its live state, in
// parallel and each under peerTimeout. A member that does not answer is not
// healthy. holding is, when not "", why no choice may be made yet: the
// former active (former) answers that its PostgreSQL is still its primary
// and it is still active or taking its lock back without a session yet
// (regain.go). It either takes the lock back or fences when its lease runs
// out, which a new active would have to wait for anyway; a former active
// that does not answer is not waited for.
func (r *Runner) candidates(ctx context.Context, passedOver map[string]bool, former string) (cands []cluster.Candidate, holding string, err error) {
	members, err := r.readMembers(ctx)
	if err != nil {
		// A failed read lists this node alone: it must not be chosen
		// over peers it did not ask.
		return nil, "", fmt.Errorf("cannot read the members to choose among them: %w", err)
	}
	out := make([]cluster.Candidate, len(members))
	sts := make([]nodeapi.NodeStatus, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			if m.Name == r.name {
				sts[i] = r.nodeStatus(ctx)
			} else {
				sts[i], errs[i] = r.askPeer(ctx, m)
			}
			out[i] = candidate(m.Name, sts[i], errs[i], passedOver[m.Name])
		})
	}
	wg.Wait()
	// A node's own word on its maintenance may be an interval old: the
	// key read here decides as well. Unread, the nodes' words stand.
	if mt, err := r.maintenances(ctx); err == nil {
		for i := range out {
			_, in := mt[out[i].Name]
			out[i].Maintenance = out[i].Maintenance || in
		}
	} else {
		r.warnEvery("election-maintenance", "cannot read which nodes are in maintenance; going by each node's own answer", "err", err)
	}
	for i, m := range members {
		st := sts[i]
		if m.Name == former && m.Name != r.name && errs[i] == nil && st.Postgres.Running && !st.Postgres.InRecovery &&
			(st.Role == nodeapi.RoleActive && !st.Regaining || st.Regaining && !st.HasSession) {
			holding = fmt.Sprintf("the former active %s still runs its primary under its lease (taking its lock back, or fencing when the lease ends); waiting", former)
		}
	}
	return out, holding, nil
}

// candidate turns a node's answer into what the choice compares. Only a
// standby that streams or waits read-only, or the former active taking
// back its lock with its primary still running, with a live session (its
// checks pass), can be chosen.
func candidate(name string, st nodeapi.NodeStatus, err error, passedOver bool) cluster.Candidate {
	standby := st.Postgres.InRecovery && (st.Role == nodeapi.RoleStandby || st.Role == nodeapi.RoleCandidate)
	regaining := st.Regaining && !st.Postgres.InRecovery
	healthy := err == nil && !passedOver && st.HasSession && st.Postgres.Running && (standby || regaining)
	return cluster.Candidate{
		Name: name, Healthy: healthy, NoFailover: st.NoFailover, Maintenance: st.Maintenance != nil, Priority: st.Priority,
		Timeline: st.Postgres.Timeline, LSN: st.Postgres.Position(), Regaining: regaining,
	}
}

// members reads every member record; the node itself is always included.
func (r *Runner) members(ctx context.Context) []cluster.Member {
	out, _ := r.readMembers(ctx)
	return out
}

// readMembers is members with the error of the read: a caller that would
// act on who is not a member (drop a slot, narrow the synchronous set,
// replace the list lease grants are asked of) must not act on a failed
// read, which lists this node alone.
func (r *Runner) readMembers(ctx context.Context) ([]cluster.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out []cluster.Member
	self := false
	err := r.cc.ListJSON(ctx, r.keys.Members(), func(_ string, raw []byte) error {
		var m cluster.Member
		if json.Unmarshal(raw, &m) == nil && m.Name != "" {
			out = append(out, m)
			self = self || m.Name == r.name
		}
		return nil
	})
	if err != nil {
		r.warnEvery("members", "cannot list members", "err", err)
	}
	if !self {
		out = append(out, cluster.Member{Name: r.name})
	}
	return out, err
}

func (r *Runner) askPeer(ctx context.Context, m cluster.Member) (nodeapi.NodeStatus, error) {
	var st nodeapi.NodeStatus
	if err := r.callPeer(ctx, m, http.MethodGet, "/v1/status/node", nil, &st, peerTimeout); err != nil {
		return st, fmt.Errorf("ask %s for its state: %w", m.Name, err)
	}
	if st.Name != m.Name {
		return st, fmt.Errorf("ask %s for its state: %s answered", m.Name, st.Name)
	}
	return st, nil
}

// callPeer sends one request to member m's API under timeout, with the
// cluster's TLS and basic auth, body (when not nil) as JSON, and decodes a
// 2xx answer into out; any other answer is a *nodeapi.APIError.
func (r *Runner) callPeer(ctx context.Context, m cluster.Member, method, path string, body, out any, timeout time.Duration) error {
	if m.APIURL == "" {
		return fmt.Errorf("member %s publishes no API URL", m.Name)
	}
	return r.peers.Do(ctx, m.APIURL, method, path, body, out, timeout)
}

// lastPrimaryLSN is the former active's last published write position, the
// yardstick of maximum_lag_on_failover: what it wrote into the leader key
// every interval, or its member record's while that still shows a primary;
// 0 (rule off) when unknown.
func (r *Runner) lastPrimaryLSN(ctx context.Context, l cluster.Leader) cluster.LSN {
	if l.Node == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var m cluster.Member
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Member(l.Node), &m); err == nil && found && m.Role == cluster.RolePrimary {
		return max(l.WriteLSN, m.WriteLSN)
	}
	return l.WriteLSN
}

// syncSet is, in synchronous mode, the members that have every write the
// former active acknowledged: the former active itself, and the standbys
// the sync key names for it. Only they may be chosen. nil means no
// restriction (asynchronous mode, or no former active to lose writes of).
func (r *Runner) syncSet(ctx context.Context, l cluster.Leader) []string {
	if !r.cfg.Postgres.Synchronous || l.Node == "" {
		return nil
	}
	set := []string{l.Node}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var s cluster.SyncState
	_, found, err := r.cc.GetJSON(ctx, r.keys.Sync(), &s)
	if err != nil || !found || s.Leader != l.Node {
		// The former active never confirmed a synchronous standby: only
		// it is known to have its own writes.
		return set
	}
	return append(set, s.Standbys...)
}

// takeOver acquires the leader key for the chosen node: in a switchover,
// once it has the old primary's last WAL; through the lock delay after a
// failover. prev is the leader key as last read, free: its holder's lease
// is what runActive waits out.
func (r *Runner) takeOver(ctx context.Context, nm cluster.NextMaster, prev cluster.Leader) (bool, string) {
	if !r.watchdogAlive() {
		return false, "chosen, but this node's fencing watchdog is not running (" + r.lease.Snapshot() + ")"
	}
	deadline := time.Now().Add(r.takeoverTimeout())
	if nm.Switchover && nm.FromLSN != 0 {
		if err := r.waitForWAL(ctx, nm.FromLSN, deadline); err != nil {
			return false, err.Error()
		}
	}
	for time.Now().Before(deadline) {
		// Asked each time: a session invalidated meanwhile cannot acquire,
		// and waiting out the takeover with it would hold up the election.
		sessID := r.sess.ID()
		if sessID == "" {
			return false, "chosen, but this node has no consul session (a bound check failed)"
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		sent := fence.Now()
		ok, err := r.cc.Acquire(actx, r.keys.Leader(), r.leaderValue(sessID), sessID)
		cancel()
		if ok {
			r.heldWith, r.switchingTo = sessID, &nm
			r.takenFromValue, r.acquiredAt = prev, sent
			return true, "chosen as next active (" + nm.Reason + ") and acquired the leader key"
		}
		if errors.Is(err, consul.ErrSessionGone) {
			r.sess.forget(sessID)
			return false, "chosen, but this node's consul session was invalidated"
		}
		if err != nil {
			r.warnEvery("takeover", "cannot acquire the leader key; retrying", "err", err)
		}
		// Refused within the lock delay, or taken by another node.
		ks, l, err := r.readLeader(ctx, true)
		if err == nil && ks.Session != "" && l.Node != r.name {
			return false, l.Node + " took the leader key"
		}
		if err == nil && ks.Session == "" {
			prev = l
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return false, errStopping.Error()
		}
	}
	return false, "could not acquire the leader key in time"
}

// waitForWAL waits until this standby has replayed past lsn: the old
// primary's shutdown checkpoint in a switchover, so nothing it acknowledged
// is lost.
func (r *Runner) waitForWAL(ctx context.Context, lsn cluster.LSN, deadline time.Time) error {
	for {
		st, err := r.pgState(ctx)
		if err == nil && st.ReplayLSN > lsn {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("switchover: this node did not replay the old primary's last WAL %v in time (replayed %v)", lsn, st.ReplayLSN)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return errStopping
		}
	}
}

// waitForTakeover waits for the chosen node to hold the leader key. It
// gives up early when the chosen node withdraws (next-master no longer
// names it for this term), else after takeoverTimeout.
func (r *Runner) waitForTakeover(ctx context.Context, nm cluster.NextMaster) bool {
	deadline := time.Now().Add(r.takeoverTimeout())
	var index uint64
	for time.Now().Before(deadline) {
		ks, next, err := r.cc.WatchKey(ctx, r.keys.Leader(), index, min(time.Until(deadline), 500*time.Millisecond))
		if ctx.Err() != nil {
			return false
		}
		r.seen.read(decodeLeader(ks), err, false)
		if err != nil {
			index = 0
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		index = next
		if ks.Session != "" {
			return true // whoever took it; the caller follows
		}
		if cur, found, _, err := r.readNextMaster(ctx); err == nil && (!found || cur.Term != nm.Term || cur.Node != nm.Node) {
			return false
		}
	}
	return false
}

// withdraw tells the other candidates at once that this node, though
// chosen, cannot take over (its session went, the lock delay outlasted the
// takeover, a switchover's WAL did not arrive): next-master is rewritten for
// the same term naming nobody, so they decide again now rather than after
// takeoverTimeout.
func (r *Runner) withdraw(ctx context.Context, nm cluster.NextMaster, why string) {
	cur, found, index, err := r.readNextMaster(ctx)
	if err != nil || !found || cur.Term != nm.Term || cur.Node != r.name {
		return
	}
	w := cluster.NextMaster{By: r.name, Reason: r.name + " could not take over: " + why, At: time.Now().UTC(), Term: nm.Term}
	if ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), w, index); err != nil || !ok {
		return
	}
	r.log.Warn("chosen, but cannot take over; withdrew", "why", why)
}
