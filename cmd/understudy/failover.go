package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func newFailoverCmd(o *apiOpts) *cobra.Command {
	var to string
	var force, yes bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "failover --to NODE [--force] [--yes]",
		Short: "Make NODE the active when the active is gone or unhealthy (also in a paused cluster)",
		Long: `failover makes NODE the active node when the active is gone or unhealthy: in
a paused cluster (where nothing is elected), or when no standby is within
maximum_lag_on_failover. It is refused while a healthy active holds the lock:
use set-active, a switchover that loses nothing.

It shows the gap first: the last write position the former active published
against NODE's position. A failover that would lose data (NODE behind that
position, or either position unknown) is refused unless --force; with --force
it asks for confirmation on a terminal unless --yes.

NODE is not promoted directly: the cluster's next-master names it, a live
former active fences on reading it, and NODE takes the lock and waits out the
former active's lease as in any election, so there is never a second writer.
A paused cluster stays paused: its other standbys follow NODE after
understudy cluster resume.`,
		Example: `  understudy cluster failover --to n2
  understudy cluster failover --to n2 --force --yes   # accept losing what n2 lacks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("no --to; name the standby to make active, e.g. understudy cluster failover --to n2")
			}
			if timeout <= 0 || timeout > time.Hour {
				return fmt.Errorf("--timeout %v: write a duration up to 1h, like 60s", timeout)
			}
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
			plan, err := c.Failover(cmd.Context(), nodeapi.FailoverRequest{Target: to, DryRun: true}, timeout)
			if err != nil {
				return err
			}
			renderFailoverPlan(errw, plan.FailoverPlan)
			switch {
			case plan.Refused != "":
				return fmt.Errorf("failover to %s refused: %s", to, plan.Refused)
			case plan.LosesData && !force:
				return fmt.Errorf("failover to %s refused: it would lose data (%v); pass --force to accept that loss", to, plan.Gap)
			case plan.LosesData && !yes:
				if err := confirm(cmd.InOrStdin(), errw, fmt.Sprintf("make %s active and lose what it does not have?", to)); err != nil {
					return err
				}
			}
			fmt.Fprintf(errw, "failing over to %s (waiting up to %v)\n", to, timeout)
			res, err := c.Failover(cmd.Context(), nodeapi.FailoverRequest{Target: to, Force: force}, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(out, res)
			}
			fmt.Fprintf(out, "%s is the active node; the failover took %s\n", res.Active, res.Took)
			if res.Paused {
				fmt.Fprintln(out, "the cluster is still paused: the other standbys follow the new active after understudy cluster resume")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the standby to make active")
	cmd.Flags().BoolVar(&force, "force", false, "accept losing what NODE does not have (its position behind the former active's, or unknown)")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --force, do not ask for confirmation")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for NODE to become active (up to 1h)")
	return cmd
}

func renderFailoverPlan(w io.Writer, p nodeapi.FailoverPlan) {
	former := orDash(p.FormerActive)
	if p.FormerActiveState != "" {
		former += ": " + p.FormerActiveState
	}
	fmt.Fprintf(w, "former active: %s\n", former)
	if p.Paused {
		fmt.Fprintln(w, "the cluster is paused")
	}
	fmt.Fprintf(w, "gap: %v\n", p.Gap)
}

// errNotConfirmed: the operator did not say yes, or could not be asked.
var errNotConfirmed = errors.New("not confirmed; nothing was changed")

// confirm asks question on a terminal and wants "yes"; without a terminal
// it refuses, naming --yes.
func confirm(in io.Reader, w io.Writer, question string) error {
	if f, ok := in.(*os.File); !ok || !isTerminal(f) {
		return fmt.Errorf("%s: standard input is not a terminal to ask on; pass --yes to confirm", question)
	}
	fmt.Fprintf(w, "%s type yes to go on: ", question)
	line, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return errNotConfirmed
	}
	return nil
}

// isTerminal asks the terminal driver, as golang.org/x/term does: a
// character device is not enough (/dev/null is one).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
