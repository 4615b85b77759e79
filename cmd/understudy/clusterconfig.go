package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func newClusterConfigCmd(o *apiOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show and change the cluster-wide PostgreSQL parameters",
		Long: `config holds the PostgreSQL parameters every node runs with, in Consul. Each
node writes them into understudy.parameters.conf in its data directory and
reloads its PostgreSQL; a parameter PostgreSQL reads only at start (such as
shared_buffers) then waits for a restart, shown under PENDING RESTART. The
parameters understudy sets itself (port, wal_level, primary_conninfo...) are
refused with where to change them instead.`,
		Args: cobra.NoArgs,
	}
	var wait time.Duration
	set := &cobra.Command{
		Use:   "set postgres.parameters.NAME=VALUE...",
		Short: "Set cluster-wide PostgreSQL parameters; every node reloads",
		Example: `  understudy cluster config set postgres.parameters.work_mem=64MB
  understudy cluster config set postgres.parameters.shared_buffers=1GB postgres.parameters.max_connections=200`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			change := cluster.ParameterChange{Set: map[string]string{}}
			for _, a := range args {
				name, value, err := cluster.ParseParameterSetting(a)
				if err != nil {
					return err
				}
				change.Set[name] = value
			}
			return changeConfig(cmd, o, change, wait)
		},
	}
	unset := &cobra.Command{
		Use:     "unset postgres.parameters.NAME...",
		Short:   "Remove cluster-wide PostgreSQL parameters (back to PostgreSQL's defaults)",
		Example: `  understudy cluster config unset postgres.parameters.work_mem`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var change cluster.ParameterChange
			for _, a := range args {
				name, err := cluster.ParseParameterKey(a)
				if err != nil {
					return err
				}
				change.Unset = append(change.Unset, name)
			}
			return changeConfig(cmd, o, change, wait)
		},
	}
	for _, c := range []*cobra.Command{set, unset} {
		c.Flags().DurationVar(&wait, "wait", 15*time.Second, "how long to wait for every node to apply the change (0: do not wait)")
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the cluster-wide PostgreSQL parameters and how each node applied them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			p, err := c.Config(cmd.Context())
			if err != nil {
				return err
			}
			v, err := fetchCluster(cmd.Context(), c)
			if err != nil {
				return err
			}
			nodes := paramNodes(v, p)
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"parameters": p, "nodes": nodes})
			}
			return renderConfig(cmd.OutOrStdout(), p, nodes)
		},
	}
	cmd.AddCommand(show, set, unset)
	return cmd
}

// paramNode is one node's line of config show.
type paramNode struct {
	Name string `json:"name"`
	// Applied: the node wrote the current parameters (and reloaded).
	Applied        bool     `json:"applied"`
	PendingRestart []string `json:"pending_restart,omitempty"`
	Errors         []string `json:"errors,omitempty"`
	Error          string   `json:"error,omitempty"`
}

func paramNodes(v clusterView, p cluster.Parameters) []paramNode {
	var out []paramNode
	for _, m := range v.status.Members {
		n := paramNode{Name: m.Name}
		r, ok := v.live[m.Name]
		switch {
		case !ok:
			n.Error = "no API address in its member record"
		case r.Err != nil:
			n.Error = r.Err.Error()
		case r.Status.Parameters == nil:
			n.Error = "has not applied any parameters yet (an older version, or just started)"
		default:
			ps := r.Status.Parameters
			n.Applied = ps.Version.Equal(p.At)
			n.PendingRestart, n.Errors, n.Error = ps.PendingRestart, ps.Errors, ps.Error
		}
		out = append(out, n)
	}
	return out
}

func renderConfig(w io.Writer, p cluster.Parameters, nodes []paramNode) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(p.Values) == 0 {
		fmt.Fprintln(tw, "no cluster-wide PostgreSQL parameters (set one with: understudy cluster config set postgres.parameters.NAME=VALUE)")
	} else {
		fmt.Fprintln(tw, "PARAMETER\tVALUE")
		for _, n := range slices.Sorted(maps.Keys(p.Values)) {
			fmt.Fprintf(tw, "%s%s\t%s\n", cluster.ParametersPrefix, n, p.Values[n])
		}
	}
	if !p.At.IsZero() {
		fmt.Fprintf(tw, "last changed %s by %s\n", p.At.Local().Format(time.DateTime), orDash(p.By))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NODE\tAPPLIED\tPENDING RESTART\tERRORS")
	for _, n := range nodes {
		applied := yesNo(n.Applied)
		errs := strings.Join(n.Errors, "; ")
		if n.Error != "" {
			errs = strings.TrimPrefix(errs+"; "+n.Error, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, applied, orDash(strings.Join(n.PendingRestart, ",")), orDash(oneLine(errs)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range nodes {
		if len(n.PendingRestart) > 0 {
			fmt.Fprintln(w, "\nsome parameters take effect at the next restart: understudy cluster restart --all --pending")
			break
		}
	}
	return nil
}

// changeConfig sends change and, with wait, follows the nodes until each
// applied it, then says what waits for a restart.
func changeConfig(cmd *cobra.Command, o *apiOpts, change cluster.ParameterChange, wait time.Duration) error {
	asJSON, c, err := o.setup()
	if err != nil {
		return err
	}
	ans, err := c.ChangeConfig(cmd.Context(), change)
	if err != nil {
		return err
	}
	if ans.Changed == "" {
		if asJSON {
			return writeJSONOut(cmd.OutOrStdout(), ans)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "nothing to change: the parameters already are so")
		return nil
	}
	if !asJSON {
		fmt.Fprintf(cmd.OutOrStdout(), "changed %s\n", ans.Changed)
	}
	if wait <= 0 {
		if asJSON {
			return writeJSONOut(cmd.OutOrStdout(), ans)
		}
		return nil
	}
	nodes, err := waitApplied(cmd.Context(), c, ans.Parameters, wait)
	if asJSON {
		return errors.Join(writeJSONOut(cmd.OutOrStdout(), map[string]any{"parameters": ans.Parameters, "changed": ans.Changed, "nodes": nodes}), err)
	}
	if rerr := renderConfig(cmd.OutOrStdout(), ans.Parameters, nodes); rerr != nil {
		return rerr
	}
	return err
}

// waitApplied polls the nodes until every one applied p or wait passes.
func waitApplied(ctx context.Context, c *nodeapi.Client, p cluster.Parameters, wait time.Duration) ([]paramNode, error) {
	deadline := time.Now().Add(wait)
	for {
		v, err := fetchCluster(ctx, c)
		if err != nil {
			return nil, err
		}
		nodes := paramNodes(v, p)
		var behind []string
		for _, n := range nodes {
			if !n.Applied {
				behind = append(behind, n.Name)
			}
		}
		if len(behind) == 0 {
			return nodes, nil
		}
		if time.Now().After(deadline) {
			return nodes, fmt.Errorf("after %v, %s had not applied the change; a node that is down applies it when it starts (see understudy cluster config show)", wait, strings.Join(behind, ", "))
		}
		select {
		case <-ctx.Done():
			return nodes, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func newReloadCmd(o *apiOpts) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "reload NODE | --all",
		Short: "Make PostgreSQL read its configuration files again, on one node or every node",
		Example: `  understudy cluster reload n2
  understudy cluster reload --all`,
		Args: oneNodeOrAll(&all),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			v, err := fetchCluster(cmd.Context(), c)
			if err != nil {
				return err
			}
			var out []nodeapi.ReloadAnswer
			var errs []error
			found := false
			for _, m := range v.status.Members {
				if !all && m.Name != args[0] {
					continue
				}
				found = true
				if m.APIURL == "" {
					errs = append(errs, fmt.Errorf("%s publishes no API address; is its handler-runner running?", m.Name))
					continue
				}
				ans, err := c.Reload(cmd.Context(), m.APIURL)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, ans)
				if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: reloaded", ans.Node)
					if len(ans.PendingRestart) > 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "; waiting for a restart: %s", strings.Join(ans.PendingRestart, ", "))
					}
					for _, e := range ans.Errors {
						fmt.Fprintf(cmd.OutOrStdout(), "; refused: %s", e)
					}
					fmt.Fprintln(cmd.OutOrStdout())
				}
			}
			if !found {
				return fmt.Errorf("no member %q; see understudy cluster nodes list", args[0])
			}
			if asJSON {
				if err := writeJSONOut(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "reload every node")
	return cmd
}

// oneNodeOrAll takes one node's name or, with *all (--all), none.
func oneNodeOrAll(all *bool) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if *all == (len(args) == 1) || len(args) > 1 {
			return fmt.Errorf("name one node or give --all; usage: %s", cmd.UseLine())
		}
		return nil
	}
}
