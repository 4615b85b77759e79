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
	root.AddCommand(newVersionCmd(), newConfigCmd(), newCheckRunnerCmd(), newHandlerRunnerCmd(), newDevCmd(),
		newClusterCmd(), newProfileCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print understudy's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "understudy", version)
		},
	}
}

// addConfigFlag adds --config to a command that reads the node's file.
func addConfigFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "config", defaultConfigPath, "the node's configuration file (HCL)")
}

// daemonSetup loads the configuration and returns a logger and a context
// that ends on SIGTERM or SIGINT: the daemon returns when it ends.
func daemonSetup(path string) (*config.Config, *slog.Logger, context.Context, context.CancelFunc, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	log := logging.New(os.Stderr, os.Getenv("UNDERSTUDY_LOG_LEVEL"))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	return cfg, log, ctx, cancel, nil
}

// newServices is the node's service manager, shared in shape by the two
// daemons that use it: the handler-runner supervises `command` services and
// the check-runner reads their state from the same directory.
func newServices(cfg *config.Config, log *slog.Logger) *services.Manager {
	return services.NewManager(services.WithLogger(log), services.WithStateDir(filepath.Join(cfg.Node.DataDir, "services")))
}
