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
	got, err := Unit("understudy-handler-runner", []string{"/opt/understudy/bin/understudy", "handler-runner", "--config", "/srv/my node/understudy.hcl"})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(shipped),
		"ExecStart=/usr/bin/understudy handler-runner --config /etc/understudy/understudy.hcl",
		`ExecStart=/opt/understudy/bin/understudy handler-runner --config "/srv/my node/understudy.hcl"`, 1)
	if string(got) != want {
		t.Fatalf("rendered unit:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Unit("understudy-nothing", []string{"/bin/true"}); err == nil {
		t.Fatal("Unit of a process with no unit: no error")
	}
	if _, err := Unit("understudy-consul", nil); err == nil {
		t.Fatal("Unit with no command: no error")
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
