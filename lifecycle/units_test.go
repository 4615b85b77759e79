package lifecycle

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/replication/files"
)

// TestSystemdUnitsRunWhatLifecycleRuns: the units in packaging/systemd
// start each of the node's processes with the command `cluster start` and
// `cluster join` supervise for a node with the default paths, so an
// operator who switches to the units runs the same thing.
func TestSystemdUnitsRunWhatLifecycleRuns(t *testing.T) {
	cfg := config.Default()
	cfg.Path = config.DefaultPath
	o := Options{Consul: "/usr/lib/understudy/bin/consul", Understudy: "/usr/bin/understudy"}
	want := map[string][]string{
		ConsulProcess:        consulService(layout{cfg.Node.DataDir}, o).Command,
		SyncthingProcess:     files.Command("/usr/lib/understudy/bin/syncthing", cfg.SyncthingHome()),
		CheckRunnerProcess:   {o.Understudy, "check-runner", "--config", cfg.Path},
		HandlerRunnerProcess: {o.Understudy, "handler-runner", "--config", cfg.Path},
		ConsulWatcherProcess: {o.Understudy, "consul-watcher", "--config", cfg.Path},
	}
	for _, name := range ProcessNames {
		path := filepath.Join("..", "packaging", "systemd", name+".service")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("no unit for the process %s: %v", name, err)
			continue
		}
		var exec []string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				exec = strings.Fields(v)
			}
		}
		if !slices.Equal(exec, want[name]) {
			t.Errorf("%s: ExecStart=%q, lifecycle runs %q", path, exec, want[name])
		}
	}
	// daemonServices is what lifecycle really starts: the same argv for the
	// daemons (Syncthing's needs a prepared home, compared above).
	svcs, err := daemonServices(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if !slices.Equal(s.Command, want[s.Name]) {
			t.Errorf("daemonServices runs %s as %q, the unit as %q", s.Name, s.Command, want[s.Name])
		}
	}
}

// TestConsulUnitRunsAsConsulUser: the user lifecycle gives the agent's
// directory to is the one its unit runs as.
func TestConsulUnitRunsAsConsulUser(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "packaging", "systemd", ConsulProcess+".service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nUser="+ConsulUser+"\n") {
		t.Fatalf("the Consul unit does not run as %s", ConsulUser)
	}
}

// TestFindPrefersThePackagesPrograms: an installed understudy runs the
// pinned Consul and Syncthing of its package, not another consul beside it
// in /usr/bin; a build in bin/ runs the ones beside it.
func TestFindPrefersThePackagesPrograms(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"usr/bin/understudy", "usr/bin/consul", "usr/lib/understudy/bin/consul", "usr/lib/understudy/bin/syncthing", "bin/understudy", "bin/consul"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ understudy, want string }{
		{"usr/bin/understudy", "usr/lib/understudy/bin/consul"},
		{"bin/understudy", "bin/consul"},
	} {
		got, err := FindConsul(filepath.Join(root, tc.understudy))
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("FindConsul beside %s: %q (%v), want %s", tc.understudy, got, err, tc.want)
		}
	}
	if got, err := FindSyncthing(filepath.Join(root, "usr/bin/understudy")); err != nil || got != filepath.Join(root, "usr/lib/understudy/bin/syncthing") {
		t.Errorf("FindSyncthing: %q (%v)", got, err)
	}
}
