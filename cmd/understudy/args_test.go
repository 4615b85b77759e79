package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandGuidesUsage walks the command tree: every command checks
// its arguments; one that takes arguments has an example; a missing
// argument names the usage line and the example.
func TestEveryCommandGuidesUsage(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		t.Run(c.CommandPath(), func(t *testing.T) {
			if c.Args == nil {
				t.Fatalf("%s has no Args validator: an argument it does not take would be ignored", c.CommandPath())
			}
			takesArgs := c.Args(c, []string{"x"}) == nil || c.Args(c, nil) != nil
			if !takesArgs {
				return
			}
			if c.Example == "" {
				t.Fatalf("%s takes arguments and has no Example", c.CommandPath())
			}
			for _, line := range strings.Split(c.Example, "\n") {
				if !strings.HasPrefix(strings.TrimSpace(line), c.CommandPath()+" ") {
					t.Errorf("%s: example line %q does not start with the command", c.CommandPath(), line)
				}
			}
			if err := c.Args(c, nil); err != nil {
				for _, want := range []string{"Usage: " + c.UseLine(), c.Example} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s without arguments: %q does not hold %q", c.CommandPath(), err, want)
					}
				}
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

// TestUsageMistakes runs the CLI as an operator would mistype it.
func TestUsageMistakes(t *testing.T) {
	tests := []struct {
		args []string
		says []string
	}{
		{[]string{"cluster", "stauts"}, []string{`unknown command "stauts" for "understudy cluster"`, "did you mean", "status", "Usage: understudy cluster COMMAND", "Commands: "}},
		{[]string{"clustr"}, []string{`unknown command "clustr"`, "did you mean cluster?"}},
		{[]string{"cluster", "nodes", "lst"}, []string{"did you mean get or list?"}},
		{[]string{"cluster", "nodes", "get"}, []string{"takes 1 argument, got none", "Usage: understudy cluster nodes get NAME", "Example:\n  understudy cluster nodes get mgr-2"}},
		{[]string{"cluster", "set-active", "a", "b"}, []string{"takes 1 argument, got 2 (a b)", "Example:\n  understudy cluster set-active"}},
		{[]string{"profile", "add", "prod", "--nods", "x"}, []string{"unknown flag: --nods", "Usage: understudy profile add NAME", "Example:"}},
		{[]string{"version", "now"}, []string{"takes no arguments, got 1 (now)", "Usage: understudy version"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tc.args)
			err := root.Execute()
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
	// A group called bare shows its help and succeeds.
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"cluster", "nodes"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "Available Commands") {
		t.Fatalf("cluster nodes: %v\n%s", err, out.String())
	}
}
