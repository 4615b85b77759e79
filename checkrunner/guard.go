package checkrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// guard stops PostgreSQL on the active node when the node's handler-runner
// has been gone for the lease (consul.leader_lease). It is the third line:
// the handler-runner fences itself, and its watchdog stops PostgreSQL when
// the lease runs out; the guard records what happened (and stops
// PostgreSQL should the watchdog be gone too). The handler-runner is
// what fences the active node; dead (SIGKILL, a crash, an OOM kill, a
// supervisor that gave up) it fences nothing: its /status no longer answers,
// so HAProxy sends no new traffic, but PostgreSQL still takes writes from
// clients connected to it directly, and once the session's TTL frees the
// lock another node is promoted. The check-runner, a separate process, sees
// the leader key name this node and the handler-runner's API silent, and
// stops PostgreSQL (immediate). Its postgres checks then fail, the session
// bound to them ends, and the election starts at once rather than after the
// session TTL. A handler-runner that comes back finds PostgreSQL stopped
// and rejoins the cluster as a standby, as after any fencing.
type guard struct {
	cfg *config.Config
	log *slog.Logger
	pg  *postgres.Instance
	api *nodeapi.NodeClient
	// timeout bounds one probe of the API (ProbeTimeout).
	timeout time.Duration
	after   time.Duration

	// downSince is when the handler-runner was first seen gone while this
	// node held the leader key; zero while it answers.
	downSince time.Time
	// fenced is set once PostgreSQL was stopped for the current outage, so
	// it is stopped (and recorded) once.
	fenced bool
	// seen is set once the handler-runner has answered: the guard watches
	// over a handler-runner that ran and is gone, never over a node that
	// runs none (a check-runner alone, as in its own tests) or one that
	// has not started yet.
	seen bool
}

func newGuard(cfg *config.Config, log *slog.Logger) *guard {
	var client *tls.Config
	if cfg.TLS() {
		ca, cert, key := cfg.TLSFiles()
		var err error
		if _, client, err = certs.NodeTLS(certs.Paths{CA: ca, Cert: cert, Key: key}); err != nil {
			log.Warn("cannot read the TLS files to ask the handler-runner; the active node's guard is off", "err", err)
			return nil
		}
	}
	// No basic auth: a refusal is an answer too.
	return &guard{cfg: cfg, log: log, api: nodeapi.NewNodeClient(client, "", ""),
		timeout: ProbeTimeout(cfg.Checks.Interval), after: cfg.Fencing().Lease,
		pg: postgres.NewInstance(cfg.Postgres, cfg.Node.Name, log)}
}

// stoppedByWatchdog returns the fence event of an outage in which
// PostgreSQL was found stopped (the watchdog got there first: the lease ran
// out with nobody to renew it), nil while it runs.
func (g *guard) stoppedByWatchdog(ctx context.Context, now time.Time) *cluster.Event {
	if _, running, err := g.pg.Running(ctx); err != nil || running {
		return nil
	}
	gone := now.Sub(g.downSince).Round(time.Millisecond)
	g.log.Warn("the handler-runner of the active node is gone and postgres is already stopped (the watchdog's lease ran out)", "gone_for", gone)
	return &cluster.Event{Kind: cluster.EventFence, From: g.cfg.Node.Name,
		Reason:  fmt.Sprintf("handler-runner gone for %s on the active node: postgres stopped when its lease ran out", gone),
		Details: map[string]string{"by": "watchdog", "stop_mode": "immediate"}}
}

// probe asks the handler-runner's API whether it lives; any HTTP answer
// counts (a 401 of basic auth too).
func (g *guard) probe(ctx context.Context) error {
	return g.api.Alive(ctx, g.cfg.APIURL(), g.timeout)
}

// check runs after each observation: handlerErr is the probe's answer,
// active whether the leader key names this node. It returns an event to
// record when it fenced the node.
func (g *guard) check(ctx context.Context, active bool, handlerErr error, now time.Time) *cluster.Event {
	if g == nil {
		return nil
	}
	if handlerErr == nil {
		g.seen = true
	}
	if !active || handlerErr == nil || !g.seen {
		if g.fenced && handlerErr == nil {
			g.log.Info("handler-runner answers again; it takes the node back")
		}
		var ev *cluster.Event
		if !active && handlerErr != nil && !g.downSince.IsZero() && !g.fenced {
			// The lock moved on while the handler-runner was gone: say
			// whether PostgreSQL had stopped (the watchdog, at the end
			// of the lease) before the count starts over.
			ev = g.stoppedByWatchdog(ctx, now)
		}
		g.downSince, g.fenced = time.Time{}, false
		return ev
	}
	if g.downSince.IsZero() {
		g.downSince = now
		g.log.Warn("the handler-runner of the active node does not answer", "api", g.cfg.APIURL(), "err", handlerErr)
		return nil
	}
	if g.fenced || now.Sub(g.downSince) < g.after {
		return nil
	}
	g.fenced = true
	gone := now.Sub(g.downSince).Round(time.Millisecond)
	if ev := g.stoppedByWatchdog(ctx, now); ev != nil {
		return ev
	}
	g.log.Error("the handler-runner of the active node has been gone for the lease; stopping postgres so that no write is taken without it",
		"gone_for", gone, "lease", g.after, "err", handlerErr)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := g.pg.Stop(sctx, "immediate"); err != nil {
		g.log.Error("cannot stop postgres on the active node whose handler-runner is gone; it may still take writes", "err", err)
	}
	return &cluster.Event{Kind: cluster.EventFence, From: g.cfg.Node.Name,
		Reason:  fmt.Sprintf("handler-runner gone for %s on the active node: check-runner stopped postgres", gone),
		Details: map[string]string{"by": "check-runner", "stop_mode": "immediate"}}
}
