package handlerrunner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

var errNoData = errors.New("postgres has no data directory and no node holds the leader key to clone from; start the cluster on one node first (`understudy cluster start`)")

// runRejoining brings PostgreSQL into the standby role for whatever the
// cluster looks like now: a standby of the leader, or, while no node holds
// the leader key, a read-only standby of nobody that waits for an election.
// It never starts a writable primary: only the active role promotes.
func (r *Runner) runRejoining(ctx context.Context) (nodeapi.Role, string) {
	r.fenceStray(ctx)
	r.stopActiveOnly(ctx)
	r.flipFiles(ctx, false)
	r.startEverywhere(ctx)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !sleep(ctx, r.cfg.Checks.Interval) {
			return nodeapi.RoleRejoining, errStopping.Error()
		}
		ks, l, err := r.readLeader(ctx, true)
		if err != nil {
			r.warnEvery("rejoin-leader", "cannot read the leader key; retrying", "err", err)
			continue
		}
		if ks.Session != "" && l.Node != r.name && r.takeRestart(ctx, nodeapi.RoleRejoining, l) {
			r.st.setGrace(time.Time{})
			return nodeapi.RoleStandby, "reinitialized from " + l.Node
		}
		r.refreshPause(ctx)
		if p := r.paused(); p != nil && ks.Session != "" && l.Node != r.name {
			// Paused: PostgreSQL is neither started nor rewound nor
			// repointed. A standby that already streams from the active
			// is one; anything else waits for the resume.
			if st, err := r.pgState(ctx); err == nil && streamingFrom(st, l) {
				r.upstream = l.Node
				return nodeapi.RoleStandby, "following " + l.Node + " (the cluster is paused)"
			}
			r.warnEvery("rejoin-paused", "the cluster is paused: not starting, rewinding or repointing postgres until understudy cluster resume", "paused_by", p.By, "active", l.Node)
			continue
		}
		if p := r.paused(); p != nil && ks.Session == "" {
			r.warnEvery("rejoin-paused", "the cluster is paused and no node holds the leader key: not starting postgres until understudy cluster resume", "paused_by", p.By)
			continue
		}
		switch {
		case ks.Session == "":
			if err := r.startDetached(ctx); err != nil {
				r.warnEvery("rejoin-detached", "cannot start postgres as a standby", "err", err)
				continue
			}
			return nodeapi.RoleStandby, "no node holds the leader key"
		case l.Node == r.name:
			// A session of this node holds the lock, from before a restart
			// of the handler-runner or a demotion that could not release it.
			// Drop it: the election then decides on live data, and this
			// node, likely the most advanced, takes part.
			r.log.Warn("leader key held by an old session of this node; destroying it", "session", ks.Session)
			if err := r.cc.DestroySession(ctx, ks.Session); err != nil {
				r.warnEvery("rejoin-destroy", "cannot destroy old session", "session", ks.Session, "err", err)
			}
			continue
		default:
			if err := r.follow(ctx, l); err != nil {
				r.warnEvery("rejoin-follow", "cannot follow the active node; retrying", "active", l.Node, "err", err)
				continue
			}
			// Following the new active, this node is a standby like any
			// other: the grace that kept it out of the election its own
			// failure started is over.
			r.st.setGrace(time.Time{})
			return nodeapi.RoleStandby, "following " + l.Node
		}
	}
}

// fenceStray stops a PostgreSQL that runs as a primary on this node, which
// is not active (it is rejoining), before anything else and whether or not
// Consul answers: a primary the handler-runner does not hold the lock for
// must not take one more write. A server that does not answer counts as a
// primary unless it was started as a standby (standby.signal). Once no
// primary runs, the lease is disarmed.
func (r *Runner) fenceStray(ctx context.Context) {
	pid, err := fence.Postmaster(r.pg.DataDir())
	if err != nil {
		r.warnEvery("stray-primary", "cannot tell whether postgres runs", "err", err)
		return
	}
	if pid != 0 {
		primary := false
		if st, err := r.pgState(ctx); err == nil {
			primary = !st.InRecovery
		} else if _, err := os.Stat(filepath.Join(r.pg.DataDir(), "standby.signal")); errors.Is(err, fs.ErrNotExist) {
			primary = true
		}
		if primary {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := fence.Quit(qctx, r.pg.DataDir())
			cancel()
			if err != nil {
				r.log.Error("postgres runs as a primary on a node that is not active and cannot be stopped; the watchdog stops it when the lease runs out", "err", err)
				return
			}
			r.wasPrimary = true
			r.log.Warn("postgres ran as a primary on a node that is not active: stopped it (immediate)", "postmaster", pid)
		}
	}
	r.lease.Disarm()
}

// startDetached makes sure PostgreSQL runs read-only when no node is active:
// a primary is stopped and started again as a standby with no upstream.
func (r *Runner) startDetached(ctx context.Context) error {
	if !r.pg.HasData() {
		return errNoData
	}
	_, running, err := r.pg.Running(ctx)
	if err != nil {
		return err
	}
	if running {
		st, err := r.pgState(ctx)
		if err == nil && st.InRecovery {
			return nil
		}
		// A primary with nobody holding the lock: it must not take writes.
		r.log.Warn("postgres runs as a primary but this node is not active; restarting it read-only")
		if err := r.pg.Stop(ctx, "fast"); err != nil {
			return err
		}
		r.wasPrimary = true
	}
	r.upstream = ""
	return r.pg.StartStandby(ctx, nil)
}

// follow makes PostgreSQL a streaming standby of the leader l: a re-pointed
// standby when it already is one, a rewound one when it was a primary (its
// timeline may have diverged), a fresh clone when rewind is impossible or
// there is no data at all.
func (r *Runner) follow(ctx context.Context, l cluster.Leader) error {
	if l.Address == "" || l.PostgresPort == 0 {
		return fmt.Errorf("the leader key names %s but not its address; is it running a current understudy?", l.Node)
	}
	up := postgres.Upstream{Host: l.Address, Port: l.PostgresPort}
	if !r.pg.HasData() {
		return r.clone(ctx, l.Node, up)
	}
	_, running, err := r.pg.Running(ctx)
	if err != nil {
		return err
	}
	if running && !r.wasPrimary {
		st, err := r.pgState(ctx)
		if err == nil && st.InRecovery {
			if err := r.pg.Follow(ctx, up); err != nil {
				return err
			}
			r.upstream = l.Node
			return nil
		}
		if err == nil {
			r.wasPrimary = true // a primary that is not the active: rewind it
		}
	}
	if running {
		if err := r.pg.Stop(ctx, "fast"); err != nil {
			return err
		}
	}
	if !r.wasPrimary {
		if cd, err := r.pg.ControlData(ctx); err == nil && cd.State != "shut down in recovery" && cd.State != "in archive recovery" {
			r.wasPrimary = true
		}
	}
	if r.wasPrimary {
		start := time.Now()
		kept, err := r.pg.Rewind(ctx, up)
		if errors.Is(err, postgres.ErrSourceInRecovery) {
			return err // the new active is still waiting to promote
		}
		if kept.Dir != "" {
			r.log.Warn("this node's writes after its history left the active's were kept aside before the rewind discarded them",
				"dir", kept.Dir, "timeline", kept.Timeline, "from", kept.From, "to", kept.To, "commits", kept.Commits, "inspect", kept.Inspect())
			r.record(ctx, cluster.Event{Kind: cluster.EventDiverged, LSN: kept.From,
				Reason: fmt.Sprintf("%d transactions committed here after the history left %s's (timeline %d, %s to %s) kept in %s; read them with %s, remove the directory when done",
					kept.Commits, l.Node, kept.Timeline, kept.From, kept.To, kept.Dir, kept.Inspect()),
				Details: map[string]string{"dir": kept.Dir, "timeline": fmt.Sprint(kept.Timeline), "from": kept.From.String(),
					"to": kept.To.String(), "commits": fmt.Sprint(kept.Commits), "inspect": kept.Inspect()}})
		}
		if err != nil {
			r.log.Warn("pg_rewind failed; cloning afresh from the active node (the old data directory is kept aside)", "active", l.Node, "err", err)
			return r.clone(ctx, l.Node, up)
		}
		r.log.Info("rewound postgres to the active node's timeline", "active", l.Node, "took", time.Since(start).Round(time.Millisecond))
		r.record(ctx, cluster.Event{Kind: "rewind", Reason: "follow " + l.Node + " after having been a primary"})
		r.wasPrimary = false
	}
	if err := r.pg.StartStandby(ctx, &up); err != nil {
		// A data directory whose server exits at every start as a standby
		// of this active (one rewound to a history the active then left)
		// is cloned afresh rather than tried for ever. A slow start, or
		// one that fails before the server runs (a full disk, a bad
		// setting), is not counted: a clone would not help.
		if !errors.Is(err, postgres.ErrExitedAtStart) {
			return err
		}
		if r.startFailedWith != l.Node {
			r.startFailedWith, r.startFailures = l.Node, 0
		}
		if r.startFailures++; r.startFailures >= startFailuresBeforeClone {
			r.log.Warn("postgres exits at every start as a standby of the active node; cloning afresh (the old data directory is kept aside)",
				"active", l.Node, "attempts", r.startFailures, "err", err)
			r.startFailures = 0
			return r.clone(ctx, l.Node, up)
		}
		return err
	}
	r.startFailures, r.startFailedWith = 0, ""
	r.upstream = l.Node
	return nil
}

// startFailuresBeforeClone is how many times in a row PostgreSQL may fail
// to start as a standby before its data directory is replaced by a clone.
const startFailuresBeforeClone = 3

func (r *Runner) clone(ctx context.Context, from string, up postgres.Upstream) error {
	start := time.Now()
	r.log.Info("cloning postgres from the active node", "active", from)
	last := time.Now()
	err := r.pg.Clone(ctx, up, func(done, total int64) {
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			r.log.Info("clone progress", "done_bytes", done, "total_bytes", total)
		}
	})
	if err != nil {
		return err
	}
	r.log.Info("cloned postgres", "active", from, "took", time.Since(start).Round(time.Millisecond))
	r.record(ctx, cluster.Event{Kind: "clone", Reason: "clone from " + from})
	r.wasPrimary = false
	if err := r.pg.StartStandby(ctx, &up); err != nil {
		return err
	}
	r.upstream = from
	return nil
}

// pgState asks the local PostgreSQL its state under a short timeout.
func (r *Runner) pgState(ctx context.Context) (postgres.State, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.pgc.State(ctx)
}
