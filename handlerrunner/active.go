package handlerrunner

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// runActive holds the active role from the acquired lock until it ends:
// the lease held beside it from the acquisition on, the old active's lease
// waited out, PostgreSQL promoted, once-mode (slots, services, hooks), then
// a look at PostgreSQL and next-master every holdTick. It returns why it
// ended; the deferred teardown fences the node (demoting), PostgreSQL
// first.
func (r *Runner) runActive(ctx context.Context) (next nodeapi.Role, reason string) {
	sessID, nm, prev := r.heldWith, r.switchingTo, r.takenFromValue
	r.switchingTo = nil
	h := r.hold(ctx, sessID, r.acquiredAt, r.leaderValue(sessID))
	if ms, err := r.readMembers(ctx); err == nil {
		h.setMembers(ms)
	}
	stopMode := "immediate"
	var handover *handover
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fenceTimeout)
		defer cancel()
		r.enter(fctx, nodeapi.RoleActive, nodeapi.RoleDemoting, reason)
		r.demote(fctx, h, stopMode, handover, reason)
		next = nodeapi.RoleRejoining
	}()

	start := time.Now()
	how, err := r.waitOldLease(ctx, h, prev)
	if err != nil {
		return nodeapi.RoleRejoining, "gave up the takeover: " + err.Error()
	}
	waited := time.Since(start).Round(time.Millisecond)
	if err := r.promote(ctx); err != nil {
		r.st.setGrace(time.Now().Add(stepDownGrace))
		return nodeapi.RoleRejoining, "promotion failed: " + err.Error()
	}
	r.wasPrimary = true
	r.upstream = ""
	r.st.serve(time.Now())
	st, _ := r.pgState(ctx)
	h.setLSN(st.WriteLSN)
	r.log.Info("active: postgres promoted", "took", time.Since(start).Round(time.Millisecond), "waited_for_old_active", waited,
		"because", how, "timeline", st.Timeline, "lsn", st.WriteLSN)
	kind, by := cluster.EventFailover, ""
	switch {
	case nm != nil && nm.Switchover:
		kind, by = cluster.EventSwitchover, nm.RequestedBy
	case nm != nil && nm.Operator:
		by = nm.RequestedBy // a failover an operator asked for (failover.go)
	}
	r.metrics.promoted(kind)
	r.record(ctx, cluster.Event{Kind: kind, From: r.takenFrom, To: r.name, LSN: st.WriteLSN, Reason: r.st.get().Reason,
		Details: map[string]string{"promote_took": time.Since(start).Round(time.Millisecond).String(),
			"waited_for_old_active": waited.String(), "old_active_fenced": how}, By: by})

	// Once-mode, then upkeep, beside the lease: a slow hook or a
	// synchronous standby that takes its time must never delay fencing.
	mctx, stopUpkeep := context.WithCancel(ctx)
	upkeep := make(chan struct{})
	var cur atomic.Pointer[holder] // h, after a regain the new one
	cur.Store(h)
	go func() {
		defer close(upkeep)
		r.upkeep(mctx, cur.Load)
	}()
	// Runs before the teardown above (deferred calls run last-in, first-out):
	// /status turns 400 at once, then upkeep stops.
	defer func() { r.st.unserve(); stopUpkeep(); <-upkeep }()

	t := time.NewTicker(holdTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			stopMode = "fast"
			return nodeapi.RoleRejoining, "handler-runner stopping"
		case <-h.Lost():
			why := h.Why()
			if h.SessionGone() {
				h2, err := r.regain(ctx, h)
				if err == nil {
					h = h2
					cur.Store(h)
					continue
				}
				why += "; not taken back: " + err.Error()
			}
			r.st.setGrace(time.Now().Add(stepDownGrace))
			return nodeapi.RoleRejoining, why
		case rq := <-r.restarts:
			if !rq.active {
				rq.done <- fmt.Errorf("%s is the active node now: nothing was restarted or cloned (see understudy cluster status)", r.name)
				continue
			}
			if err := r.restartActive(ctx, rq.by, h.Lost()); err != nil {
				rq.done <- err
				r.st.setGrace(time.Now().Add(stepDownGrace))
				return nodeapi.RoleRejoining, "postgres did not start again after a restart in place: " + err.Error()
			}
			rq.done <- nil
			continue
		case <-t.C:
		}
		why, ho, fenceNow := r.checkActive(ctx, h)
		if why == "" {
			continue
		}
		handover = ho
		if !fenceNow {
			stopMode = "fast"
		}
		if ho == nil {
			r.st.setGrace(time.Now().Add(stepDownGrace))
		}
		return nodeapi.RoleRejoining, why
	}
}

// upkeep is what the active does besides holding the lease: once-mode on
// entry (everything, once: slots, sync set, services, hooks; failures are
// logged and recorded and the node stays active), then the write position
// for the lease's renewals every interval, and slots and the sync set every
// five intervals, until ctx ends.
func (r *Runner) upkeep(ctx context.Context, holding func() *holder) {
	r.reconcileActive(ctx)
	slots := time.NewTicker(5 * r.cfg.Checks.Interval)
	defer slots.Stop()
	lsn := time.NewTicker(r.cfg.Checks.Interval)
	defer lsn.Stop()
	trim := time.NewTicker(time.Minute)
	defer trim.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lsn.C:
			// The renewals write it into the leader key, where the next
			// election finds it.
			sctx, cancel := context.WithTimeout(ctx, r.cfg.Checks.Interval)
			if st, err := r.pgc.State(sctx); err == nil && !st.InRecovery {
				holding().setLSN(st.WriteLSN)
			}
			cancel()
		case <-trim.C:
			r.trimEvents(ctx)
		case <-slots.C:
			r.ensureSlots(ctx)
			r.ensureSync(ctx)
			if ms, err := r.readMembers(ctx); err == nil {
				holding().setMembers(ms)
			}
			r.refreshPause(ctx)
			r.refreshMaintenance(ctx) // shown only: the active is not in maintenance (maintenance.go)
		}
	}
}

// handover is a planned switchover in progress: the next-master record to
// complete with the old primary's last LSN.
type handover struct {
	nm    cluster.NextMaster
	index uint64
}

// checkActive looks at what the lease does not: that PostgreSQL still
// runs, and that next-master does not name another node for this term. It
// returns why the active role must end ("" to keep it), a handover for a
// switchover, and whether to fence at once (stop PostgreSQL immediately)
// rather than cleanly.
func (r *Runner) checkActive(ctx context.Context, h *holder) (string, *handover, bool) {
	if _, running, err := r.pg.Running(ctx); err == nil && !running {
		return "postgres is not running on the active node (crashed or killed); stepping down so a standby takes over", nil, true
	}
	cctx, cancel := context.WithTimeout(ctx, 2*holdTick)
	ks, err := r.cc.GetKey(cctx, r.keys.Leader(), false)
	cancel()
	if err != nil || ks.Session != h.sessID {
		// The renewals decide whether the lock is held.
		return "", nil, false
	}
	nm, found, index, err := r.readNextMaster(ctx)
	if err == nil && found && nm.Term == ks.LockIndex && nm.Node != r.name {
		if nm.Switchover {
			return "switchover to " + nm.Node, &handover{nm: nm, index: index}, false
		}
		return "next-master names " + nm.Node, nil, true
	}
	return "", nil, false
}

// promote makes the local PostgreSQL a primary.
func (r *Runner) promote(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, running, err := r.pg.Running(pctx); err != nil || !running {
		return fmt.Errorf("postgres is not running: %v", err)
	}
	st, err := r.pgState(pctx)
	if err != nil {
		return err
	}
	if !st.InRecovery {
		return nil
	}
	return r.pg.PromoteTo(pctx, r.minorityTimeline(pctx, st.Timeline))
}

// minorityTimelineGap spaces the timelines of the sides of an
// active-minority partition: each side promotes onto one of its own,
// above the majority's next ones (it would take that many failovers in one
// partition for the majority to reach it).
const minorityTimelineGap = 100

// minorityTimeline is the lowest timeline a promotion on a minority side
// may take (0 off one): one per node, by its place among the members, so
// that no two sides promote onto the same number (postgres.PromoteTo).
func (r *Runner) minorityTimeline(ctx context.Context, cur uint32) uint32 {
	if r.minority() == nil {
		return 0
	}
	var names []string
	for _, m := range r.members(ctx) {
		names = append(names, m.Name)
	}
	if !slices.Contains(names, r.name) {
		names = append(names, r.name)
	}
	slices.Sort(names)
	return cur + minorityTimelineGap*uint32(slices.Index(names, r.name)+1)
}

// demote fences the node, PostgreSQL first: /status stops answering 200
// at once; PostgreSQL stops taking writes (immediately, within the fencing
// stop budget, when the lock is in doubt; cleanly in a switchover or a
// shutdown, so the standbys receive every WAL record, with the lease still
// renewed meanwhile so the watchdog leaves the checkpoint alone); only then
// the active-only services and Syncthing, on their own budget; and last the
// lock, released with the word that PostgreSQL stopped, or, when it was lost
// already, that word in fenced/<node>. The lease is disarmed once
// PostgreSQL is known stopped; while it is not, the watchdog stops it when
// the lease runs out. In a switchover the next-master record gets the old
// primary's last LSN before the lock is released, so the target knows how
// much to wait for.
func (r *Runner) demote(ctx context.Context, h *holder, mode string, ho *handover, reason string) {
	r.st.unserve()
	r.setCarry(nil)
	start := time.Now()
	if mode == "immediate" {
		h.stop()
		qctx, cancel := context.WithTimeout(ctx, r.fencing.Stop)
		if _, err := fence.Quit(qctx, r.pg.DataDir()); err != nil {
			r.log.Error("postgres did not stop within the fencing budget", "budget", r.fencing.Stop, "err", err)
		}
		cancel()
	}
	if err := r.pg.Stop(ctx, mode); err != nil {
		r.log.Error("cannot stop postgres while demoting; stopping it immediately", "mode", mode, "err", err)
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if _, err := fence.Quit(qctx, r.pg.DataDir()); err != nil {
			r.log.Error("cannot stop postgres while demoting; the watchdog stops it when the lease runs out", "err", err)
		}
		cancel()
	}
	h.stop()
	stopped := false
	if _, running, err := r.pg.Running(ctx); err == nil && !running {
		stopped = true
		r.lease.Disarm()
	}
	refused := time.Since(start).Round(time.Millisecond)
	r.stopActiveOnly(ctx)
	r.flipFiles(ctx, false)
	var lastLSN cluster.LSN
	if cd, err := r.pg.ControlData(ctx); err == nil {
		lastLSN = cd.CheckpointLSN
	}
	if ho != nil {
		ho.nm.FromLSN = lastLSN
		if ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), ho.nm, ho.index); err != nil || !ok {
			r.log.Warn("cannot record the last LSN for the switchover target; it will not wait for it", "err", err)
		}
	}
	released := false
	if h.Why() == "" {
		// The last write position published stays unless the stop's
		// checkpoint is further: the election measures lag against it.
		v := h.last()
		v.WriteLSN, v.Fenced = max(v.WriteLSN, lastLSN), stopped
		ok, err := r.cc.Release(ctx, r.keys.Leader(), h.sessID, v)
		if err != nil {
			r.log.Warn("cannot release the leader key; it is freed when the session ends", "err", err)
		}
		// Not released: the session ended first (the check-runner saw
		// PostgreSQL stop and failed its checks). The word that it
		// stopped goes to fenced/<node> instead, so the next active
		// does not wait out the lease.
		released = ok
	}
	switch {
	case released:
	case stopped:
		f := cluster.Fenced{Session: h.sessID, At: time.Now().UTC(), Reason: reason, LSN: lastLSN}
		if err := r.cc.PutJSON(ctx, r.keys.Fenced(r.name), f); err != nil {
			r.log.Warn("cannot record that this node fenced; the new active waits out the lease", "err", err)
		}
	}
	r.wasPrimary = true
	r.record(ctx, cluster.Event{Kind: cluster.EventFence, From: r.name, Reason: reason, LSN: lastLSN,
		Details: map[string]string{"stop_mode": mode, "writes_refused_after": refused.String(), "postgres_stopped": fmt.Sprint(stopped)}})
	r.log.Info("demoted: postgres stopped, leader key released", "stop_mode", mode, "writes_refused_after", refused,
		"postgres_stopped", stopped, "last_lsn", lastLSN)
}

// keepEvents is how many events the history keeps: what GET /v1/events
// answers at most. The active deletes older ones once a minute, so that
// the history (and every Consul snapshot) stays bounded whatever writes it.
const keepEvents = 10000

func (r *Runner) trimEvents(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n, err := r.cc.TrimEvents(ctx, r.keys.Events(), keepEvents); err != nil {
		r.warnEvery("trim-events", "cannot trim the history", "err", err)
	} else if n > 0 {
		r.log.Info("trimmed the history", "deleted", n, "kept", keepEvents)
	}
}
