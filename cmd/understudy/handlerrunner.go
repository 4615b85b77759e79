package main

import (
	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/handlerrunner"
	"github.com/understudy-ha/understudy/replication/postgres"
)

func newHandlerRunnerCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "handler-runner",
		Short: "Hold the node's role: election, promotion, following, fencing, the HTTP API (daemon)",
		Long: `handler-runner keeps a Consul session bound to the node's health, runs the
node's role (standby, candidate, active), owns the node's PostgreSQL (started,
promoted, re-pointed, rewound or re-cloned through pg_ctl as postgres.os_user),
starts the active-only services on the active node and stops them elsewhere,
and serves the HTTP API: GET /status answers 200 on the active node only, for
HAProxy. It runs until SIGTERM or SIGINT; on the active node it then stops
PostgreSQL and releases the lock, so that a standby takes over.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := newDaemon(path)
			if err != nil {
				return err
			}
			defer d.close()
			r, err := handlerrunner.New(d.cfg, d.cc, postgres.NewInstance(d.cfg.Postgres, d.cfg.Node.Name, d.log), d.svcs, d.log, version)
			if err != nil {
				return err
			}
			return r.Run(d.ctx)
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
