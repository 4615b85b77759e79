package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/devcluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// defaultDevDir is under /tmp because PostgreSQL runs as the postgres user
// when dev runs as root, and must reach it.
const defaultDevDir = "/tmp/understudy-dev"

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "A complete local cluster, to try understudy and drive failures",
		Args:  noArgs,
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", envOr("UNDERSTUDY_DEV_DIR", defaultDevDir), "the dev cluster's directory ($UNDERSTUDY_DEV_DIR)")
	cmd.AddCommand(newDevUpCmd(&dir), newDevDownCmd(&dir), newDevStatusCmd(&dir), newDevDemoCmd(&dir),
		newDevPartitionCmd(&dir), newDevHealCmd(&dir), newDevFreezeCmd(&dir), newDevThawCmd(&dir))
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func newDevUpCmd(dir *string) *cobra.Command {
	var nodes int
	var netnsMode, partitionMode string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local cluster: a Consul server, PostgreSQL and the daemons per node, and HAProxy",
		Long: `up builds a cluster of --nodes nodes under --dir: each node has its own
Consul server, PostgreSQL (owned by its handler-runner) and daemons, and
HAProxy sends PostgreSQL connections to the active node. It returns once one
node is active and the others stream from it, and prints where everything
is. The processes keep running until ` + "`understudy dev down`" + `.

Where the machine allows it (root, iproute2 and nftables), each node is a
host of its own: a network namespace on a bridge, with an address in
10.214.X.0/24 and the default ports, which this machine still reaches
(HAProxy, psql, the CLI). Then ` + "`dev partition`" + ` can cut nodes off from each
other. Elsewhere (or with --netns off) the nodes run on loopback addresses
127.0.0.11, .12, ... with ports of their own.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			s, err := devcluster.Up(ctx, devcluster.Options{Dir: *dir, Nodes: nodes, Out: out, Netns: netnsMode, PartitionMode: partitionMode})
			if err != nil {
				return fmt.Errorf("dev up: %w", err)
			}
			// The CLI's default profile: `understudy cluster nodes list`
			// works right after dev up.
			if err := nodeapi.SaveProfile(devProfile(s)); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: cannot save the CLI profile dev: %v\n", err)
			}
			fmt.Fprintln(out)
			printDev(out, ctx, s)
			fmt.Fprintf(out, `
PostgreSQL through HAProxy:  psql "postgres://postgres@%s/postgres"
Watch a failover:            understudy dev demo --dir %s
                             (or kill the active node's pids from `+"`understudy dev status -o json`"+`)
Mirrored files:              write in the active node's SHARED FILES directory,
                             they appear in the others' (Syncthing, files "shared")
Logs:                        %s/<node>/services/*.log
The cluster from the CLI:    understudy cluster nodes list   (profile "dev")
Hang a process or a node:    understudy dev freeze NODE [--what consul|daemons|postgres|node], dev thaw NODE
%sStop and remove everything:  understudy dev down --dir %s
`, s.HAProxy.Frontend, s.Dir, s.Dir, partitionHint(s), s.Dir)
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "how many nodes (1 to 9)")
	cmd.Flags().StringVar(&partitionMode, "partition-mode", "fence", "the nodes' cluster.partition_mode: fence, or active-minority (a cut-off side elects an active of its own; try it with --netns on and dev partition)")
	cmd.Flags().StringVar(&netnsMode, "netns", "auto", "each node in a network namespace of its own: on, off, or auto (on where root with iproute2 and nftables)")
	return cmd
}

func partitionHint(s *devcluster.State) string {
	if s.Net == nil {
		return ""
	}
	return "Cut nodes off:               understudy dev partition NODE... [--one-way], dev heal\n"
}

func newDevPartitionCmd(dir *string) *cobra.Command {
	var oneWay bool
	cmd := &cobra.Command{
		Use:   "partition NODE...",
		Short: "Cut the named nodes off from the others (nodes in network namespaces only)",
		Long: `partition drops, inside the nodes' network namespaces, all traffic between
the named nodes and the others, both ways; with --one-way the named nodes
receive nothing from the others, who still receive what they send. This
machine keeps its access to every node. ` + "`understudy dev heal`" + ` removes every
partition.`,
		Example: "  understudy dev partition n1\n  understudy dev partition n1 n2",
		Args:    minimumArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			if err := devcluster.Partition(s, args, oneWay); err != nil {
				return fmt.Errorf("dev partition: %w", err)
			}
			how := "cut off from the other nodes, both ways"
			if oneWay {
				how = "deaf to the other nodes (they still hear it)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s; undo with `understudy dev heal --dir %s`\n", strings.Join(args, ", "), how, s.Dir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&oneWay, "one-way", false, "the named nodes receive nothing; the others still receive what they send")
	return cmd
}

func newDevHealCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "heal",
		Short: "Remove every partition of the dev cluster",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			if err := devcluster.Heal(s); err != nil {
				return fmt.Errorf("dev heal: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "every node reaches every other again")
			return nil
		},
	}
}

func newDevFreezeCmd(dir *string) *cobra.Command {
	var what string
	cmd := &cobra.Command{
		Use:   "freeze NODE",
		Short: "SIGSTOP a node's processes: a hung agent, hung daemons, a hung PostgreSQL, or a paused machine",
		Long: `freeze stops (SIGSTOP) a group of the node's processes, as a hang looks to
the rest of the cluster: --what consul (its Consul agent), daemons (the
check-runner, the handler-runner and the consul-watcher), postgres (the postmaster and every
process it started), or node (all of those, Syncthing and the fencing
watchdog: a paused machine). ` + "`understudy dev thaw NODE`" + ` resumes them.`,
		Example: "  understudy dev freeze n1",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			pids, err := devcluster.Freeze(s, args[0], what)
			if err != nil {
				return fmt.Errorf("dev freeze: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s of %s frozen (pids %v); resume with `understudy dev thaw %s --dir %s`\n", what, args[0], pids, args[0], s.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&what, "what", "node", "consul, daemons, postgres or node")
	return cmd
}

func newDevThawCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:     "thaw NODE",
		Short:   "Resume (SIGCONT) every process of a node that dev freeze stopped",
		Example: "  understudy dev thaw n1",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			pids, err := devcluster.Thaw(s, args[0])
			if err != nil {
				return fmt.Errorf("dev thaw: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s resumed (pids %v)\n", args[0], pids)
			return nil
		},
	}
}

func newDevDownCmd(dir *string) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of the local cluster and remove its directory",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			if err := devcluster.Down(s, keep); err != nil {
				return err
			}
			if p, err := nodeapi.LoadProfile("dev"); err == nil && slices.Equal(p.Nodes, devProfile(s).Nodes) {
				_ = nodeapi.RemoveProfile("dev")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "dev cluster in %s stopped\n", s.Dir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the directory (data, logs)")
	return cmd
}

func newDevStatusCmd(dir *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Where everything of the local cluster is, and the PIDs of its processes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			case "table", "":
				printDev(cmd.OutOrStdout(), cmd.Context(), s)
				return nil
			}
			return fmt.Errorf("-o %s: write -o table or -o json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func newDevDemoCmd(dir *string) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Write rows through HAProxy, kill the active node, show the failover, bring the node back",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			if err := devcluster.Demo(ctx, s, devcluster.Options{}, cmd.OutOrStdout()); err != nil {
				return fmt.Errorf("dev demo: %w", err)
			}
			return nil
		},
	}
}

func printDev(out io.Writer, ctx context.Context, s *devcluster.State) {
	if ctx == nil {
		ctx = context.Background()
	}
	active, _ := devcluster.Active(ctx, s)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tAPI\tPOSTGRES\tCONSUL\tSHARED FILES\tPIDS (consul postgres check-runner handler-runner consul-watcher syncthing)")
	for i, n := range s.Nodes {
		role := "standby"
		switch {
		case n.PIDs.HandlerRunner == 0:
			role = "down"
		case i == active:
			role = "active"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%d %d %d %d %d %d\n", n.Name, role, n.APIURL, n.PostgresHost, n.PostgresPort,
			n.ConsulAPI, orDash(n.Files["shared"]), n.PIDs.Consul, n.PIDs.Postgres, n.PIDs.CheckRunner, n.PIDs.HandlerRunner, n.PIDs.ConsulWatcher, n.PIDs.Syncthing)
	}
	tw.Flush()
	fmt.Fprintf(out, "haproxy: %s (pid %d), postgres of the active node\n", s.HAProxy.Frontend, s.HAProxy.PID)
	if s.Net == nil {
		fmt.Fprintln(out, "network: loopback (no partitions; `dev up --netns on` as root for nodes in network namespaces)")
		return
	}
	fmt.Fprintf(out, "network: each node in a network namespace on bridge %s (%s); `ip netns exec NETNS` runs a command on a node\n", s.Net.Bridge, s.Net.Gate)
	cut, err := devcluster.Partitions(s)
	if err != nil {
		fmt.Fprintf(out, "partitions: cannot read them: %v\n", err)
		return
	}
	for _, n := range s.Nodes {
		if deaf := cut[n.Name]; len(deaf) > 0 {
			fmt.Fprintf(out, "partition: %s receives nothing from %s\n", n.Name, strings.Join(deaf, ", "))
		}
	}
}

// devProfile is the CLI profile of a dev cluster: its nodes' API URLs.
func devProfile(s *devcluster.State) nodeapi.Profile {
	p := nodeapi.Profile{Name: "dev", CAFile: s.CAFile, CertFile: s.OperatorCert, KeyFile: s.OperatorKey}
	for _, n := range s.Nodes {
		p.Nodes = append(p.Nodes, n.APIURL)
	}
	return p
}
