package main

import (
	"fmt"
	"log/slog"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Issue certificates of the cluster's CA",
		Args:  noArgs,
	}
	cmd.AddCommand(newCertsOperatorCmd(), newCertsRenewCmd())
	return cmd
}

// operatorNameRE is what an operator certificate may be called: events
// and logs name the caller by it.
var operatorNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func newCertsOperatorCmd() *cobra.Command {
	var path, out string
	var valid time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "operator NAME --out DIR",
		Short: "Issue an operator certificate: what switchover, nodes remove and nodes update need",
		Long: `operator signs a client certificate for the operator NAME with the cluster's
CA, on a node of the cluster (as root: it reads the CA's key from the node's
TLS directory), and writes NAME.pem and NAME-key.pem (0600) into --out.

On a TLS cluster every call of the nodes' API but the load balancer's checks
needs a client certificate of the cluster's CA. A node's own certificate may
read (cluster status, nodes list, history); an operator's may also change the
cluster (cluster set-active, nodes remove, nodes update). Events name the
operator who made each change. Use the files in a profile:

  understudy profile add prod --nodes HOST:8008,HOST:8008 --ca ca.pem \
      --cert NAME.pem --key NAME-key.pem`,
		Example: "  understudy certs operator alice --out ~/.understudy",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !operatorNameRE.MatchString(name) {
				return fmt.Errorf("operator name %q: use up to 64 letters, digits, '.', '_', '@' or '-', e.g. alice", name)
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			if !cfg.TLS() {
				return fmt.Errorf("%s does not set up TLS (consul.scheme is %q): its API asks for no certificate; nodes made by understudy cluster start/join do", path, cfg.Consul.Scheme)
			}
			caFile, _, _ := cfg.TLSFiles()
			ca, err := certs.ReadCA(certs.ReadPaths(filepath.Dir(caFile)))
			if err != nil {
				return err
			}
			c, err := ca.IssueOperator(name, valid, time.Now())
			if err != nil {
				return err
			}
			certPath, keyPath, err := certs.WriteOperator(out, name, c, force)
			if err != nil {
				return err
			}
			absCA, _ := filepath.Abs(caFile)
			fmt.Fprintf(cmd.OutOrStdout(), "operator certificate for %s, valid until %s:\n  %s\n  %s (keep it secret)\nuse it with:\n  understudy profile add PROFILE --nodes %s --ca %s --cert %s --key %s\n",
				name, c.Cert.NotAfter.UTC().Format(time.DateOnly), certPath, keyPath, cfg.APIURL(), absCA, certPath, keyPath)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&out, "out", ".", "directory to write NAME.pem and NAME-key.pem into")
	cmd.Flags().DurationVar(&valid, "valid", certs.OperatorValidity, "how long the certificate is valid (never past the CA's expiry)")
	cmd.Flags().BoolVar(&force, "force", false, "replace NAME.pem and NAME-key.pem when they exist")
	return cmd
}

func newCertsRenewCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "renew",
		Short: "Renew this node's certificate now, without a restart",
		Long: `renew signs a new certificate for this node with the cluster's CA (same
names and addresses, a new key, valid two years), replaces the node's TLS
files, and has the Consul agent and PostgreSQL load it; the check-runner and
handler-runner pick it up by themselves. Nothing fails over. The check-runner
does the same on its own 90 days before the certificate expires.

Syncthing keeps the identity it was set up with: its device ID is that
certificate's hash, which the other nodes know it by.

The cluster's CA is valid ten years; replacing it is not automated yet.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			cc, err := consul.New(cfg.Consul)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			who := "understudy certs renew"
			if u, err := user.Current(); err == nil {
				who += " (" + u.Username + ")"
			}
			r, err := checkrunner.RenewCertificate(cmd.Context(), cfg, cc, log, who)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node certificate of %s renewed: serial %s, valid until %s; reloaded: %s\n",
				cfg.Node.Name, r.Serial, r.NotAfter.UTC().Format(time.DateOnly), strings.Join(r.Reloaded, ", "))
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	return cmd
}
