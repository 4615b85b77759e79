package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// A missing or mistyped argument or flag names the command's usage line and
// an example, so that the fix is on the screen (the root silences cobra's
// full usage text, which buries the one line that matters).

// usageError is msg followed by cmd's usage line, its example and where
// its help is.
func usageError(cmd *cobra.Command, msg string) error {
	var b strings.Builder
	if cmd.HasAvailableSubCommands() {
		var subs []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				subs = append(subs, c.Name())
			}
		}
		fmt.Fprintf(&b, "%s\nUsage: %s COMMAND\nCommands: %s", msg, cmd.CommandPath(), strings.Join(subs, ", "))
	} else {
		fmt.Fprintf(&b, "%s\nUsage: %s", msg, cmd.UseLine())
	}
	if cmd.Example != "" {
		fmt.Fprintf(&b, "\nExample:\n%s", cmd.Example)
	}
	fmt.Fprintf(&b, "\nRun '%s --help' for more.", cmd.CommandPath())
	return errors.New(b.String())
}

// exactArgs is cobra.ExactArgs saying what was given (guideUsage adds the
// usage and the example to every validator's error).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%s takes %s, got %s", cmd.CommandPath(), count(n), given(args))
	}
}

// minimumArgs is cobra.MinimumNArgs saying what was given.
func minimumArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= n {
			return nil
		}
		return fmt.Errorf("%s takes at least %s, got %s", cmd.CommandPath(), count(n), given(args))
	}
}

// noArgs is cobra.NoArgs saying what was given; on a command with
// subcommands an argument is an unknown subcommand, and the error suggests
// the nearest ones (cobra suggests only at the root).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%s takes no arguments, got %s", cmd.CommandPath(), given(args))
}

func count(n int) string {
	if n == 1 {
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}

func given(args []string) string {
	if len(args) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (%s)", len(args), strings.Join(args, " "))
}

// suggestionDistance is the Levenshtein distance within which an unknown
// subcommand is answered with the near ones ("stauts" -> status).
const suggestionDistance = 2

// guideUsage makes every command of the tree answer usage mistakes with its
// usage line and example: whatever its Args validator says (cobra's own, a
// command's, or the ones above) is followed by them; a command that only
// groups others (cluster, nodes, profile) runs its help when called bare and
// names an unknown subcommand with suggestions (cobra would print the
// group's help and exit 0); a mistyped flag shows the usage and example.
func guideUsage(root *cobra.Command) {
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd, err.Error())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			c.SuggestionsMinimumDistance = suggestionDistance
			if !c.Runnable() {
				c.Args = noArgs
				c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
			}
		}
		if check := c.Args; check != nil {
			c.Args = func(cmd *cobra.Command, args []string) error {
				if err := check(cmd, args); err != nil {
					return usageError(cmd, err.Error())
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
