package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func newRestartCmd(o *apiOpts) *cobra.Command {
	var all, pending bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "restart NODE | --all [--pending]",
		Short: "Restart PostgreSQL: one standby, or every node with standbys first and one switchover",
		Long: `restart restarts PostgreSQL on NODE, a standby, or with --all on every node: the
standbys one after another, each streaming again before the next, then the
active role moves to a standby that was restarted (a switchover, which stops
and starts the old active's PostgreSQL on its way to standby). Writes stop
once, for the switchover. --pending restarts only the nodes whose PostgreSQL
has parameters waiting for a restart (understudy cluster config show).

The active's PostgreSQL is restarted in place only when one of the
parameters a standby needs at least the primary's value of
(max_connections, max_locks_per_transaction, max_prepared_transactions,
max_wal_senders, max_worker_processes) was lowered: whichever node is the
primary must run the lower value before any standby does, so the active
restarts first, in place (writes pause for the restart, and no switchover
follows), then the standbys.`,
		Example: `  understudy cluster restart n2
  understudy cluster restart --all --pending`,
		Args: oneNodeOrAll(&all),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 || timeout > time.Hour {
				return fmt.Errorf("--timeout %v: write a duration up to 1h, like 2m", timeout)
			}
			_, c, err := o.setup()
			if err != nil {
				return err
			}
			name := ""
			if !all {
				name = args[0]
			}
			return rollingRestart(cmd.Context(), cmd.OutOrStdout(), c, name, pending, timeout)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "restart every node: standbys first, then a switchover")
	cmd.Flags().BoolVar(&pending, "pending", false, "only nodes with parameters waiting for a restart")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long each node may take to stream again (and the switchover to end)")
	return cmd
}

// rollingRestart restarts name's PostgreSQL, or every node's when name is
// "": standbys first, then the active role moved away from the active.
func rollingRestart(ctx context.Context, out io.Writer, c *nodeapi.Client, name string, pending bool, timeout time.Duration) error {
	v, err := fetchCluster(ctx, c)
	if err != nil {
		return err
	}
	active := v.status.Leader
	needs := func(n string) bool {
		if !pending {
			return true
		}
		r, ok := v.live[n]
		return ok && r.Err == nil && r.Status.Parameters != nil && len(r.Status.Parameters.PendingRestart) > 0
	}
	urls := map[string]string{}
	var standbys []string
	restartActive := false
	for _, m := range v.status.Members {
		urls[m.Name] = m.APIURL
		if name != "" && m.Name != name {
			continue
		}
		switch {
		case !needs(m.Name):
			fmt.Fprintf(out, "%s: nothing waits for a restart\n", m.Name)
		case m.Name == active:
			restartActive = true
		default:
			standbys = append(standbys, m.Name)
		}
	}
	var lowered []string
	if r, ok := v.live[active]; ok && r.Err == nil && r.Status.Parameters != nil {
		lowered = r.Status.Parameters.Lowered
	}
	if name != "" {
		if _, ok := urls[name]; !ok {
			return fmt.Errorf("no member %q; see understudy cluster nodes list", name)
		}
		if restartActive && len(lowered) == 0 {
			return fmt.Errorf("%s is the active node: its PostgreSQL is not restarted in place; use understudy cluster restart --all (standbys first, then a switchover), or set-active another node and then restart %s", name, name)
		}
	}
	if restartActive && len(lowered) > 0 {
		// Lowered: the primary first, in place; a switchover would make
		// a standby still running the higher value the primary.
		if urls[active] == "" {
			return fmt.Errorf("%s publishes no API address; is its handler-runner running?", active)
		}
		fmt.Fprintf(out, "%s (active): %s lowered: restarting in place first (a standby may not run a lower value than its primary); writes pause for the restart\n", active, strings.Join(lowered, ", "))
		started := time.Now()
		if _, err := c.RestartActive(ctx, urls[active]); err != nil {
			return fmt.Errorf("%w; the restart stops here (see understudy cluster history)", err)
		}
		if err := waitServing(ctx, c, urls[active], timeout); err != nil {
			return fmt.Errorf("%s after its restart in place: %w; the restart stops here (see understudy cluster status)", active, err)
		}
		fmt.Fprintf(out, "%s: restarted in place, the active again after %.1f s\n", active, time.Since(started).Seconds())
		restartActive = false
		// A standby learns the primary's new values from the WAL it
		// streams: restarted before it has, it would run less than the
		// primary as it last knew it, and refuse to start.
		for _, n := range standbys {
			if err := waitStreaming(ctx, c, urls[n], timeout); err != nil {
				return fmt.Errorf("%s after the active's restart: %w; the restart stops here (see understudy cluster nodes list)", n, err)
			}
		}
	}
	for _, n := range standbys {
		if urls[n] == "" {
			return fmt.Errorf("%s publishes no API address; is its handler-runner running?", n)
		}
		started := time.Now()
		if _, err := c.Restart(ctx, urls[n]); err != nil {
			return err
		}
		if err := waitStreaming(ctx, c, urls[n], timeout); err != nil {
			return fmt.Errorf("%s after its restart: %w; the restart stops here (see understudy cluster nodes list)", n, err)
		}
		fmt.Fprintf(out, "%s: restarted, streaming again after %.1f s\n", n, time.Since(started).Seconds())
	}
	if !restartActive {
		return nil
	}
	// The standbys' restarts took a while: the switchover is planned from
	// the cluster as it is now, and a failover meanwhile stops the restart
	// rather than moving the role away from a node that no longer has it.
	if v, err = fetchCluster(ctx, c); err != nil {
		return err
	}
	if v.status.Leader != active {
		return fmt.Errorf("the active changed from %s to %q while the standbys restarted (a failover: see understudy cluster history); the restart stops here: run it again once understudy cluster status shows a healthy active", active, v.status.Leader)
	}
	target, err := switchoverTarget(ctx, c, v, standbys)
	if err != nil {
		return fmt.Errorf("the active %s needs a restart, but %w", active, err)
	}
	fmt.Fprintf(out, "%s (active): moving the active role to %s first\n", active, target)
	res, err := c.Switchover(ctx, target, timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is the active node; the switchover took %v\n", res.Active, res.Took)
	if err := waitStreaming(ctx, c, urls[active], timeout); err != nil {
		return fmt.Errorf("%s after the switchover: %w", active, err)
	}
	fmt.Fprintf(out, "%s: restarted, streaming from %s\n", active, res.Active)
	return nil
}

// switchoverTarget picks the standby the active role moves to: one that
// streams and may be elected, preferring one restarted already (its
// PostgreSQL runs with the new parameters).
func switchoverTarget(ctx context.Context, c *nodeapi.Client, v clusterView, restarted []string) (string, error) {
	var best string
	var bestLag int64
	bestRestarted := false
	for _, m := range v.status.Members {
		if m.Name == v.status.Leader || m.APIURL == "" {
			continue
		}
		st, err := c.NodeStatus(ctx, m.APIURL)
		if err != nil || st.Role != nodeapi.RoleStandby || !st.Postgres.Streaming || st.NoFailover || !st.HasSession || st.Maintenance != nil {
			continue
		}
		r := slices.Contains(restarted, m.Name)
		if best == "" || (r && !bestRestarted) || (r == bestRestarted && m.LagBytes < bestLag) {
			best, bestLag, bestRestarted = m.Name, m.LagBytes, r
		}
	}
	if best == "" {
		return "", fmt.Errorf("no standby streams and may take over (nofailover, or down); restart the standbys first")
	}
	return best, nil
}

// waitServing waits until the node at url is the active again, its
// PostgreSQL a primary that runs, with a Consul session.
func waitServing(ctx context.Context, c *nodeapi.Client, url string, timeout time.Duration) error {
	return waitNode(ctx, c, url, timeout, "not the active again", func(st nodeapi.NodeStatus) (bool, string) {
		return st.Role == nodeapi.RoleActive && st.Serving && st.Postgres.Running && !st.Postgres.InRecovery && st.HasSession,
			fmt.Sprintf("role %s, serving %v, postgres running %v, in recovery %v, consul session %v", st.Role, st.Serving, st.Postgres.Running, st.Postgres.InRecovery, st.HasSession)
	})
}

// waitStreaming waits until the node at url is a standby streaming again
// with a Consul session: its checks, which failed while PostgreSQL was
// down, pass again, so it could be elected (and be a switchover's target).
func waitStreaming(ctx context.Context, c *nodeapi.Client, url string, timeout time.Duration) error {
	return waitNode(ctx, c, url, timeout, "not streaming", func(st nodeapi.NodeStatus) (bool, string) {
		seen := fmt.Sprintf("role %s, postgres running %v, streaming %v, consul session %v", st.Role, st.Postgres.Running, st.Postgres.Streaming, st.HasSession)
		if st.Postgres.Error != "" {
			seen += ": " + st.Postgres.Error
		}
		return st.Role == nodeapi.RoleStandby && st.Postgres.Running && st.Postgres.Streaming && st.HasSession, seen
	})
}

// waitNode asks the node at url for its status every half second until ok
// says it is as wanted, or timeout passes: then the error is notYet and
// what ok last saw.
func waitNode(ctx context.Context, c *nodeapi.Client, url string, timeout time.Duration, notYet string, ok func(nodeapi.NodeStatus) (bool, string)) error {
	deadline := time.Now().Add(timeout)
	var seen string
	for {
		st, err := c.NodeStatus(ctx, url)
		if err != nil {
			seen = err.Error()
		} else {
			var done bool
			if done, seen = ok(st); done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v (%s)", notYet, timeout, strings.TrimSpace(seen))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func newReinitCmd(o *apiOpts) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reinit NODE",
		Short: "Clone a standby's PostgreSQL afresh from the active, its old data directory kept aside",
		Long: `reinit replaces the data directory of NODE, a standby (or a node failing to
rejoin), with a copy of the active's made by pg_basebackup, and starts it as a
standby again. The old data directory is moved aside, never deleted (its
place is in the reinit event: understudy cluster history); remove it once
it is of no use. The active's data is never reinitialized.`,
		Example: `  understudy cluster reinit n3
  understudy cluster reinit n3 --timeout 2h   # a large database`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout %v: write a duration, like 1h", timeout)
			}
			_, c, err := o.setup()
			if err != nil {
				return err
			}
			v, err := fetchCluster(cmd.Context(), c)
			if err != nil {
				return err
			}
			var url string
			for _, m := range v.status.Members {
				if m.Name == args[0] {
					url = m.APIURL
				}
			}
			if url == "" {
				return fmt.Errorf("no member %q with an API address; see understudy cluster nodes list", args[0])
			}
			started := time.Now()
			if err := c.Reinit(cmd.Context(), url); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: cloning from the active (waiting up to %v)\n", args[0], timeout)
			if err := waitStreaming(cmd.Context(), c, url, timeout); err != nil {
				return fmt.Errorf("%s after the reinit: %w; see understudy cluster history", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: streaming again after %.1f s\n", args[0], time.Since(started).Seconds())
			if evs, err := c.Events(cmd.Context(), 50); err == nil {
				for _, e := range evs {
					if e.Kind == cluster.EventReinit && e.Node == args[0] && !e.Time.Before(started.Add(-time.Minute)) {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], e.Reason)
						break
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long the clone may take until the node streams again")
	return cmd
}
