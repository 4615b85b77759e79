package watcher

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// maxPending bounds the partition events kept while Consul takes no
// writes: a link that flaps for hours must not grow the daemon without end.
const maxPending = 100

// Runner is the consul-watcher of one node.
type Runner struct {
	cfg     *config.Config
	cc      *consul.Client
	api     *nodeapi.NodeClient
	log     *slog.Logger
	keys    cluster.Keys
	model   *Model
	timeout time.Duration

	// state of the loop, touched only by Run's goroutine
	known    known
	consulUp bool
	last     cluster.Partition
	// pending are partition events not yet written: the minority side's
	// Consul takes no writes until the partition heals, and its events
	// are recorded then, with the times they happened.
	pending []cluster.Event
	// joined is when the watcher last joined the gossip pool through
	// each peer (rejoin).
	joined map[string]time.Time
	// min is partition_mode "active-minority"'s part, nil in other modes;
	// agent is the node's Consul agent it restarts.
	min   *minority
	agent Agent
	// warned are the keys of the warnings logged once (warnOnce).
	warned map[string]bool
}

// Option changes how New makes the watcher.
type Option func(*Runner)

// WithAgent gives the watcher the node's Consul agent, which
// partition_mode "active-minority" restarts (lifecycle.ConsulAgent).
func WithAgent(a Agent) Option { return func(r *Runner) { r.agent = a } }

// New returns the consul-watcher of the node cfg describes. In
// partition_mode "active-minority" it needs the node's agent (WithAgent).
func New(cfg *config.Config, cc *consul.Client, log *slog.Logger, opts ...Option) (*Runner, error) {
	var client *tls.Config
	if cfg.TLS() {
		ca, cert, key := cfg.TLSFiles()
		var err error
		if _, client, err = certs.NodeTLS(certs.Paths{CA: ca, Cert: cert, Key: key}); err != nil {
			return nil, fmt.Errorf("TLS to ask the other nodes' APIs: %w", err)
		}
	}
	timeout := config.ProbeTimeout(cfg.Checks.Interval)
	r := &Runner{
		cfg: cfg, cc: cc, log: log.With("component", "consul-watcher", "node", cfg.Node.Name),
		// No basic auth: any answer, a refusal too, says the API is there.
		api:  nodeapi.NewNodeClient(client, "", ""),
		keys: cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name),
		model: NewModel(Params{Node: cfg.Node.Name, Mode: cfg.Cluster.PartitionMode, MinorityTimeout: cfg.Cluster.MinorityTimeout,
			// A LAN connection takes a millisecond; a third of the
			// probe timeout is a server in trouble.
			Slow: timeout / 3, Slack: config.RoundSlack}),
		timeout:  timeout,
		consulUp: true,
		known:    known{gossip: map[string]consul.GossipMember{}},
		joined:   map[string]time.Time{},
		warned:   map[string]bool{},
	}
	for _, o := range opts {
		o(r)
	}
	if cfg.Cluster.PartitionMode == config.PartitionActiveMinority {
		if r.agent == nil {
			return nil, fmt.Errorf("partition_mode %q needs the node's consul agent, which only a node set up by understudy cluster start or join has", config.PartitionActiveMinority)
		}
		m, err := newMinority(cfg.Node.DataDir, r.agent)
		if err != nil {
			return nil, err
		}
		r.min = m
	}
	return r, nil
}

// warnOnce logs a warning once per key and run of the daemon.
func (r *Runner) warnOnce(key, msg string, args ...any) {
	if r.warned[key] {
		return
	}
	r.warned[key] = true
	r.log.Warn(msg, args...)
}

// Run observes every checks.interval until ctx ends. Its view goes to the
// node's partition file each round; the partition events go to Consul as
// soon as it takes them.
func (r *Runner) Run(ctx context.Context) error {
	r.log.Info("starting", "interval", r.cfg.Checks.Interval, "minority_timeout", r.cfg.Cluster.MinorityTimeout,
		"partition_mode", r.cfg.Cluster.PartitionMode, "probe_timeout", r.timeout, "view", cluster.PartitionFile(r.cfg.Node.DataDir))
	for _, w := range r.cfg.Warnings() {
		r.log.Warn(w)
	}
	defer r.stop(ctx)
	t := time.NewTicker(r.cfg.Checks.Interval)
	defer t.Stop()
	for first := true; ; first = false {
		summary := r.runOnce(ctx, time.Now())
		if first {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
		}
		_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog+"\nSTATUS="+summary)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce observes, steps the model, publishes the view and writes the
// pending events. It returns a line for systemd's STATUS.
func (r *Runner) runOnce(ctx context.Context, now time.Time) string {
	o := r.observe(ctx, now)
	if ctx.Err() != nil {
		return "stopping"
	}
	v, tr := r.model.Step(o)
	if r.min != nil {
		r.minorityRound(ctx, o, &v)
	}
	r.rejoin(ctx, o)
	r.logChanges(v)
	r.last = v
	if err := cluster.WritePartition(r.cfg.Node.DataDir, v); err != nil {
		r.log.Error("cannot publish the partition view; GET /v1/status/partition and the member record go stale", "err", err)
	}
	if tr != nil {
		r.queue(r.event(tr, v))
	}
	r.flush(ctx)
	return fmt.Sprintf("%s: %d/%d servers reached", v.State, v.ReachedServers, v.Servers)
}

// rejoinEvery spaces the joins through one peer: a join that did not take
// is tried again, not every round.
const rejoinEvery = 10 * time.Second

// rejoin asks the local agent to join the gossip pool through each peer
// whose server answers its probe while the pool holds it as failed or
// left: a partition has healed. Left alone, the pool finds it again only
// through serf's own reconnect, every 30 s, and a server that autopilot's
// dead-server cleanup removed (it does so after a cut of a few seconds) is
// back in the Raft configuration only then: until that, the cluster has
// two voters and cannot lose either. Measured here: a standby cut off for
// 6 s was still out of the Raft configuration 10 s after the heal; with
// the join, within a round.
func (r *Runner) rejoin(ctx context.Context, o Observation) {
	for _, n := range o.Nodes {
		if n.Self || n.Probe != ProbeOK || (n.Gossip != "failed" && n.Gossip != "left") {
			continue
		}
		if r.min != nil && r.min.apart[n.Name] {
			// In another Consul cluster (active-minority) until the
			// heal is decided: a join would fail on the gossip key.
			continue
		}
		addr := r.serfAddr(n.Name)
		if addr == "" || o.At.Sub(r.joined[n.Name]) < rejoinEvery {
			continue
		}
		r.joined[n.Name] = o.At
		jctx, cancel := context.WithTimeout(ctx, r.timeout)
		err := r.cc.Join(jctx, addr)
		cancel()
		if err != nil {
			r.log.Warn("cannot join the gossip pool through a peer that is reachable again", "peer", n.Name, "gossip", n.Gossip, "err", err)
			continue
		}
		r.log.Info("joined the gossip pool through a peer reachable again", "peer", n.Name, "was", n.Gossip, "serf", addr)
	}
}

// logChanges logs a change of the state and of each peer's reach, once.
func (r *Runner) logChanges(v cluster.Partition) {
	if v.State != r.last.State {
		attrs := []any{"from", r.last.State, "to", v.State, "reached_servers", v.ReachedServers, "servers", v.Servers}
		switch v.State {
		case cluster.PartitionMajority:
			r.log.Info("in the majority", attrs...)
		case cluster.PartitionMinority:
			r.log.Warn("partition: this node is in the minority", append(attrs, "minority_timeout", r.cfg.Cluster.MinorityTimeout)...)
		case cluster.PartitionCut:
			r.log.Warn("cut from a majority of the consul servers", attrs...)
		case cluster.PartitionOutage:
			r.log.Warn("consul outage: no majority of the servers runs, none is cut off", attrs...)
		}
	}
	before := map[string]cluster.Reach{}
	for _, p := range r.last.Peers {
		before[p.Name] = p.Reach
	}
	for _, p := range v.Peers {
		if was, ok := before[p.Name]; (ok || r.last.State != "") && was == p.Reach {
			continue
		}
		attrs := []any{"peer", p.Name, "reach", p.Reach, "gossip", p.Gossip, "probe", p.Probe, "probe_ms", p.ProbeMS, "api", p.API}
		switch p.Reach {
		case cluster.Reached:
			r.log.Info("peer reached", attrs...)
		case "":
			r.log.Info("peer runs no consul server of the raft configuration", attrs...)
		default:
			r.log.Warn("peer "+string(p.Reach), attrs...)
		}
	}
}

// event is the partition event of tr: the state it went from and to, and
// both sides.
func (r *Runner) event(tr *Transition, v cluster.Partition) cluster.Event {
	ev := cluster.Event{
		Time: tr.At.UTC(), Node: r.cfg.Node.Name, Kind: cluster.EventPartition,
		Details: map[string]string{
			"this_side": strings.Join(tr.ThisSide, ","), "other_side": strings.Join(tr.OtherSide, ","),
			"cut_since": tr.CutSince.UTC().Format(time.RFC3339Nano), "mode": r.cfg.Cluster.PartitionMode,
			"servers": fmt.Sprint(v.Servers), "reached_servers": fmt.Sprint(v.ReachedServers),
		},
	}
	if tr.Start {
		ev.From, ev.To = cluster.PartitionMajority, cluster.PartitionMinority
		ev.Reason = fmt.Sprintf("partition started: %s cut from %s for %s (minority_timeout); partition_mode %s",
			r.cfg.Node.Name, strings.Join(tr.OtherSide, ", "), tr.At.Sub(tr.CutSince).Round(time.Millisecond), r.cfg.Cluster.PartitionMode)
		ev.Details["state"] = "start"
	} else {
		ev.From, ev.To = cluster.PartitionMinority, cluster.PartitionMajority
		ev.Reason = fmt.Sprintf("partition ended: %s reaches %s again after %s in the minority",
			r.cfg.Node.Name, strings.Join(tr.OtherSide, ", "), tr.At.Sub(tr.CutSince).Round(time.Millisecond))
		ev.Details["state"] = "end"
	}
	return ev
}

func (r *Runner) queue(ev cluster.Event) {
	r.log.Info("partition event", "state", ev.Details["state"], "this_side", ev.Details["this_side"], "other_side", ev.Details["other_side"])
	if len(r.pending) >= maxPending {
		r.log.Warn("too many partition events unwritten; dropping the oldest", "dropped", r.pending[0].Reason)
		r.pending = r.pending[1:]
	}
	r.pending = append(r.pending, ev)
}

// flush writes the pending events in order while Consul takes them.
func (r *Runner) flush(ctx context.Context) {
	for len(r.pending) > 0 {
		wctx, cancel := context.WithTimeout(ctx, r.timeout)
		_, err := r.cc.PutEventAt(wctx, r.keys.Events(), r.cfg.Node.Name, r.pending[0].Time, r.pending[0])
		cancel()
		if err != nil {
			// Expected in the minority: kept for the next round.
			return
		}
		r.pending = r.pending[1:]
	}
}

// stop writes what is pending once more, under its own bounded context: ctx
// has ended.
func (r *Runner) stop(ctx context.Context) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	r.flush(sctx)
	if len(r.pending) > 0 {
		r.log.Warn("stopped with partition events unwritten (consul takes no writes)", "events", len(r.pending))
		return
	}
	r.log.Info("stopped")
}
