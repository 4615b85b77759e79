package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func newProfileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Name the clusters the CLI talks to: lists of node API addresses",
		Long: `A profile names a cluster: the API addresses of its nodes, and the CA and
basic auth file to reach them. "understudy cluster --profile NAME ..." uses it;
without --profile, $UNDERSTUDY_PROFILE names it, else the profile "dev" when
there is one, else the local node (http://127.0.0.1:8008). Profiles are kept in
$XDG_CONFIG_HOME/understudy/profiles.json (~/.config/understudy/profiles.json),
or $UNDERSTUDY_PROFILES.`,
		Args: noArgs,
	}
	cmd.AddCommand(newProfileAddCmd(), newProfileListCmd(), newProfileUpdateCmd(), newProfileRemoveCmd())
	return cmd
}

func newProfileAddCmd() *cobra.Command {
	var p nodeapi.Profile
	cmd := &cobra.Command{
		Use:   "add NAME --nodes HOST:PORT,HOST:PORT",
		Short: "Add a profile, or replace the one of the same name",
		Long: `add stores a profile. --nodes takes the nodes' API addresses (api.listen):
http://HOST:PORT, https://HOST:PORT, or HOST:PORT (http://, or https:// with
--ca; port 8008 when none is given). --cert and --key are a client
certificate of the cluster's CA, which every call but the load balancer's
checks needs on a TLS cluster: an operator's (understudy certs operator NAME,
on a node) to change the cluster, a node's to read it. --basic-auth-file is
the nodes' api.basic_auth_file (user:password). The files' paths are stored,
not their content.`,
		Example: "  understudy profile add prod --nodes 10.0.0.5:8008,10.0.0.6:8008,10.0.0.7:8008 --ca ca.pem --cert alice.pem --key alice-key.pem",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			var err error
			if p.CAFile, err = absFile("ca", p.CAFile); err != nil {
				return err
			}
			if p.BasicAuthFile, err = absFile("basic-auth-file", p.BasicAuthFile); err != nil {
				return err
			}
			if p.CertFile, err = absFile("cert", p.CertFile); err != nil {
				return err
			}
			if p.KeyFile, err = absFile("key", p.KeyFile); err != nil {
				return err
			}
			// New reads both files as every later command will: a wrong
			// one is refused now rather than at the first use.
			if err := nodeapi.New(p).Err(); err != nil {
				return err
			}
			_, existed := nodeapi.LoadProfile(p.Name)
			if err := nodeapi.SaveProfile(p); err != nil {
				return err
			}
			saved, err := nodeapi.LoadProfile(p.Name)
			if err != nil {
				return err
			}
			verb := "added"
			if existed == nil {
				verb = "replaced"
			}
			path, _ := nodeapi.ProfilesPath()
			fmt.Fprintf(cmd.OutOrStdout(), "profile %s %s in %s: %s\n", p.Name, verb, path, strings.Join(saved.Nodes, ", "))
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&p.Nodes, "nodes", nil, "the nodes' API addresses, comma-separated: HOST:PORT or http://HOST:PORT")
	cmd.Flags().StringVar(&p.CAFile, "ca", "", "PEM file of the CA of the nodes' API certificates (https)")
	cmd.Flags().StringVar(&p.BasicAuthFile, "basic-auth-file", "", "file holding the API's user:password (the nodes' api.basic_auth_file)")
	cmd.Flags().StringVar(&p.CertFile, "cert", "", "client certificate of the cluster's CA (understudy certs operator NAME writes NAME.pem)")
	cmd.Flags().StringVar(&p.KeyFile, "key", "", "the client certificate's key (NAME-key.pem)")
	_ = cmd.MarkFlagRequired("nodes")
	return cmd
}

func newProfileListCmd() *cobra.Command {
	o := &apiOpts{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the profiles; * marks the one used without --profile",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := o.json()
			if err != nil {
				return err
			}
			ps, err := nodeapi.ListProfiles()
			if err != nil {
				return err
			}
			if asJSON {
				if ps == nil {
					ps = []nodeapi.Profile{}
				}
				return writeJSONOut(cmd.OutOrStdout(), ps)
			}
			path, _ := nodeapi.ProfilesPath()
			def, defErr := nodeapi.SelectProfile("")
			return renderProfiles(cmd.OutOrStdout(), ps, path, def, defErr)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func renderProfiles(w io.Writer, ps []nodeapi.Profile, path string, def nodeapi.Profile, defErr error) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(ps) > 0 {
		fmt.Fprintln(tw, "\tNAME\tNODES\tCA\tCLIENT CERT\tBASIC AUTH")
	}
	for _, p := range ps {
		mark := ""
		if defErr == nil && p.Name == def.Name {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, p.Name, strings.Join(p.Nodes, ","), orDash(p.CAFile), orDash(p.CertFile), orDash(p.BasicAuthFile))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case defErr != nil:
		_, err := fmt.Fprintf(w, "without --profile: %v\n", defErr)
		return err
	case len(ps) == 0:
		_, err := fmt.Fprintf(w, "no profiles in %s; without --profile the CLI talks to the local node (%s); add one with: understudy profile add NAME --nodes HOST:PORT,HOST:PORT\n", path, def.Nodes[0])
		return err
	case def.Name == nodeapi.LocalName:
		_, err := fmt.Fprintf(w, "without --profile the CLI talks to the local node (%s)\n", def.Nodes[0])
		return err
	}
	return nil
}

func newProfileUpdateCmd() *cobra.Command {
	o := &apiOpts{}
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Refresh a profile's nodes from its cluster's members",
		Long: `update asks the nodes of profile NAME, the first that answers, for the
cluster's members and stores their API addresses as the profile's nodes
(the Conductor Manager CLI's update-profile): a node that joined is added, a
node that was removed goes. An address in the profile that answers as a
member is kept as it was typed (a DNS name, an address behind NAT) rather
than replaced by the one the member publishes. The profile's CA, client
certificate and basic auth file are kept. It prints what changed; a cluster that names no member
with an API address leaves the profile as it was.`,
		Example: "  understudy profile update prod",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := o.json()
			if err != nil {
				return err
			}
			p, err := nodeapi.LoadProfile(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			c := nodeapi.New(p)
			cs, err := c.ClusterStatus(ctx)
			if err != nil {
				return fmt.Errorf("profile update %s: %w", p.Name, err)
			}
			// The addresses the operator typed that answer keep their
			// place: a member's own API URL may not be reachable from here.
			answered := map[string]string{}
			for _, r := range c.NodeStatuses(ctx, p.Nodes) {
				if r.Err == nil && r.Status.Name != "" {
					answered[r.Status.Name] = r.URL
				}
			}
			ch, err := nodeapi.RefreshNodes(p, cs, answered)
			if err != nil {
				return err
			}
			if len(ch.Added)+len(ch.Removed) > 0 {
				p.Nodes = ch.Nodes
				if err := nodeapi.SaveProfile(p); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"profile": p.Name, "nodes": ch.Nodes, "added": orEmpty(ch.Added), "removed": orEmpty(ch.Removed)})
			}
			return renderNodeChanges(cmd.OutOrStdout(), p.Name, ch)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	return cmd
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// renderNodeChanges says what profile update changed, one node a line.
func renderNodeChanges(w io.Writer, name string, ch nodeapi.NodeChanges) error {
	if len(ch.Added)+len(ch.Removed) == 0 {
		_, err := fmt.Fprintf(w, "profile %s unchanged: %s\n", name, strings.Join(ch.Nodes, ", "))
		return err
	}
	fmt.Fprintf(w, "profile %s updated:\n", name)
	for _, n := range ch.Added {
		fmt.Fprintf(w, "  + %s\n", n)
	}
	for _, n := range ch.Removed {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	_, err := fmt.Fprintf(w, "nodes: %s\n", strings.Join(ch.Nodes, ", "))
	return err
}

func newProfileRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a profile",
		Example: "  understudy profile remove prod",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := nodeapi.RemoveProfile(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "profile %s removed\n", args[0])
			return nil
		},
	}
}

// absFile makes a file flag's path absolute, so the profile works from any
// directory, and checks that the file is there.
func absFile(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	return abs, nil
}
