package main

import (
	"github.com/spf13/cobra"

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
and shown by cluster status. It runs until SIGTERM or SIGINT and changes
nothing on the node: fencing is the handler-runner's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := newDaemon(path)
			if err != nil {
				return err
			}
			defer d.close()
			w, err := watcher.New(d.cfg, d.cc, d.log)
			if err != nil {
				return err
			}
			return w.Run(d.ctx)
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
