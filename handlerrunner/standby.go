package handlerrunner

import (
	"context"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// runStandby follows the leader: it watches the leader key with a blocking
// query (so a freed lock is seen at once), restarts PostgreSQL after a
// crash, and leaves the role when the lock is free (an election), when
// another node took it (follow it), or when the standby cannot stream.
func (r *Runner) runStandby(ctx context.Context) (nodeapi.Role, string) {
	var index uint64
	var notStreamingSince, lastLook time.Time
	var lastHolder string
	for {
		asked := time.Now()
		ks, next, err := r.cc.WatchKey(ctx, r.keys.Leader(), index, r.cfg.Checks.Interval)
		if ctx.Err() != nil {
			return nodeapi.RoleStandby, errStopping.Error()
		}
		l := decodeLeader(ks)
		r.seen.read(l, err, time.Since(asked) > r.cfg.Checks.Interval+slowRead)
		if err != nil {
			r.warnEvery("standby-watch", "cannot watch the leader key; retrying", "err", err)
			index = 0
			if !sleep(ctx, r.cfg.Checks.Interval) {
				return nodeapi.RoleStandby, errStopping.Error()
			}
			continue
		}
		index = next
		if ks.Session != "" && l.Node != r.name {
			r.takeRestart(ctx, nodeapi.RoleStandby, l)
		}
		// The active rewrites the key every lease renewal: the rest of
		// this look is needed once an interval, or at once when the
		// holder changed.
		if ks.Session != "" && l.Node == lastHolder && time.Since(lastLook) < r.cfg.Checks.Interval {
			continue
		}
		lastHolder, lastLook = l.Node, time.Now()
		r.refreshOptions(ctx)
		r.refreshPause(ctx)
		r.log.Debug("leader key", "holder", l.Node, "session", ks.Session, "index", index)
		if why := r.keepStandbyRunning(ctx, l); why != "" {
			return nodeapi.RoleRejoining, why
		}
		switch {
		case ks.Session == "":
			if p := r.paused(); p != nil {
				// Paused or not, a primary nobody holds the lock for
				// is stopped (rejoining fences it first).
				if st, err := r.pgState(ctx); err == nil && !st.InRecovery {
					return nodeapi.RoleRejoining, "postgres runs as a primary on a standby"
				}
				// Role loop change (cluster failover --to): the one way
				// out of a paused cluster whose active died. Only the
				// node an operator's next-master names for this term
				// stands; it then takes the lock as any chosen node
				// does (lease waited out, runActive), so pausing still
				// elects nobody on its own.
				if nm, ok := r.operatorChoice(ctx, ks.LockIndex); ok && nm.Node == r.name {
					if why := r.notCandidate(); why != "" {
						r.warnEvery("standby-operator", "an operator asked for a failover to this node, but it cannot stand", "why", why)
						continue
					}
					return nodeapi.RoleCandidate, "the cluster is paused and " + orAPI(nm.RequestedBy, nm.By) + " asked for a failover to this node"
				}
				r.warnEvery("standby-paused", "the leader key is free but the cluster is paused: no election until understudy cluster resume", "paused_by", p.By)
				continue
			}
			if why := r.notCandidate(); why != "" {
				r.warnEvery("standby-not-candidate", "the leader key is free but this node does not stand for election", "why", why)
				continue
			}
			return nodeapi.RoleCandidate, "the leader key is free"
		case l.Node == r.name:
			return nodeapi.RoleRejoining, "the leader key names this node, which is a standby"
		case l.Node != r.upstream:
			return nodeapi.RoleRejoining, "new active node " + l.Node
		}
		st, err := r.pgState(ctx)
		if err == nil && !st.InRecovery {
			return nodeapi.RoleRejoining, "postgres runs as a primary on a standby"
		}
		if err == nil && streamingFrom(st, l) {
			notStreamingSince = time.Time{}
			continue
		}
		if notStreamingSince.IsZero() {
			notStreamingSince = time.Now()
		} else if time.Since(notStreamingSince) > rewindAfter {
			// A standby that cannot stream for this long has most likely
			// diverged from the new timeline: rewinding is cheap when it
			// has not.
			r.wasPrimary = true
			return nodeapi.RoleRejoining, fmt.Sprintf("not streaming from %s for %v", l.Node, rewindAfter)
		}
	}
}

// keepStandbyRunning restarts a crashed PostgreSQL as the standby it was.
// It returns why the node must rejoin instead, or "".
func (r *Runner) keepStandbyRunning(ctx context.Context, l cluster.Leader) string {
	_, running, err := r.pg.Running(ctx)
	if err != nil || running {
		return ""
	}
	if p := r.paused(); p != nil {
		r.warnEvery("standby-paused-pg", "postgres is not running on this standby; the cluster is paused: not starting it until understudy cluster resume", "paused_by", p.By)
		return ""
	}
	r.log.Warn("postgres is not running on this standby; starting it again")
	if err := r.pg.StartStandby(ctx, r.followed(l)); err != nil {
		return "cannot restart postgres as a standby: " + err.Error()
	}
	return ""
}

// notCandidate says why this node does not stand for election now, or "".
func (r *Runner) notCandidate() string {
	switch {
	case r.noFailover():
		return "nofailover is set"
	case r.inMaintenance() != nil:
		return "this node is in maintenance (understudy node maintenance off " + r.name + " ends it)"
	case time.Now().Before(r.st.graceUntil()):
		return "this node stepped down moments ago"
	case r.sess.ID() == "":
		return "no consul session (a bound check is critical)"
	case !r.watchdogAlive():
		return "its fencing watchdog is not running (" + r.lease.Snapshot() + ")"
	}
	return ""
}

func streamingFrom(st postgres.State, l cluster.Leader) bool {
	return st.InRecovery && st.Receiver != nil && st.Receiver.Status == "streaming" &&
		st.Receiver.SenderHost == l.Address && st.Receiver.SenderPort == l.PostgresPort
}

// followed is the upstream a standby restarted in place streams from: the
// active it already followed, or none when the leader key names another.
func (r *Runner) followed(l cluster.Leader) *postgres.Upstream {
	if r.upstream != "" && l.Node == r.upstream {
		return &postgres.Upstream{Host: l.Address, Port: l.PostgresPort}
	}
	return nil
}
