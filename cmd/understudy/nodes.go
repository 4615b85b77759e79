package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/cluster"
)

func newNodesRemoveCmd(o *apiOpts) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Take a stopped standby out of the cluster",
		Long: `remove asks the active node to take NAME out of the cluster: out of Consul's
members and Raft peers, its replication slot dropped, its member record
deleted; the cluster goes on without it. Stop NAME's understudy daemons and
Consul agent first (a running agent would rejoin). The active node cannot be
removed: set another node active first (understudy cluster set-active).`,
		Example: "  understudy cluster nodes remove mgr-3 --profile prod",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			if err := c.RemoveNode(cmd.Context(), args[0], force); err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"removed": args[0]})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s removed from the cluster\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even though NAME's API address still answers")
	return cmd
}

func newNodesUpdateCmd(o *apiOpts) *cobra.Command {
	var options []string
	cmd := &cobra.Command{
		Use:   "update NAME --option KEY=VALUE ...",
		Short: "Change a node's runtime options, applied without a restart",
		Long: `update sets runtime options of node NAME, which override its configuration
file until changed again; its daemons apply them within a check interval:

  check_ttl_multiplier=N   checks.ttl_multiplier (1 to 100)
  fail_fast=true|false     checks.fail_fast
  priority=N               node.priority (higher wins a tie in an election)
  nofailover=true|false    node.no_failover (never elected)`,
		Example: "  understudy cluster nodes update mgr-2 --option nofailover=true --option priority=50",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(options) == 0 {
				return fmt.Errorf("no --option; write e.g. --option check_ttl_multiplier=3")
			}
			var opts cluster.NodeOptions
			for _, kv := range options {
				if err := opts.SetOption(kv); err != nil {
					return err
				}
			}
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			merged, err := c.UpdateNodeOptions(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"node": args[0], "options": merged})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "runtime options of %s: %s\n", args[0], describeOptions(merged))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&options, "option", nil, "KEY=VALUE, repeatable: "+strings.Join(cluster.OptionKeys, ", "))
	return cmd
}

func describeOptions(o cluster.NodeOptions) string {
	var parts []string
	if o.CheckTTLMultiplier != nil {
		parts = append(parts, fmt.Sprintf("check_ttl_multiplier=%d", *o.CheckTTLMultiplier))
	}
	if o.FailFast != nil {
		parts = append(parts, fmt.Sprintf("fail_fast=%v", *o.FailFast))
	}
	if o.Priority != nil {
		parts = append(parts, fmt.Sprintf("priority=%d", *o.Priority))
	}
	if o.NoFailover != nil {
		parts = append(parts, fmt.Sprintf("nofailover=%v", *o.NoFailover))
	}
	if len(parts) == 0 {
		return "none (the configuration file applies)"
	}
	return strings.Join(parts, " ")
}
