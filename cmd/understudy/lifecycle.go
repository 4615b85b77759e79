package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/logging"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/lifecycle"
)

func newClusterStartCmd() *cobra.Command {
	var path, consulBin, processes string
	var o lifecycle.Options
	cmd := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Make this fresh node a new cluster, and its active node",
		Long: `start creates the cluster's CA and this node's certificate, configures and
starts the Consul agent (a server, TLS on every port, a gossip key),
initialises PostgreSQL for replication (or adopts the data directory that is
there), writes the cluster's configuration and a join token to Consul,
starts the check-runner and the handler-runner, and returns once this node is
active. It prints the join token once: only its hash is kept.

The configuration must ask for TLS: consul { scheme = "https" }. A node that
is already in a cluster is refused. When a step fails, the ones before it are
undone.

` + processesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lifecycleSetup(cmd, path, consulBin, processes, &o)
			if err != nil {
				return err
			}
			// The processes keep running when this command exits.
			defer o.Services.Close()
			ctx, cancel := signalContext()
			defer cancel()
			res, err := lifecycle.Start(ctx, cfg, o)
			if err != nil {
				return fmt.Errorf("cluster start: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), `
%s is the active node of the new cluster %s.

Join token (shown this once; only its hash is kept):
  %s
CA fingerprint (a joining node checks the cluster with it):
  %s
%s
`, cfg.Node.Name, cfg.Cluster.Name, res.Token, res.CAFingerprint, processesWords(cfg, o))
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	addLifecycleFlags(cmd, &consulBin, &processes, &o)
	return cmd
}

func newClusterJoinCmd() *cobra.Command {
	var path, consulBin, processes string
	var o lifecycle.Options
	var j lifecycle.JoinOptions
	cmd := &cobra.Command{
		Use:   "join ACTIVE_ADDRESS --token T --ca-fingerprint FP --config FILE",
		Short: "Make this node a standby of an existing cluster",
		Long: `join asks the active node's API at ACTIVE_ADDRESS (host:port of its
api.listen) for the cluster's CA and Consul settings, over TLS and only once
the server shows the CA whose fingerprint cluster start printed; signs this
node's certificate, joins Consul, clones PostgreSQL from the active node
(showing progress), starts the check-runner and the handler-runner, and
returns once this node streams from the active node.

The configuration must ask for TLS: consul { scheme = "https" }. A node with a
database or a cluster identity is refused unless --force. When a step fails,
the node leaves Consul and the steps before are undone; join can be run
again.

` + processesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := lifecycleSetup(cmd, path, consulBin, processes, &o)
			if err != nil {
				return err
			}
			defer o.Services.Close()
			j.Active = args[0]
			ctx, cancel := signalContext()
			defer cancel()
			if err := lifecycle.Join(ctx, cfg, o, j); err != nil {
				return fmt.Errorf("cluster join: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s joined cluster %s and streams from its active node.\n%s\n", cfg.Node.Name, cfg.Cluster.Name, processesWords(cfg, o))
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&j.Token, "token", "", "the join token cluster start printed")
	cmd.Flags().StringVar(&j.CAFingerprint, "ca-fingerprint", "", "the CA fingerprint cluster start printed (sha256:...)")
	cmd.Flags().BoolVar(&j.Force, "force", false, "join although this node has a database or a cluster identity (its data is kept aside)")
	addLifecycleFlags(cmd, &consulBin, &processes, &o)
	return cmd
}

// lifecycleSetup loads the node's configuration and fills the options
// cluster start and join share: the programs, the services manager, where
// progress goes and the version.
func lifecycleSetup(cmd *cobra.Command, path, consulBin, processes string, o *lifecycle.Options) (*config.Config, error) {
	switch processes {
	case "auto":
		o.Systemd = services.SystemdBooted()
	case "systemd":
		if !services.SystemdBooted() {
			return nil, fmt.Errorf("--processes systemd: systemd is not this host's init (no /run/systemd/system); use --processes supervised")
		}
		o.Systemd = true
	case "supervised":
	default:
		return nil, fmt.Errorf("--processes %q: want auto, systemd or supervised", processes)
	}
	cfg, err := nodeSetup(cmd, path, o)
	if err != nil {
		return nil, err
	}
	if o.Consul = consulBin; o.Consul == "" {
		if o.Consul, err = lifecycle.FindConsul(o.Understudy); err != nil {
			return nil, err
		}
	}
	o.Out, o.Version = cmd.OutOrStdout(), version
	return cfg, nil
}

// nodeSetup loads the node's configuration and fills what every command
// that acts on the node's processes needs: this understudy binary and the
// services manager, logging to the command's stderr.
func nodeSetup(cmd *cobra.Command, path string, o *lifecycle.Options) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if o.Understudy, err = os.Executable(); err != nil {
		return nil, err
	}
	o.Services = newServices(cfg, logging.New(cmd.ErrOrStderr(), os.Getenv("UNDERSTUDY_LOG_LEVEL")))
	return cfg, nil
}

// processesHelp is what cluster start and join say of --processes.
const processesHelp = `The node's processes (the Consul agent, Syncthing on a node with files
blocks, the check-runner, the handler-runner) run, with --processes systemd,
as systemd units written into /etc/systemd/system and enabled: systemd
restarts each one that exits, starts them at boot, and their output is in
the journal (journalctl -u 'understudy-*'). The units run this understudy
binary and the Consul agent from where they are now: put them where they
stay (such as /usr/bin) before. With --processes supervised they
are programs this command starts and leaves running, their output and PIDs
under node.data_dir/services; nothing restarts them once it has exited (use
it where systemd is not the init, as the dev cluster does). auto, the
default, is systemd where systemd is the init.`

// processesWords tells the operator where the node's processes are.
func processesWords(cfg *config.Config, o lifecycle.Options) string {
	if o.Systemd {
		return "Processes: the systemd units understudy-*.service (enabled); logs: journalctl -u 'understudy-*'"
	}
	return "Processes, their logs and PIDs: " + filepath.Join(cfg.Node.DataDir, "services")
}

// addLifecycleFlags adds the flags cluster start and join share: how the
// node's processes run, the Consul agent to run and its ports.
func addLifecycleFlags(cmd *cobra.Command, consulBin, processes *string, o *lifecycle.Options) {
	cmd.Flags().StringVar(processes, "processes", "auto", "how the node's processes run: systemd (enabled units), supervised (programs left running, not restarted), or auto (systemd where it is the init)")
	cmd.Flags().StringVar(consulBin, "consul", "", "the Consul agent to run (default: bin/consul beside understudy, else consul on PATH)")
	cmd.Flags().IntVar(&o.SerfPort, "consul-serf-port", 8301, "the Consul agent's LAN gossip port")
	cmd.Flags().IntVar(&o.ServerPort, "consul-server-port", 8300, "the Consul agent's server (Raft, RPC) port")
}
