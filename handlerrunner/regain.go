package handlerrunner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// regain takes back the leader lock that the active lost with its session
// while it is alive and healthy, before its lease runs out, so that its
// PostgreSQL never stops taking writes. Consul invalidates a session at
// once on a failure report, and one can be false: a node that was cut off
// or frozen marks the others failed on its own, and when it is back its
// word reaches Consul's leader a moment before the node named refutes it.
// Without this, every such heal would move the active role.
//
// Safety does not change. PostgreSQL stays writable only under the lease
// already held (the watchdog stops it at its end); a node that acquires
// the lock instead waits out that lease before promoting, as after any
// loss. While the former active answers that it still runs its primary,
// the others' election waits for it (candidates), and then chooses it first
// (cluster.Candidate.Regaining); it acquires the lock with a new session
// once the lock delay allows. It gives up, and the caller fences, when its
// own checks do not pass (the loss was no false report), when the election
// chose another node or another node holds the lock, or when too little of
// the lease is left to renew it in time.
func (r *Runner) regain(ctx context.Context, h *holder) (*holder, error) {
	start := time.Now()
	lost := h.sessID
	h.stop() // its loop ended with the loss; the lease stays armed
	if err := r.ownChecks(ctx); err != nil {
		return nil, err
	}
	r.log.Warn("lost the consul session while healthy (a failure report from another node?); taking the leader lock back under the lease",
		"session", lost, "lease_left", h.Remaining().Round(time.Millisecond))
	r.st.update(func(st *nodeapi.NodeStatus) { st.Regaining = true })
	defer r.st.update(func(st *nodeapi.NodeStatus) { st.Regaining = false })
	// Room for the first renewal of the lock taken back to commit.
	margin := r.fencing.Renew + r.fencing.RenewTimeout
	var chosen *cluster.NextMaster // next-master naming this node, once agreed
	giveUp := func(err error) (*holder, error) {
		if chosen != nil {
			r.withdraw(context.WithoutCancel(ctx), *chosen, err.Error())
		}
		return nil, err
	}
	for {
		left := h.Remaining() - margin
		if left <= 0 {
			return giveUp(fmt.Errorf("the lease ran out before the lock could be taken back (%v)", time.Since(start).Round(time.Millisecond)))
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, errStopping
		}
		h2, nm, err := r.regainOnce(ctx, h, lost, left)
		if nm != nil {
			chosen = nm
		}
		if h2 != nil {
			took := time.Since(start).Round(time.Millisecond)
			r.log.Info("took the leader lock back; postgres took writes throughout", "session", h2.sessID, "took", took)
			r.record(ctx, cluster.Event{Kind: cluster.EventRegained, From: r.name, To: r.name,
				Reason:  "lost the consul session while healthy; took the leader lock back under the lease",
				Details: map[string]string{"took": took.String(), "lost_session": lost, "session": h2.sessID}})
			return h2, nil
		}
		if err != nil {
			return giveUp(err)
		}
	}
}

// ownChecks says why this node's own checks rule out taking the lock back,
// or nil. A check whose TTL ran out without a report is not held against
// the node (consul.Client.LocalFailing): false failure reports come during
// Consul's own elections, when its agent blocks TTL updates; the session
// waits for the check-runner's next report instead.
func (r *Runner) ownChecks(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	failing, err := r.cc.LocalFailing(cctx, r.sess.opts.Checks)
	switch {
	case err != nil:
		return fmt.Errorf("cannot ask the local consul agent for this node's checks: %w", err)
	case failing != "":
		return fmt.Errorf("this node's own checks do not pass: %s", failing)
	}
	return nil
}

// regainOnce is one try of regain within left: no holder and no error to
// try again; chosen is the next-master naming this node when the try agreed
// on one. Every read it acts on is made in the try, and the try ends before
// the lease does, so the acquisition is never sent on a stale view or a
// spent lease.
func (r *Runner) regainOnce(ctx context.Context, h *holder, lost string, left time.Duration) (_ *holder, chosen *cluster.NextMaster, _ error) {
	ctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	sid := r.sess.ID()
	if sid == "" || sid == lost {
		if err := r.ownChecks(ctx); err != nil {
			return nil, nil, err
		}
		r.sess.poke()
		return nil, nil, nil
	}
	ks, l, err := r.readLeader(ctx, true)
	if err != nil {
		return nil, nil, nil
	}
	switch {
	case ks.Session == sid:
		// An acquisition whose answer was lost did commit.
	case ks.Session != "":
		return nil, nil, fmt.Errorf("%s holds the leader key now", l.Node)
	case l.Node != r.name || l.Session != lost:
		// Another node held the lock since: its lease would have to be
		// waited out, which only a takeover does.
		return nil, nil, fmt.Errorf("%s held the leader key since this node lost it", l.Node)
	default:
		nm, err := r.agreeOnNextMaster(ctx, ks, l, nil)
		if err != nil {
			return nil, nil, nil
		}
		if nm.Node != r.name {
			return nil, nil, fmt.Errorf("the election chose %s", nm.Node)
		}
		chosen = &nm
	}
	v := h.last()
	v.Session, v.Renewal = sid, v.Renewal+1
	actx, acancel := context.WithTimeout(ctx, r.fencing.RenewTimeout)
	defer acancel()
	sent := fence.Now()
	ok, err := r.cc.Acquire(actx, r.keys.Leader(), v, sid)
	switch {
	case ok:
		h2 := r.hold(ctx, sid, sent, v)
		h2.setMembers(h.members())
		r.heldWith = sid
		return h2, chosen, nil
	case errors.Is(err, consul.ErrSessionGone):
		// Invalidated again: wait for the next one.
		r.sess.forget(sid)
		r.sess.poke()
	}
	// Not yet: the lock delay after the invalidation still runs.
	return nil, chosen, nil
}
