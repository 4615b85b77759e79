package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/watcher"
)

func newConsulWatcherCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "consul-watcher",
		Short: "Watch which Consul servers and nodes this node reaches; report partitions (daemon)",
		Long: `consul-watcher probes, every checks.interval, the RPC port of every Consul
server of the cluster and the API of every other node, reads Consul's gossip
membership and this node's Raft state, and decides whether this node is in
the majority. A node cut from a majority of the servers for
cluster.minority_timeout is in a partition's minority: a partition event is
recorded (once Consul takes writes again, on the minority side), and so is
its end. Its view is served by the handler-runner as GET /v1/status/partition
and shown by cluster status. It runs until SIGTERM or SIGINT.

In partition_mode "fence" and "active-minority"'s majority it changes nothing
on the node: fencing is the handler-runner's. In "active-minority" it
restarts the node's Consul agent twice in a partition's life: in the
minority, to recover a Consul quorum of the servers it still reaches
(Consul's outage recovery) under a gossip key of that side's own; and at the
heal, on the side that does not stay, to reset it to join the side that
stays (the one whose database was written last).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := newDaemon(path)
			if err != nil {
				return err
			}
			defer d.close()
			var opts []watcher.Option
			if d.cfg.Cluster.PartitionMode == config.PartitionActiveMinority {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				svcs := newServices(d.cfg, d.log)
				defer svcs.Close()
				opts = append(opts, watcher.WithAgent(lifecycle.NewConsulAgent(d.cfg, lifecycle.Options{Services: svcs, Understudy: exe})))
			}
			w, err := watcher.New(d.cfg, d.cc, d.log, opts...)
			if err != nil {
				return err
			}
			return w.Run(d.ctx)
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
