package handlerrunner

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// runActive holds the active role from the acquired lock until it ends:
// promote, reconcile once (slots, services, hooks), then confirm the lease
// every holdTick. It returns why it ended; the deferred teardown fences the
// node (demoting) before anyone else can take writes.
func (r *Runner) runActive(ctx context.Context) (next Role, reason string) {
	sessID, nm := r.heldWith, r.switchingTo
	r.switchingTo = nil
	stopMode := "immediate"
	var handover *handover
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fenceTimeout)
		defer cancel()
		r.enter(fctx, RoleActive, RoleDemoting, reason)
		r.demote(fctx, sessID, stopMode, handover, reason)
		next = RoleRejoining
	}()

	start := time.Now()
	if err := r.promote(ctx); err != nil {
		r.st.setGrace(time.Now().Add(stepDownGrace))
		return RoleRejoining, "promotion failed: " + err.Error()
	}
	r.wasPrimary = true
	r.upstream = ""
	r.st.serve(time.Now())
	st, _ := r.pgState(ctx)
	r.log.Info("active: postgres promoted", "took", time.Since(start).Round(time.Millisecond), "timeline", st.Timeline, "lsn", st.WriteLSN)
	kind := cluster.EventFailover
	if nm != nil && nm.Switchover {
		kind = cluster.EventSwitchover
	}
	r.metrics.promoted(kind)
	r.record(ctx, cluster.Event{Kind: kind, From: r.takenFrom, To: r.name, LSN: st.WriteLSN, Reason: r.st.get().Reason,
		Details: map[string]string{"promote_took": time.Since(start).Round(time.Millisecond).String()}})

	// Once-mode, then upkeep, beside the lease loop: a slow hook or a
	// synchronous standby that takes its time must never delay fencing.
	mctx, stopUpkeep := context.WithCancel(ctx)
	upkeep := make(chan struct{})
	go func() {
		defer close(upkeep)
		r.upkeep(mctx, sessID)
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
			return RoleRejoining, "handler-runner stopping"
		case <-t.C:
		}
		why, h, fenceNow := r.holdLease(ctx, sessID)
		if why == "" {
			continue
		}
		handover = h
		if !fenceNow {
			stopMode = "fast"
		}
		if h == nil {
			r.st.setGrace(time.Now().Add(stepDownGrace))
		}
		return RoleRejoining, why
	}
}

// upkeep is what the active does besides holding the lease: once-mode on
// entry (everything, once: slots, sync set, services, hooks; failures are
// logged and recorded and the node stays active), then slots and the sync
// set every five intervals, until ctx ends.
func (r *Runner) upkeep(ctx context.Context, sessID string) {
	r.reconcileActive(ctx)
	slots := time.NewTicker(5 * r.cfg.Checks.Interval)
	defer slots.Stop()
	lsn := time.NewTicker(r.cfg.Checks.Interval)
	defer lsn.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lsn.C:
			r.publishWriteLSN(ctx, sessID)
		case <-slots.C:
			r.ensureSlots(ctx)
			r.ensureSync(ctx)
		}
	}
}

// publishWriteLSN writes the active's write position into the leader key
// (acquiring again with the session that holds it updates the value and
// keeps the lock and its LockIndex), where the next election finds it.
func (r *Runner) publishWriteLSN(ctx context.Context, sessID string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Checks.Interval)
	defer cancel()
	st, err := r.pgc.State(ctx)
	if err != nil || st.InRecovery {
		return
	}
	value := cluster.Leader{Node: r.name, Since: r.st.get().Since.UTC(), Address: r.cfg.Node.Address,
		PostgresPort: r.cfg.Postgres.Port, APIURL: r.cfg.APIURL(), WriteLSN: st.WriteLSN}
	if _, err := r.cc.Acquire(ctx, r.keys.Leader(), value, sessID); err != nil {
		r.warnEvery("publish-lsn", "cannot publish the write position in the leader key", "err", err)
	}
}

// handover is a planned switchover in progress: the next-master record to
// complete with the old primary's last LSN.
type handover struct {
	nm    cluster.NextMaster
	index uint64
}

// holdLease confirms, with a consistent read, that this node's session still
// holds the leader key, and that PostgreSQL still runs. It returns why the
// active role must end ("" to keep it), a handover for a switchover, and
// whether to fence at once (stop PostgreSQL immediately) rather than
// cleanly.
func (r *Runner) holdLease(ctx context.Context, sessID string) (string, *handover, bool) {
	if _, running, err := r.pg.Running(ctx); err == nil && !running {
		return "postgres is not running on the active node (crashed or killed); stepping down so a standby takes over", nil, true
	}
	cctx, cancel := context.WithTimeout(ctx, 2*holdTick)
	ks, err := r.cc.GetKey(cctx, r.keys.Leader(), true)
	cancel()
	if err != nil {
		if since := time.Since(r.st.confirmedAt()); since > r.lease {
			return fmt.Sprintf("cannot confirm the leader lock for %v (lease %v): %v", since.Round(time.Millisecond), r.lease, err), nil, true
		}
		return "", nil, false
	}
	if ks.Session != sessID {
		return "lost the leader lock (session invalidated or lock released)", nil, true
	}
	r.st.confirm(time.Now())
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
	return r.pg.Promote(pctx)
}

// demote fences the node: /status stops answering 200 at once, the
// active-only services stop, PostgreSQL stops (immediately when the lock is
// in doubt, cleanly in a switchover so the standbys receive every WAL
// record), and the lock is released. In a switchover the next-master record
// gets the old primary's last LSN before the lock is released, so the
// target knows how much to wait for.
func (r *Runner) demote(ctx context.Context, sessID, mode string, h *handover, reason string) {
	r.st.unserve()
	r.stopActiveOnly(ctx)
	r.flipFiles(ctx, false)
	if err := r.pg.Stop(ctx, mode); err != nil {
		r.log.Error("cannot stop postgres while demoting; it may still take writes", "err", err)
	}
	var lastLSN cluster.LSN
	if cd, err := r.pg.ControlData(ctx); err == nil {
		lastLSN = cd.CheckpointLSN
	}
	if h != nil {
		h.nm.FromLSN = lastLSN
		if ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), h.nm, h.index); err != nil || !ok {
			r.log.Warn("cannot record the last LSN for the switchover target; it will not wait for it", "err", err)
		}
	}
	if _, err := r.cc.Release(ctx, r.keys.Leader(), sessID); err != nil {
		r.log.Warn("cannot release the leader key; it is freed when the session ends", "err", err)
	}
	r.wasPrimary = true
	r.record(ctx, cluster.Event{Kind: cluster.EventFence, From: r.name, Reason: reason, LSN: lastLSN,
		Details: map[string]string{"stop_mode": mode}})
	r.log.Info("demoted: postgres stopped, leader key released", "stop_mode", mode, "last_lsn", lastLSN)
}
