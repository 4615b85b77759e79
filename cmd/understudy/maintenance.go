package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newNodeMaintenanceCmd is `understudy node maintenance on|off NAME`: it
// acts on the cluster through the API, as the cluster commands do, so it
// takes their --profile and --output.
func newNodeMaintenanceCmd() *cobra.Command {
	o := &apiOpts{}
	var reason string
	cmd := &cobra.Command{
		Use:   "maintenance on|off NAME",
		Short: "Put a node in maintenance (never chosen as active, alarms quieted) or take it out",
		Long: `maintenance on NAME keeps node NAME from ever being chosen as the active: no
election picks it, and a switchover or a failover to it is refused. Its checks
still run and are recorded, but nodes list and cluster status show them as
the maintenance's, not as the cluster's problems; /metrics shows
understudy_node_maintenance 1 on it, to silence alerts with. The active node
cannot be put in maintenance: switch over first (understudy cluster
set-active OTHER). maintenance off NAME ends it. Needs an operator
certificate on a TLS cluster.`,
		Example: `  understudy node maintenance on n3 --reason "disk replacement"
  understudy node maintenance off n3`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[0] != "on" && args[0] != "off") {
				return fmt.Errorf("write on or off, then the node's name")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			on, name := args[0] == "on", args[1]
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			ans, err := c.SetMaintenance(cmd.Context(), name, on, reason)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), ans)
			}
			if on {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is in maintenance (by %s): never chosen as active until understudy node maintenance off %s\n", name, ans.Maintenance.By, name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is out of maintenance\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.profile, "profile", "", "the cluster profile to use (see understudy profile list)")
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for cluster status and the history")
	return cmd
}
