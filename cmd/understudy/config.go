package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with the node's configuration file",
		Args:  noArgs,
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file and print the effective configuration",
		Long: `check reads the configuration file as the daemons do. When it is valid,
check prints the effective configuration (every default filled in, the Consul
token redacted) and the failover bounds it implies to stdout and exits 0. Otherwise it prints every problem to
stderr, one per line as FILE:LINE: what is wrong; what to write instead, and
exits 1.`,
		Args: noArgs,
		// The problems are the whole output; cobra's "Error: " line would
		// repeat them.
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return err
			}
			out := cmd.OutOrStdout()
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", path, w)
			}
			fmt.Fprintf(out, "# %s is valid; effective configuration:\n\n%s", path, cfg.Redacted().HCL())
			fmt.Fprintf(out, "\n# failover bounds of this configuration:\n")
			for _, l := range cfg.Bounds().Lines() {
				fmt.Fprintf(out, "#   %s\n", l)
			}
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
