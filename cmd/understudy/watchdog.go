package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/fence"
	"github.com/understudy-ha/understudy/internal/logging"
)

func newWatchdogCmd() *cobra.Command {
	var lease, pgdata string
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "watchdog --lease FILE --pgdata DIR",
		Short: "Stop the active node's PostgreSQL when its lease runs out (started by the handler-runner)",
		Long: `watchdog is the handler-runner's second line of fencing: a small process
that shares nothing with the handler-runner but the lease file. Every --poll it
compares the lease with the clock; once the lease has run out and the
handler-runner has not fenced (it hangs, or is gone), it stops PostgreSQL with
an immediate shutdown, so the old active takes no write after a new one may be
promoted. The handler-runner starts it (as a supervised program under
<node.data_dir>/fence) and restarts it; it exits on its own when there is
nothing to guard and no handler-runner.`,
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := fence.OpenLease(lease)
			if err != nil {
				return err
			}
			defer l.Close()
			log := logging.New(os.Stderr, os.Getenv("UNDERSTUDY_LOG_LEVEL")).With("component", "watchdog")
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			w := &fence.Watchdog{Lease: l, DataDir: pgdata, Poll: poll, Log: log, Idle: 30 * time.Second}
			return w.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&lease, "lease", "", "the lease file the handler-runner writes")
	cmd.Flags().StringVar(&pgdata, "pgdata", "", "PostgreSQL's data directory")
	cmd.Flags().DurationVar(&poll, "poll", 25*time.Millisecond, "how often to compare the lease with the clock")
	_ = cmd.MarkFlagRequired("lease")
	_ = cmd.MarkFlagRequired("pgdata")
	return cmd
}
