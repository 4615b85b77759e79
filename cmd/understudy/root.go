package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/logging"
	"github.com/understudy-ha/understudy/internal/services"
)

const defaultConfigPath = "/etc/understudy/understudy.hcl"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "understudy",
		Short:         "Keep one node of a small cluster active and the others hot standbys",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	// The third daemon, beside the check-runner and the handler-runner.
	root.AddCommand(newConsulWatcherCmd())
	root.AddCommand(newVersionCmd(), newConfigCmd(), newCertsCmd(), newCheckRunnerCmd(), newHandlerRunnerCmd(), newWatchdogCmd(), newDevCmd(),
		newClusterCmd(), newNodeCmd(), newProfileCmd(), newHAProxyConfigCmd(), newDocsCmd())
	guideUsage(root)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print understudy's version",
		Args:  noArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "understudy", version)
		},
	}
}

// addConfigFlag adds --config to a command that reads the node's file.
func addConfigFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "config", defaultConfigPath, "the node's configuration file (HCL)")
}

// daemon is what both daemons start from: the configuration, a logger, a
// context that ends on SIGTERM or SIGINT (the daemon returns when it ends),
// the local Consul agent's client and the node's service manager.
type daemon struct {
	cfg  *config.Config
	log  *slog.Logger
	ctx  context.Context
	cc   *consul.Client
	svcs *services.Manager
	stop context.CancelFunc
}

func newDaemon(path string) (*daemon, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		return nil, err
	}
	log := logging.New(os.Stderr, os.Getenv("UNDERSTUDY_LOG_LEVEL"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	return &daemon{cfg: cfg, log: log, ctx: ctx, cc: cc, svcs: newServices(cfg, log), stop: stop}, nil
}

// close releases what newDaemon opened, once the daemon has returned.
func (d *daemon) close() {
	d.svcs.Close()
	d.stop()
}

// newServices is the node's service manager, shared in shape by the two
// daemons that use it: the handler-runner supervises `command` services and
// the check-runner reads their state from the same directory.
func newServices(cfg *config.Config, log *slog.Logger) *services.Manager {
	return services.NewManager(services.WithLogger(log), services.WithStateDir(filepath.Join(cfg.Node.DataDir, "services")))
}
