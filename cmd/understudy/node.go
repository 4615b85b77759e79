package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lifecycle"
)

// newNodeCmd is `understudy node`: this node's processes, started and
// stopped on the node itself (the cluster commands act on the cluster from
// anywhere).
func newNodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Start or stop this node's processes; put a node in maintenance",
	}
	cmd.AddCommand(newNodeStartCmd(), newNodeStopCmd(), newNodeMaintenanceCmd())
	return cmd
}

func newNodeStartCmd() *cobra.Command {
	var path, consulBin string
	var o lifecycle.Options
	cmd := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Start this node's processes again (after a reboot without systemd, or node stop)",
		Long: `start starts the processes of a node that is in a cluster (cluster start
or cluster join made it so) and are not running: the Consul agent, Syncthing
on a node with files blocks, the check-runner, the consul-watcher and the
handler-runner, which brings the node back as a standby of the active node (rewinding PostgreSQL
when it has to), or as the active when no other node is. Processes that run
are left alone.

On a node whose processes are systemd units it starts the units (systemd
starts them at boot by itself). On a node with supervised processes, this is
how they come back after a reboot; like cluster start, it leaves them
running when it exits, and nothing restarts them after that.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := nodeSetup(cmd, path, &o)
			if err != nil {
				return err
			}
			// Only supervised processes need it (a unit names its own);
			// StartProcesses finds it then.
			o.Consul = consulBin
			defer o.Services.Close()
			ctx, cancel := signalContext()
			defer cancel()
			if err := lifecycle.StartProcesses(ctx, cfg, o); err != nil {
				return fmt.Errorf("node start: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: processes started; the handler-runner brings the node back into cluster %s.\n", cfg.Node.Name, cfg.Cluster.Name)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&consulBin, "consul", "", "the Consul agent to run for supervised processes (default: bin/consul beside understudy, else consul on PATH)")
	return cmd
}

func newNodeStopCmd() *cobra.Command {
	var path string
	var o lifecycle.Options
	cmd := &cobra.Command{
		Use:   "stop --config FILE",
		Short: "Stop this node's processes and PostgreSQL",
		Long: `stop stops this node's processes: the handler-runner first (on the active node
it stops the active-only services and PostgreSQL and gives up the lock, so
another node takes over at once), then PostgreSQL, the check-runner, the
consul-watcher, Syncthing and the Consul agent. The node stays a member of the cluster, shown
offline, until node start; systemd units stay enabled, so the node also
comes back at the next boot. To take a node out of the cluster, stop it, then
run cluster nodes remove NAME from another node.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := nodeSetup(cmd, path, &o)
			if err != nil {
				return err
			}
			defer o.Services.Close()
			ctx, cancel := signalContext()
			defer cancel()
			if err := lifecycle.StopProcesses(ctx, cfg, o); err != nil {
				return fmt.Errorf("node stop: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: processes and PostgreSQL stopped; understudy node start brings them back.\n", cfg.Node.Name)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
