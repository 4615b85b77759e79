package handlerrunner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/fence"
)

// holder keeps the active's lease on the leader lock (config.Fencing has
// the invariant and the timing): it renews the lock every Renew by
// acquiring the leader key again with the node's session and a renewal
// number one higher, extends the lease (and the watchdog's copy) by Lease
// from the send time of each renewal Consul commits, and fences the node
// itself, PostgreSQL first, the moment the lease runs out or a renewal says
// the lock is gone. It runs beside the role loop, so nothing the loop waits
// on delays fencing.
type holder struct {
	r      *Runner
	sessID string
	f      config.Fencing
	lease  *fence.Lease
	base   cluster.Leader // the value, without its renewal fields

	mu    sync.Mutex
	until fence.Mono
	// committed is the send time of the last renewal Consul committed
	// (or of the acquire): how long grants have carried the lease since.
	committed fence.Mono
	renewal   uint64
	inflight  int
	lsn       cluster.LSN
	peers     []cluster.Member // the membership as last read
	grants    bool             // a grant round is in flight
	why       string           // why the lock is lost, "" while held
	gone      bool             // lost because Consul no longer knows the session
	lost      chan struct{}    // closed with why set
	cancel    context.CancelFunc
	done      chan struct{}
}

// hold starts holding the lock acquired with sessID by a request sent at
// sent, as value.
func (r *Runner) hold(ctx context.Context, sessID string, sent fence.Mono, value cluster.Leader) *holder {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h := &holder{r: r, sessID: sessID, f: r.fencing, lease: r.lease, base: value,
		renewal: value.Renewal, lsn: value.WriteLSN, lost: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	h.extend(sent, true)
	go h.run(hctx)
	return h
}

// leaderValue is what this node writes into the leader key while it holds
// it with sessID.
func (r *Runner) leaderValue(sessID string) cluster.Leader {
	return cluster.Leader{Node: r.name, Since: time.Now().UTC(), Address: r.cfg.Node.Address,
		PostgresPort: r.cfg.Postgres.Port, APIURL: r.cfg.APIURL(),
		Session: sessID, Renewal: 1, LeaseMS: r.fencing.Lease.Milliseconds()}
}

// Lost is closed once the lock is lost for certain or the lease ran out.
func (h *holder) Lost() <-chan struct{} { return h.lost }

// Why says why the lock was lost, "" while it is held.
func (h *holder) Why() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.why
}

// lostSession records that Consul ended the session that held the lock.
func (h *holder) lostSession() {
	h.mu.Lock()
	h.gone = true
	h.mu.Unlock()
	h.lose("lost the leader lock (consul ended the session)")
}

// SessionGone says whether the lock was lost with the session (Consul
// invalidated it), rather than taken.
func (h *holder) SessionGone() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gone
}

// Remaining is how long the lease has left.
func (h *holder) Remaining() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.until.Sub(fence.Now())
}

// last is the value of a last write of the key, numbered after every
// renewal sent.
func (h *holder) last() cluster.Leader {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.base
	v.Renewal, v.WriteLSN = h.renewal+1, h.lsn
	return v
}

// setLSN is the write position the next renewals publish.
func (h *holder) setLSN(lsn cluster.LSN) {
	h.mu.Lock()
	h.lsn = lsn
	h.mu.Unlock()
}

// stop ends the renewals and waits for the loop; renewals in flight finish
// on their own. The lease stays as it is: the caller disarms it once
// PostgreSQL is stopped.
func (h *holder) stop() {
	h.cancel()
	<-h.done
}

// extend extends the lease by Lease from sent, the send time of a renewal
// Consul committed (committed) or of a grant round that carried it.
func (h *holder) extend(sent fence.Mono, committed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.why != "" {
		return
	}
	if committed && sent > h.committed {
		h.committed = sent
		if h.r.st.carried() != nil {
			h.r.setCarry(nil)
			h.r.log.Info("consul commits the lease's renewals again; the peers no longer carry it")
		}
	}
	if until := sent.Add(h.f.Lease); until > h.until {
		h.until = until
		h.lease.Arm(until)
		h.r.st.confirm(time.Now().Add(-fence.Now().Sub(sent)))
	}
}

// lose records why the lock is gone, once.
func (h *holder) lose(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.why == "" {
		h.why = why
		close(h.lost)
	}
}

func (h *holder) run(ctx context.Context) {
	defer close(h.done)
	renew := time.NewTicker(h.f.Renew)
	defer renew.Stop()
	expiry := time.NewTicker(h.f.WatchdogPoll)
	defer expiry.Stop()
	// Once the renewals and grant rounds in flight are done (wg.Wait runs
	// first), nothing carries this lease any more: a round that ended
	// after the demotion cleared it must not leave it set.
	defer func() {
		h.r.setCarry(nil)
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.lost:
			return
		case <-expiry.C:
			if h.Remaining() < 0 {
				h.expire(ctx)
				return
			}
		case <-renew.C:
			h.mu.Lock()
			renew := h.inflight < h.f.RenewInFlight
			if renew {
				h.inflight++
				h.renewal++
			}
			v := h.base
			v.Renewal, v.WriteLSN = h.renewal, h.lsn
			ask := !h.grants && h.grantDueLocked()
			h.grants = h.grants || ask
			h.mu.Unlock()
			if renew {
				wg.Go(func() { h.renew(ctx, v) })
			}
			if ask {
				wg.Go(func() {
					h.askGrants(ctx)
					h.mu.Lock()
					h.grants = false
					h.mu.Unlock()
				})
			}
		}
	}
}

// renew sends one renewal. Only a committed renewal extends the lease, from
// the moment it was sent: Consul may have applied it any time after.
func (h *holder) renew(ctx context.Context, v cluster.Leader) {
	defer func() {
		h.mu.Lock()
		h.inflight--
		h.mu.Unlock()
	}()
	rctx, cancel := context.WithTimeout(ctx, h.f.RenewTimeout)
	defer cancel()
	sent := fence.Now()
	ok, err := h.r.cc.Acquire(rctx, h.r.keys.Leader(), v, h.sessID)
	switch {
	case ok:
		h.extend(sent, true)
	case errors.Is(err, consul.ErrSessionGone):
		h.lostSession()
	case err == nil:
		// Another session holds the key, or the lock delay that follows
		// this session's invalidation runs: Consul answers false then
		// before it looks at the session. A free key tells which.
		kctx, cancel := context.WithTimeout(ctx, h.f.RenewTimeout)
		ks, err := h.r.cc.GetKey(kctx, h.r.keys.Leader(), true)
		cancel()
		switch {
		case err == nil && ks.Found && ks.Session == "":
			h.lostSession()
		case err == nil:
			h.lose("lost the leader lock (taken by another session)")
		default:
			h.lose(fmt.Sprintf("lost the leader lock (a renewal was refused; cannot tell why: %v)", err))
		}
	case ctx.Err() == nil:
		h.r.warnEvery("renew-lease", "cannot renew the leader lease; the node stops taking writes when it runs out",
			"remaining", h.Remaining().Round(time.Millisecond), "err", err)
	}
}

// expire fences at once: no renewal was committed within the lease, so
// another node may soon be promoted. PostgreSQL first, within the stop
// budget; the teardown does the rest.
func (h *holder) expire(ctx context.Context) {
	h.lose(fmt.Sprintf("the leader lease (%v) ran out: no renewal committed (Consul unreachable or without a leader)", h.f.Lease))
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	start := fence.Now()
	if pid, err := fence.Quit(qctx, h.r.pg.DataDir()); err != nil {
		h.r.log.Error("lease ran out and postgres could not be stopped; it may still take writes", "err", err)
	} else if pid != 0 {
		h.r.log.Warn("lease ran out: stopped postgres (immediate)", "postmaster", pid, "took", fence.Now().Sub(start).Round(time.Millisecond))
	}
}

// leaseSeen remembers when this node first saw the latest renewal of the
// leader key's holder (first), and whether Consul could not be read since
// (blinded): across such a gap the holder may have had its lease carried by
// peer grants, unseen. fresh is the first good read after the last gap. A
// node that takes over measures the old holder's lease from first when it
// saw no gap, or when the peers that could have granted say they did not;
// from fresh otherwise (waitOldLease).
type leaseSeen struct {
	mu      sync.Mutex
	session string
	renewal uint64
	first   fence.Mono
	fresh   fence.Mono
	blinded bool
}

// observe notes the leader key as just read.
func (s *leaseSeen) observe(l cluster.Leader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note(l)
}

func (s *leaseSeen) note(l cluster.Leader) {
	now := fence.Now()
	if l.Session != s.session || l.Renewal != s.renewal || s.first == 0 {
		// A renewal committed after any gap: nothing unseen can
		// outlast it.
		s.session, s.renewal, s.first, s.fresh, s.blinded = l.Session, l.Renewal, now, now, false
		return
	}
	if s.fresh == 0 {
		s.fresh = now
	}
}

// blind records a failed or held read of the leader key.
func (s *leaseSeen) blind() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fresh, s.blinded = 0, true
}

// read records a read of the leader key: failed (err), held by a Consul
// without a leader (slow: the holder may have renewed unseen meanwhile,
// through grants), or good.
func (s *leaseSeen) read(l cluster.Leader, err error, slow bool) {
	if err != nil || slow {
		s.blind()
	}
	if err == nil {
		s.observe(l)
	}
}

// grant records this node's grant of session's lease, if the key it last
// read names that session: it no longer knows when the holder last renewed.
func (s *leaseSeen) grant(session string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session != session {
		return false
	}
	s.fresh, s.blinded = 0, true
	return true
}

// get returns, for l's renewal, when this node first saw it, when it first
// read it again after the last gap, and whether there was a gap.
func (s *leaseSeen) get(l cluster.Leader) (first, fresh fence.Mono, blinded bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.note(l)
	return s.first, s.fresh, s.blinded
}

// waitOldLease holds a new active back until the node that held the leader
// key before, prev, cannot be taking writes any more: at once when it said
// it fenced (it released the key so, or wrote its fenced record), otherwise
// once Takeover has passed since this node first saw prev's last renewal.
// A refused connection to prev's PostgreSQL port is not taken as proof: a
// firewall that rejects rather than drops, between the nodes, answers the
// same while the postmaster behind it still takes writes. It returns how
// it decided, or an error when the lock was lost meanwhile or ctx ended.
func (r *Runner) waitOldLease(ctx context.Context, h *holder, prev cluster.Leader) (string, error) {
	switch {
	case prev.Node == "":
		return "no node held the leader key before", nil
	case prev.Fenced:
		return prev.Node + " released the leader key after fencing", nil
	case prev.Session == "" && prev.Node == r.name:
		return "this node held the leader key before, under a version without a lease", nil
	}
	lease := max(r.fencing.Lease, time.Duration(prev.LeaseMS)*time.Millisecond)
	wait := r.fencing.Takeover() - r.fencing.Lease + lease
	first, fresh, blinded := r.seen.get(prev)
	from := first
	if blinded {
		// Consul could not be read for a while: the old active may have
		// had its lease carried by grants. The peers that could have
		// granted say when they last did; without every answer, count
		// from the first read after the gap.
		if granted, ok := r.grantsFor(ctx, prev); ok {
			from = max(first, granted)
		} else {
			from = fresh
		}
	}
	until := from.Add(wait)
	r.log.Info("waiting out the old active's lease before promoting", "old_active", prev.Node,
		"at_most", until.Sub(fence.Now()).Round(time.Millisecond), "lease", lease, "consul_gap_seen", blinded)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for fence.Now() < until {
		if r.oldFenced(ctx, prev) {
			return prev.Node + " said it fenced", nil
		}
		select {
		case <-ctx.Done():
			return "", errStopping
		case <-h.Lost():
			return "", errors.New(h.Why())
		case <-t.C:
		}
	}
	return fmt.Sprintf("waited out %s's lease (%v since its last renewal was seen)", prev.Node, wait), nil
}

// oldFenced reads prev's fenced record.
func (r *Runner) oldFenced(ctx context.Context, prev cluster.Leader) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var f cluster.Fenced
	_, found, err := r.cc.GetJSON(ctx, r.keys.Fenced(prev.Node), &f)
	return err == nil && found && f.Session == prev.Session && prev.Session != ""
}
