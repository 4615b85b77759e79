package main

import (
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/replication/postgres"
)

func newCheckRunnerCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check-runner",
		Short: "Run the node's health checks and report them to Consul (daemon)",
		Long: `check-runner runs every health check of the node each checks.interval and
reports them as TTL checks of the "understudy" service on the local Consul
agent, and publishes the node's member record. It runs until SIGTERM or
SIGINT, then marks every check critical so that a failover starts at once.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The check-runner's heap is small and steady: collecting at 50 %
			// growth instead of 100 % keeps its RSS under 20 MB (README,
			// "Measured") for a few CPU seconds an hour. GOGC still wins.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(50)
			}
			d, err := newDaemon(path)
			if err != nil {
				return err
			}
			defer d.close()
			return checkrunner.New(d.cfg, d.cc, postgres.NewClient(d.cfg.Postgres), d.svcs, d.log, version).Run(d.ctx)
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
