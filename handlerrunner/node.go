package handlerrunner

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// nodeStatus is this node's live state: role from the loop, PostgreSQL asked
// now under a short timeout.
func (r *Runner) nodeStatus(ctx context.Context) nodeapi.NodeStatus {
	st := r.st.get()
	st.HasSession = r.sess.ID() != ""
	st.Serving = r.st.serving(time.Now(), r.fencing.Lease)
	if t := r.st.lastConfirmed(); !t.IsZero() && st.Role == nodeapi.RoleActive {
		st.LeaseConfirmed = &t
		st.LeaseCarried = r.st.carried()
	}
	st.NoFailover = r.noFailover() || time.Now().Before(r.st.graceUntil())
	st.Priority = cluster.Or(r.st.options().Priority, r.cfg.Node.Priority)
	st.Minority = r.minority()
	r.metrics.session.Set(b2f(st.HasSession))
	ctx, cancel := context.WithTimeout(ctx, peerTimeout*3/4)
	defer cancel()
	_, running, err := r.pg.Running(ctx)
	st.Postgres.Running = err == nil && running
	if !st.Postgres.Running {
		return st
	}
	ps, err := r.pgc.State(ctx)
	if err != nil {
		st.Postgres.Error = err.Error()
		return st
	}
	st.Postgres.InRecovery, st.Postgres.Timeline = ps.InRecovery, ps.Timeline
	st.Postgres.WriteLSN, st.Postgres.ReceiveLSN, st.Postgres.ReplayLSN = ps.WriteLSN, ps.ReceiveLSN, ps.ReplayLSN
	if r.cfg.Cluster.PartitionMode == config.PartitionActiveMinority {
		// What a heal's decision compares; only asked in that mode.
		st.Postgres.LastCommit, _ = r.pgc.LastCommit(ctx)
	}
	if ps.Receiver != nil {
		st.Postgres.Upstream = net.JoinHostPort(ps.Receiver.SenderHost, strconv.Itoa(ps.Receiver.SenderPort))
		st.Postgres.Streaming = ps.Receiver.Status == "streaming"
	}
	return st
}

// lagBytes is how far this standby trails the active's last published write
// position; 0 on a primary, -1 unknown.
func (r *Runner) lagBytes(ctx context.Context, st nodeapi.NodeStatus) int64 {
	if !st.Postgres.InRecovery {
		return 0
	}
	ks, l, err := r.readLeader(ctx, false)
	if err != nil || ks.Session == "" {
		return -1
	}
	var m cluster.Member
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Member(l.Node), &m); err != nil || !found {
		return -1
	}
	return cluster.Lag(m.WriteLSN, st.Postgres.ReplayLSN)
}

// runCommand runs a hook: its exit code and the last line of its output.
func runCommand(ctx context.Context, argv []string) (string, int, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if len(last) > 500 {
		last = last[:500]
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return last, ee.ExitCode(), nil
	}
	if err != nil {
		return last, -1, err
	}
	return last, 0, nil
}

func itoa(i int) string { return strconv.Itoa(i) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// noFailover is the effective node.no_failover, runtime options included.
func (r *Runner) noFailover() bool {
	return cluster.Or(r.st.options().NoFailover, r.cfg.Node.NoFailover)
}

// refreshOptions reads the node's runtime options (options/<node>) and its
// maintenance (maintenance/<node>); on an error the last known ones stay in
// force.
func (r *Runner) refreshOptions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var o cluster.NodeOptions
	if _, _, err := r.cc.GetJSON(ctx, r.keys.Options(r.name), &o); err == nil {
		r.st.setOptions(o)
	}
	r.refreshMaintenance(ctx)
}
