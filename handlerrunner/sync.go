package handlerrunner

import (
	"context"
	"slices"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// ensureSync keeps, in synchronous mode, one synchronous standby and the sync
// key in step, in the order that never claims more than PostgreSQL
// guarantees: PostgreSQL is told first and the key is written only once the
// standby is reported sync; so every member the key names has every write
// the active acknowledged since the key was written, and only those may be
// elected. One synchronous standby, as Patroni does by default: with three
// nodes a commit waits for one peer, and the loss of any one node neither
// blocks writes for long nor loses them.
func (r *Runner) ensureSync(ctx context.Context) {
	if !r.cfg.Postgres.Synchronous {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var cur cluster.SyncState
	if _, _, err := r.cc.GetJSON(ctx, r.keys.Sync(), &cur); err != nil {
		r.warnEvery("sync-read", "cannot read the sync key", "err", err)
		return
	}
	reps, err := r.pg.Replicas(ctx)
	if err != nil {
		r.warnEvery("sync-replicas", "cannot read pg_stat_replication", "err", err)
		return
	}
	// Only a member that can be elected may be the synchronous standby: a
	// pg_basebackup in progress streams too (as understudy_clone), and a
	// nofailover member would make the guarantee useless.
	electable := map[string]bool{}
	for _, m := range r.members(ctx) {
		electable[m.Name] = m.Name != r.name && !m.NoFailover
	}
	streaming := map[string]string{} // application_name -> sync_state
	var names []string
	for _, rep := range reps {
		if rep.State == "streaming" && electable[rep.Name] {
			streaming[rep.Name] = rep.SyncState
			names = append(names, rep.Name)
		}
	}
	slices.Sort(names)
	if cur.Leader == r.name && len(cur.Standbys) == 1 && streaming[cur.Standbys[0]] == "sync" {
		return
	}
	if len(names) == 0 {
		// Keep what PostgreSQL has: commits wait until a standby is back,
		// which is the promise of synchronous mode.
		r.warnEvery("sync-none", "synchronous mode: no standby streams; commits wait until one does")
		return
	}
	pick := names[0]
	if cur.Leader == r.name && len(cur.Standbys) == 1 && streaming[cur.Standbys[0]] != "" {
		pick = cur.Standbys[0] // streaming but not yet sync: keep waiting for it
	}
	if err := r.pg.SetSynchronousStandbys(ctx, []string{pick}); err != nil {
		r.warnEvery("sync-set", "cannot set synchronous_standby_names", "err", err)
		return
	}
	for {
		reps, err := r.pg.Replicas(ctx)
		if err == nil && slices.ContainsFunc(reps, func(rep postgres.Replica) bool { return rep.Name == pick && rep.SyncState == "sync" }) {
			break
		}
		if !sleep(ctx, 100*time.Millisecond) {
			r.warnEvery("sync-wait", "synchronous standby not reported sync yet", "standby", pick)
			return
		}
	}
	if err := r.cc.PutJSON(ctx, r.keys.Sync(), cluster.SyncState{Leader: r.name, Standbys: []string{pick}}); err != nil {
		r.warnEvery("sync-write", "cannot write the sync key", "err", err)
		return
	}
	r.log.Info("synchronous standby set", "standby", pick)
}

// clearSync empties synchronous_standby_names on a node that became active
// in asynchronous mode: ALTER SYSTEM keeps the setting in
// postgresql.auto.conf, which clones inherit, so a node cloned while the
// cluster ran in synchronous mode would otherwise wait for standbys that
// asynchronous mode never names.
func (r *Runner) clearSync(ctx context.Context) {
	if r.cfg.Postgres.Synchronous {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.pg.SetSynchronousStandbys(ctx, nil); err != nil {
		r.warnEvery("sync-clear", "cannot clear synchronous_standby_names", "err", err)
	}
}
