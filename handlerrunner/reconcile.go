package handlerrunner

import (
	"context"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
)

// reconcileActive is once-mode: on becoming active, everything the active
// must have, from scratch rather than from what happened during the
// failover: the mirrored folders send-only, replication slots for every
// member, the synchronous standby set, the active-only services, then every
// promote hook once. Failures are logged and recorded; the node stays
// active.
func (r *Runner) reconcileActive(ctx context.Context) {
	r.flipFiles(ctx, true)
	r.ensureSlots(ctx)
	r.clearSync(ctx)
	r.ensureSync(ctx)
	for _, svc := range r.cfg.Services {
		if err := r.svcs.Start(ctx, svc); err != nil {
			r.log.Error("cannot start service on the active node", "service", svc.Name, "err", err)
			r.record(ctx, cluster.Event{Kind: "service", Reason: "start " + svc.Name + " failed: " + err.Error()})
		}
	}
	for _, h := range r.cfg.PromoteHooks {
		r.runHook(ctx, h)
	}
}

func (r *Runner) runHook(ctx context.Context, h config.Hook) {
	hctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	start := time.Now()
	out, code, err := runCommand(hctx, h.Command)
	details := map[string]string{"hook": h.Name, "exit": itoa(code), "output": out, "took": time.Since(start).Round(time.Millisecond).String()}
	if err != nil || code != 0 {
		r.log.Error("promote hook failed; staying active", "hook", h.Name, "exit", code, "output", out, "err", err)
		if err != nil {
			details["error"] = err.Error()
		}
		r.record(ctx, cluster.Event{Kind: cluster.EventPromoteHook, Reason: "promote hook " + h.Name + " failed", Details: details})
		r.metrics.hookFailed()
		return
	}
	r.log.Info("promote hook ran", "hook", h.Name, "took", details["took"])
	r.record(ctx, cluster.Event{Kind: cluster.EventPromoteHook, Reason: "promote hook " + h.Name + " ran", Details: details})
}

// startEverywhere starts the services that run on every node, when they do
// not run: on a standby as much as on the active.
func (r *Runner) startEverywhere(ctx context.Context) {
	for _, svc := range r.cfg.Services {
		if svc.ActiveOnly {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if st, err := r.svcs.Status(sctx, svc); err == nil && !st.Running {
			if err := r.svcs.Start(sctx, svc); err != nil {
				r.log.Error("cannot start service", "service", svc.Name, "err", err)
			} else {
				r.log.Info("started service", "service", svc.Name)
			}
		}
		cancel()
	}
}

// stopActiveOnly stops the services that run only on the active node.
func (r *Runner) stopActiveOnly(ctx context.Context) {
	for _, svc := range r.cfg.Services {
		if !svc.ActiveOnly {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := r.svcs.Status(sctx, svc)
		if err == nil && st.Running {
			if err := r.svcs.Stop(sctx, svc); err != nil {
				r.log.Error("cannot stop active-only service", "service", svc.Name, "err", err)
			} else {
				r.log.Info("stopped active-only service", "service", svc.Name)
			}
		}
		cancel()
	}
}

// ensureSlots keeps a replication slot for every other member, so a standby
// that falls behind is not cut off.
func (r *Runner) ensureSlots(ctx context.Context) {
	ms, err := r.readMembers(ctx)
	if err != nil {
		return // a slot dropped for a failed read would cut a standby off
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Name)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.pg.EnsureSlots(sctx, names); err != nil {
		r.warnEvery("slots", "cannot maintain replication slots", "err", err)
	}
}
