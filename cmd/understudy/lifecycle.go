package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/logging"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/lifecycle"
)

func newClusterStartCmd() *cobra.Command {
	var path, consulBin, processes string
	var o lifecycle.Options
	var node config.NodeOverride
	cmd := &cobra.Command{
		Use:   "start --config FILE",
		Short: "Make this fresh node a new cluster, and its active node",
		Long: `start creates the cluster's CA and this node's certificate, configures and
starts the Consul agent (a server, TLS on every port, a gossip key),
initialises PostgreSQL for replication (or adopts the data directory that is
there), writes the cluster's configuration and a join token to Consul,
starts the check-runner, the handler-runner and the consul-watcher, and
returns once this node is active. It prints the join token once: only its hash is kept. The token
admits nodes for --token-ttl (1h); "understudy cluster token" on a node
issues a new one and revokes the old.

The configuration must ask for TLS: consul { scheme = "https" }. A node that
is already in a cluster is refused. When a step fails, the ones before it are
undone.

` + processesHelp,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := lifecycleSetup(cmd, path, consulBin, processes, node, &o)
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
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s is the active node of the new cluster %s.\n\n", cfg.Node.Name, cfg.Cluster.Name)
			printJoinToken(cmd.OutOrStdout(), cfg, res)
			fmt.Fprintln(cmd.OutOrStdout(), processesWords(cfg, o))
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().DurationVar(&o.TokenTTL, "token-ttl", lifecycle.DefaultTokenTTL, "how long the join token admits nodes (cluster token issues another)")
	addLifecycleFlags(cmd, &consulBin, &processes, &node, &o)
	return cmd
}

func newClusterTokenCmd() *cobra.Command {
	var path string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token [--ttl 1h] --config FILE",
		Short: "Issue a new join token on this node and revoke the old one",
		Long: `token issues a new join token for the cluster this node is in, valid for
--ttl, and revokes the one before (cluster start's, or the last one token
issued): a join with the old token is refused from now on. It prints the token
once (only its hash is kept, in Consul), the CA fingerprint and the command
that joins a node. Run it on any node of the cluster, with its configuration:
it writes through the node's Consul agent.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			res, err := lifecycle.IssueToken(ctx, cfg, ttl, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("cluster token: %w", err)
			}
			printJoinToken(cmd.OutOrStdout(), cfg, res)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().DurationVar(&ttl, "ttl", lifecycle.DefaultTokenTTL, "how long the new token admits nodes")
	return cmd
}

// printJoinToken shows a new join token once, with what a joining node
// needs besides: the CA fingerprint and the command line, which reads the
// token from a file so that it never shows in ps.
func printJoinToken(w io.Writer, cfg *config.Config, res lifecycle.Result) {
	fmt.Fprintf(w, `Join token (shown this once; only its hash is kept), valid until %s:
  %s
CA fingerprint (a joining node checks the cluster with it):
  %s
To join a node: save the token in a file there (mode 0600), then run there
  understudy cluster join %s --token-file TOKEN_FILE --ca-fingerprint %s
(with --config FILE when its configuration is not %s)
`, res.TokenExpires.Local().Format(time.RFC3339), res.Token, res.CAFingerprint, strings.TrimPrefix(cfg.APIURL(), "https://"), res.CAFingerprint, defaultConfigPath)
}

func newClusterJoinCmd() *cobra.Command {
	var path, consulBin, processes, tokenFile string
	var o lifecycle.Options
	var j lifecycle.JoinOptions
	var node config.NodeOverride
	cmd := &cobra.Command{
		Use:   "join ACTIVE_ADDRESS --token-file FILE --ca-fingerprint FP --config FILE",
		Short: "Make this node a standby of an existing cluster",
		Long: `join asks the active node's API at ACTIVE_ADDRESS (host:port of its
api.listen) for the cluster's CA and Consul settings, over TLS and only once
the server shows the CA whose fingerprint cluster start printed; signs this
node's certificate, joins Consul, clones PostgreSQL from the active node
(showing progress), starts the check-runner, the handler-runner and the
consul-watcher, and returns once this node streams from the active node.

The join token is read from --token-file, or from standard input with
--token -, so that it does not show in ps; --token T works too. A token that
expired or was revoked is refused: issue a new one with "understudy cluster
token" on a node of the cluster.

The configuration must ask for TLS: consul { scheme = "https" }. A node with a
database or a cluster identity is refused unless --force. When a step fails,
the node leaves Consul and the steps before are undone; join can be run
again.

` + processesHelp,
		Example: "  understudy cluster join 10.0.0.5:8008 --token-file token --ca-fingerprint sha256:FINGERPRINT --config /etc/understudy/understudy.hcl",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := lifecycleSetup(cmd, path, consulBin, processes, node, &o)
			if err != nil {
				return err
			}
			defer o.Services.Close()
			if j.Token, err = readJoinToken(j.Token, tokenFile, cmd.InOrStdin()); err != nil {
				return fmt.Errorf("cluster join: %w", err)
			}
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
	cmd.Flags().StringVar(&j.Token, "token", "", `the join token cluster start or cluster token printed; "-" reads it from standard input (prefer --token-file: a flag shows in ps)`)
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "a file that holds the join token")
	cmd.Flags().StringVar(&j.CAFingerprint, "ca-fingerprint", "", "the CA fingerprint cluster start printed (sha256:...)")
	cmd.Flags().BoolVar(&j.Force, "force", false, "join although this node has a database or a cluster identity (its data is kept aside)")
	addLifecycleFlags(cmd, &consulBin, &processes, &node, &o)
	return cmd
}

// lifecycleSetup writes --cluster-node-name and --cluster-host-ip into the
// node's configuration file (config.NodeOverride says why the file), loads
// it and fills the options cluster start and join share: the programs, the
// services manager, where progress goes and the version.
func lifecycleSetup(cmd *cobra.Command, path, consulBin, processes string, node config.NodeOverride, o *lifecycle.Options) (*config.Config, error) {
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
	changed, err := config.WriteNodeOverride(path, node)
	if err != nil {
		return nil, err
	}
	if changed {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: node block set from the command line (%s); the daemons read it from there\n", path, overrideWords(node))
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
const processesHelp = `--cluster-node-name and --cluster-host-ip override node.name and
node.address, and are written into the configuration file, where the
daemons read them, before anything starts.

The node's processes (the Consul agent, Syncthing on a node with files
blocks, the check-runner, the handler-runner) run, with --processes systemd,
as systemd units written into /etc/systemd/system and enabled: systemd
restarts each one that exits, starts them at boot, and their output is in
the journal (journalctl -u 'understudy-*'). The units run this understudy
binary and the Consul agent from where they are now: install the package
(/usr/bin/understudy, the pinned Consul and Syncthing in
/usr/lib/understudy/bin, found first) or put them where they stay before. With --processes supervised they
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

// overrideWords is what --cluster-node-name and --cluster-host-ip set.
func overrideWords(o config.NodeOverride) string {
	var w []string
	if o.Name != "" {
		w = append(w, fmt.Sprintf("name = %q", o.Name))
	}
	if o.Address != "" {
		w = append(w, fmt.Sprintf("address = %q", o.Address))
	}
	return strings.Join(w, ", ")
}

// addLifecycleFlags adds the flags cluster start and join share: the
// node's name and address, how the node's processes run, the Consul agent
// to run and its ports.
func addLifecycleFlags(cmd *cobra.Command, consulBin, processes *string, node *config.NodeOverride, o *lifecycle.Options) {
	cmd.Flags().StringVar(&node.Name, "cluster-node-name", "", "this node's name in the cluster; overrides node.name and is written into the configuration file")
	cmd.Flags().StringVar(&node.Address, "cluster-host-ip", "", "the IP address the other nodes reach this one at (a private network, not the CLI's); overrides node.address and is written into the configuration file")
	cmd.Flags().StringVar(processes, "processes", "auto", "how the node's processes run: systemd (enabled units), supervised (programs left running, not restarted), or auto (systemd where it is the init)")
	cmd.Flags().StringVar(consulBin, "consul", "", "the Consul agent to run (default: the package's /usr/lib/understudy/bin/consul, else bin/consul beside understudy, else consul on PATH)")
	cmd.Flags().IntVar(&o.SerfPort, "consul-serf-port", 8301, "the Consul agent's LAN gossip port")
	cmd.Flags().IntVar(&o.ServerPort, "consul-server-port", 8300, "the Consul agent's server (Raft, RPC) port")
}

// readJoinToken is the join token from the flags: the value of --token, or
// "-" for a line of standard input, or the contents of --token-file; one of
// the two, trimmed of the spaces and newline an editor or echo adds.
func readJoinToken(flag, file string, stdin io.Reader) (string, error) {
	var raw []byte
	switch {
	case flag != "" && file != "":
		return "", errors.New("--token and --token-file both given: pass one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		raw = b
	case flag == "-":
		b, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("read the join token from standard input: %w", err)
		}
		raw = b
	default:
		return flag, nil
	}
	token := strings.TrimSpace(string(raw))
	if token == "" || strings.ContainsAny(token, " \t\n") {
		return "", errors.New("the join token must be alone on one line, as cluster start or cluster token printed it")
	}
	return token, nil
}
