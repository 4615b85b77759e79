package systemd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestUnitRunsTheGivenCommand: Unit replaces the packaged ExecStart= and
// leaves every other line as shipped.
func TestUnitRunsTheGivenCommand(t *testing.T) {
	shipped, err := os.ReadFile("understudy-handler-runner.service")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unit("understudy-handler-runner", Spec{Argv: []string{"/opt/understudy/bin/understudy", "handler-runner", "--config", "/srv/my node/understudy.hcl"}})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(shipped),
		"ExecStart=/usr/bin/understudy handler-runner --config /etc/understudy/understudy.hcl",
		`ExecStart=/opt/understudy/bin/understudy handler-runner --config "/srv/my node/understudy.hcl"`, 1)
	if string(got) != want {
		t.Fatalf("rendered unit:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Unit("understudy-nothing", Spec{Argv: []string{"/bin/true"}}); err == nil {
		t.Fatal("Unit of a process with no unit: no error")
	}
	if _, err := Unit("understudy-consul", Spec{Writable: []string{"/var/lib/understudy/consul"}}); err == nil {
		t.Fatal("Unit with no command: no error")
	}
	if _, err := Unit("understudy-consul", Spec{Argv: []string{"/bin/consul"}}); err == nil {
		t.Fatal("Unit of a sandboxed process with no writable path: no error")
	}
	if _, err := Unit("understudy-handler-runner", Spec{Argv: []string{"/bin/understudy"}, Writable: []string{"/srv"}}); err == nil {
		t.Fatal("Unit given writable paths for a unit without ReadWritePaths=: no error")
	}
}

// TestQuoteAsSystemdReadsIt: arguments that systemd would split, expand or
// cut (spaces, quotes, backslashes, %, $, a semicolon, an empty one) reach
// the process as written, on a real systemd.
func TestQuoteAsSystemdReadsIt(t *testing.T) {
	h := testenv.BootSystemd(t, "quote")
	out := filepath.Join(testenv.TempDir(t, "quote"), "argv")
	args := []string{"plain", "a b", `q"u'o`, "tab\there", `back\slash`, "50%", "%n", "$HOME", "${HOME}", "x;y", ";", "", "new\nline"}
	argv := append([]string{"/bin/sh", "-c", `for a in "$@"; do printf '%s\0' "$a"; done > "$0"`, out}, args...)
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = Quote(a)
	}
	unit := "[Service]\nType=oneshot\nExecStart=" + strings.Join(words, " ") + "\n"
	if err := os.WriteFile(filepath.Join(h.UnitDir(), "quote.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Run(t, "systemctl", "daemon-reload")
	h.Run(t, "systemctl", "start", "quote.service")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, h.Journal("quote.service", 20))
	}
	got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if !slices.Equal(got, args) {
		t.Fatalf("the unit's process got %q\nwant %q\nExecStart=%s", got, args, strings.Join(words, " "))
	}
}

// TestUnitWritablePathsAndSandbox: ReadWritePaths= names the node's own
// directories, and a node under /tmp or /home is not hidden from itself.
func TestUnitWritablePathsAndSandbox(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		writable []string
		reads    []string
		want     []string
	}{
		{"default paths keep the sandbox",
			[]string{"/usr/lib/understudy/bin/consul", "agent", "-config-dir=/var/lib/understudy/consul/config"},
			[]string{"/var/lib/understudy/consul"},
			[]string{"/etc/understudy/tls/node.pem"},
			[]string{"ReadWritePaths=/var/lib/understudy/consul\n", "PrivateTmp=yes\n", "ProtectHome=yes\n"}},
		{"a path it reads under /tmp",
			[]string{"/usr/lib/understudy/bin/consul", "agent", "-config-dir=/var/lib/understudy/consul/config"},
			[]string{"/var/lib/understudy/consul"},
			[]string{"/tmp/shared"},
			[]string{"ReadWritePaths=/var/lib/understudy/consul\n", "PrivateTmp=no\n", "ProtectHome=yes\n"}},
		{"a node under /tmp",
			[]string{"/usr/lib/understudy/bin/consul", "agent", "-config-dir=/tmp/n1/consul/config"},
			[]string{"/tmp/n1/consul"},
			nil,
			[]string{"ReadWritePaths=/tmp/n1/consul\n", "PrivateTmp=no\n", "ProtectHome=yes\n"}},
		{"a binary under /root, a path with a space",
			[]string{"/root/bin/consul", "agent", "-config-dir=/srv/my node/consul/config"},
			[]string{"/srv/my node/consul", "/srv/b"},
			nil,
			[]string{`ReadWritePaths="/srv/my node/consul" /srv/b` + "\n", "PrivateTmp=yes\n", "ProtectHome=no\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Unit("understudy-consul", Spec{Argv: tc.argv, Writable: tc.writable, Reads: tc.reads})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(got), w) {
					t.Errorf("rendered unit lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
