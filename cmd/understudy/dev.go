package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/apiclient"
	"github.com/understudy-ha/understudy/internal/devcluster"
)

// defaultDevDir is under /tmp because PostgreSQL runs as the postgres user
// when dev runs as root, and must reach it.
const defaultDevDir = "/tmp/understudy-dev"

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "A complete local cluster on loopback, to try understudy and drive failures",
		Args:  cobra.NoArgs,
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", envOr("UNDERSTUDY_DEV_DIR", defaultDevDir), "the dev cluster's directory ($UNDERSTUDY_DEV_DIR)")
	cmd.AddCommand(newDevUpCmd(&dir), newDevDownCmd(&dir), newDevStatusCmd(&dir), newDevDemoCmd(&dir))
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
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a local cluster: a Consul server, PostgreSQL and the daemons per node, and HAProxy",
		Long: `up builds a cluster of --nodes nodes on loopback addresses 127.0.0.11, .12, ...
under --dir: each node has its own Consul server, PostgreSQL (owned by its
handler-runner) and daemons, and HAProxy sends PostgreSQL connections to the
active node. It returns once one node is active and the others stream from
it, and prints where everything is. The processes keep running until
` + "`understudy dev down`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			out := cmd.OutOrStdout()
			s, err := devcluster.Up(ctx, devcluster.Options{Dir: *dir, Nodes: nodes, Out: out})
			if err != nil {
				return fmt.Errorf("dev up: %w", err)
			}
			// The CLI's default profile: `understudy cluster nodes list`
			// works right after dev up.
			if err := apiclient.SaveProfile(devProfile(s)); err != nil {
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
Stop and remove everything:  understudy dev down --dir %s
`, s.HAProxy.Frontend, s.Dir, s.Dir, s.Dir)
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "how many nodes (1 to 9)")
	return cmd
}

func newDevDownCmd(dir *string) *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop every process of the local cluster and remove its directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := devcluster.Load(*dir)
			if err != nil {
				return err
			}
			if err := devcluster.Down(s, keep); err != nil {
				return err
			}
			if p, err := apiclient.LoadProfile("dev"); err == nil && slices.Equal(p.Nodes, devProfile(s).Nodes) {
				_ = apiclient.RemoveProfile("dev")
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
		Args:  cobra.NoArgs,
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
		Args:  cobra.NoArgs,
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
	fmt.Fprintln(tw, "NODE\tROLE\tAPI\tPOSTGRES\tCONSUL\tSHARED FILES\tPIDS (consul postgres check-runner handler-runner syncthing)")
	for i, n := range s.Nodes {
		role := "standby"
		switch {
		case n.PIDs.HandlerRunner == 0:
			role = "down"
		case i == active:
			role = "active"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%d %d %d %d %d\n", n.Name, role, n.APIURL, n.PostgresHost, n.PostgresPort,
			n.ConsulAPI, orDash(n.Files["shared"]), n.PIDs.Consul, n.PIDs.Postgres, n.PIDs.CheckRunner, n.PIDs.HandlerRunner, n.PIDs.Syncthing)
	}
	tw.Flush()
	fmt.Fprintf(out, "haproxy: %s (pid %d), postgres of the active node\n", s.HAProxy.Frontend, s.HAProxy.PID)
}

// devProfile is the CLI profile of a dev cluster: its nodes' API URLs.
func devProfile(s *devcluster.State) apiclient.Profile {
	p := apiclient.Profile{Name: "dev", CAFile: s.CAFile}
	for _, n := range s.Nodes {
		p.Nodes = append(p.Nodes, n.APIURL)
	}
	return p
}
