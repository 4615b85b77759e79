package handlerrunner

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// switchover is a planned move of the active role to target, asked of the
// active node. It writes next-master for the current term with CAS; the
// active loop sees it, stops PostgreSQL cleanly (its standbys receive every
// WAL record before the shutdown completes), records its last LSN and
// releases the lock; the target acquires only once it has replayed that LSN.
// Nothing acknowledged is lost. It returns when target holds the lock.
func (r *Runner) switchover(ctx context.Context, target string, timeout time.Duration) (map[string]any, int, error) {
	ks, l, err := r.readLeader(ctx, true)
	if err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cannot read the leader key: %w", err)
	}
	if body, code, err := r.notTheActive(ks, l, "send the switchover to"); err != nil {
		return body, code, err
	}
	if target == r.name {
		return nil, http.StatusConflict, fmt.Errorf("%s is already the active node", target)
	}
	// A paused cluster moves nothing: the standbys would not follow the
	// new active (no PostgreSQL repointed or rewound while paused).
	var p cluster.Pause
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Paused(), &p); err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cannot read the paused key: %w", err)
	} else if found {
		return map[string]any{"paused": p}, http.StatusConflict, fmt.Errorf("the cluster is paused (by %s); understudy cluster resume first", p.By)
	}
	var member *cluster.Member
	for _, m := range r.members(ctx) {
		if m.Name == target {
			member = &m
		}
	}
	if member == nil {
		return nil, http.StatusNotFound, fmt.Errorf("no member named %q; see GET /v1/status/cluster for the members", target)
	}
	var mt cluster.Maintenance
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Maintenance(target), &mt); err != nil {
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cannot read the maintenance key of %s: %w", target, err)
	} else if found {
		return map[string]any{"maintenance": mt}, http.StatusConflict,
			fmt.Errorf("%s cannot take over: it is in maintenance (by %s); understudy node maintenance off %s first", target, mt.By, target)
	}
	st, err := r.askPeer(ctx, *member)
	if c := candidate(target, st, err, false); !c.Healthy || c.NoFailover {
		why := "it is not a healthy standby with a consul session"
		switch {
		case err != nil:
			why = err.Error()
		case st.NoFailover:
			why = "it has nofailover set (or stepped down moments ago)"
		}
		return nil, http.StatusConflict, fmt.Errorf("%s cannot take over: %s", target, why)
	}
	_, found, index, err := r.readNextMaster(ctx)
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	if !found {
		index = 0
	}
	reason := "switchover requested through the API"
	if who := caller(ctx); who != "" {
		reason = "switchover requested by " + who + " through the API"
	}
	nm := cluster.NextMaster{Node: target, By: r.name, Reason: reason,
		At: time.Now().UTC(), Switchover: true, Term: ks.LockIndex, RequestedBy: caller(ctx)}
	ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), nm, index)
	if err != nil {
		return nil, http.StatusServiceUnavailable, err
	}
	if !ok {
		return nil, http.StatusConflict, fmt.Errorf("next-master changed meanwhile (another switchover?); retry")
	}
	r.log.Info("switchover requested", "target", target, "by", caller(ctx))
	start := time.Now()
	deadline := start.Add(timeout)
	var idx uint64
	for time.Now().Before(deadline) {
		ks, next, err := r.cc.WatchKey(ctx, r.keys.Leader(), idx, time.Until(deadline))
		if ctx.Err() != nil {
			return nil, http.StatusServiceUnavailable, ctx.Err()
		}
		if err != nil {
			idx = 0
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		idx = next
		l := decodeLeader(ks)
		switch {
		case ks.Session != "" && l.Node == target:
			return map[string]any{"active": target, "took": time.Since(start).Round(time.Millisecond).String()}, http.StatusOK, nil
		case ks.Session != "" && l.Node != r.name:
			// The target withdrew (its session went, say) and the
			// election chose another node: the role moved, not where
			// asked. Say so now rather than at the timeout.
			return map[string]any{"active": l.Node, "target": target, "took": time.Since(start).Round(time.Millisecond).String()}, http.StatusConflict,
				fmt.Errorf("%s could not take over and the election chose %s; see GET /v1/events for why", target, l.Node)
		}
	}
	return map[string]any{"target": target}, http.StatusGatewayTimeout,
		fmt.Errorf("switchover to %s did not complete within %v; see GET /v1/events", target, timeout)
}
