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
	"github.com/understudy-ha/understudy/lifecycle"
)

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Issue certificates of the cluster's CA",
		Args:  noArgs,
	}
	cmd.AddCommand(newCertsOperatorCmd(), newCertsRenewCmd(), newCertsNewCACmd(), newCertsReplaceCACmd())
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
			cfg, err := loadTLSConfig(path, "its API asks for no certificate; nodes made by understudy cluster start/join do")
			if err != nil {
				return err
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

The cluster's CA is valid ten years; understudy certs new-ca and replace-ca
replace it (the README's "Replacing the cluster CA").`,
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

// loadTLSConfig loads the node's configuration, which must set up TLS;
// why says what its absence means for the command.
func loadTLSConfig(path, why string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if !cfg.TLS() {
		return nil, fmt.Errorf("%s does not set up TLS (consul.scheme is %q): %s", path, cfg.Consul.Scheme, why)
	}
	return cfg, nil
}

func newCertsNewCACmd() *cobra.Command {
	var path, out string
	cmd := &cobra.Command{
		Use:   "new-ca --out DIR",
		Short: "Make a new CA for the cluster, for certs replace-ca on every node",
		Long: `new-ca makes a new CA for the cluster (valid ten years) and writes ca.pem and
ca-key.pem (0600) into --out, which must not hold them yet. Copy the
directory to every node of the cluster (the key is the cluster's: keep it
secret), and run understudy certs replace-ca --from DIR on each, the
cluster stopped; the README's "Replacing the cluster CA" is the whole
procedure.`,
		Example: "  understudy certs new-ca --out /root/new-ca",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadTLSConfig(path, "the cluster has no CA")
			if err != nil {
				return err
			}
			ca, err := certs.NewCA(cfg.Cluster.Name, time.Now())
			if err != nil {
				return err
			}
			p, err := certs.WriteCA(out, ca)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new CA of cluster %s, %s, valid until %s:\n  %s\n  %s (keep it secret)\nnext: copy %s to every node, then on each (the cluster stopped):\n  understudy certs replace-ca --from %s\n",
				cfg.Cluster.Name, ca.Fingerprint(), ca.Cert.NotAfter.UTC().Format(time.DateOnly), p.CA, p.CAKey, out, out)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&out, "out", "", "directory to write ca.pem and ca-key.pem into (made 0700 if missing)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func newCertsReplaceCACmd() *cobra.Command {
	var path, from string
	cmd := &cobra.Command{
		Use:   "replace-ca --from DIR",
		Short: "Make the CA in DIR (certs new-ca) this node's, its certificate signed again",
		Long: `replace-ca makes the CA in --from (ca.pem and ca-key.pem, from understudy
certs new-ca) this node's: the node certificate is signed again by it, with
the same names and addresses and a new key; the old CA, its key and the old
certificate and key are moved into a replaced-<time> directory beside them
(never deleted); the Consul agent's copies follow. It refuses while the
node runs (understudy node stop first): a node on the new CA and one on the
old cannot talk, so the whole cluster is stopped, replaced node by node,
and started again. The PostgreSQL CA and Syncthing's identity stay.

Afterwards operator certificates, profiles and HAProxy need the new CA:
understudy certs operator NAME again, profile add --ca with the new
ca.pem, and a new join token (understudy cluster token).`,
		Example: "  understudy certs replace-ca --from /root/new-ca",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			ca, err := certs.ReadCA(certs.ReadPaths(from))
			if err != nil {
				return fmt.Errorf("%w (certs new-ca --out %s writes ca.pem and ca-key.pem there)", err, from)
			}
			r, err := lifecycle.ReplaceCA(cfg, ca, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now has the CA %s; node certificate serial %s, valid until %s; the old files are in %s\nnext: the same on every other node, then understudy node start on each (the old active first)\n",
				cfg.Node.Name, r.Fingerprint, r.Serial, r.NotAfter.UTC().Format(time.DateOnly), r.Aside)
			return nil
		},
	}
	addConfigFlag(cmd, &path)
	cmd.Flags().StringVar(&from, "from", "", "directory holding the new ca.pem and ca-key.pem (understudy certs new-ca)")
	_ = cmd.MarkFlagRequired("from")
	return cmd
}
