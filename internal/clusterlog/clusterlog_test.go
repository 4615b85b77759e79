package clusterlog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func TestLine(t *testing.T) {
	tests := []struct {
		ev   cluster.Event
		want string
	}{
		{cluster.Event{Time: t0, Node: "n1", Kind: cluster.EventTransition, From: "candidate", To: "active", Reason: "chosen as next-master"},
			"2024-05-01T12:00:00.000Z n1 transition candidate -> active: chosen as next-master\n"},
		{cluster.Event{Time: t0.Add(1500 * time.Microsecond).In(time.FixedZone("x", 3600)), Node: "n2", Kind: cluster.EventFailover, From: "n1", To: "n2", Reason: "leader key free", LSN: 0x3000060},
			"2024-05-01T12:00:00.001Z n2 failover n1 -> n2: leader key free; lsn 0/3000060\n"},
		{cluster.Event{Time: t0, Node: "n1", Kind: cluster.EventPromoteHook, Reason: "hook failed\nsee output", By: "operator alice",
			Details: map[string]string{"hook": "notify", "exit": "1", "output": "no route\nto host"}},
			"2024-05-01T12:00:00.000Z n1 promote-hook hook failed see output; by operator alice; exit=1; hook=notify; output=\"no route\\nto host\"\n"},
		{cluster.Event{Time: t0, Node: "n3", Kind: cluster.EventPause, To: "paused"},
			"2024-05-01T12:00:00.000Z n3 pause - -> paused\n"},
		{cluster.Event{Time: t0}, "2024-05-01T12:00:00.000Z - - -\n"},
	}
	for _, tc := range tests {
		if got := Line(tc.ev); got != tc.want {
			t.Errorf("Line(%+v)\n got %q\nwant %q", tc.ev, got, tc.want)
		}
	}
}

func read(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func ev(i int) cluster.Event {
	return cluster.Event{Time: t0, Node: "n1", Kind: cluster.EventTransition, Reason: fmt.Sprintf("event %d", i)}
}

// TestRotation: the log appends; once logrotate renamed the file (create
// mode, or nocreate: the path is missing) the next line goes to a new file
// at the path, and the rotated one keeps what it had.
func TestRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "understudy") // created on the first line
	path := filepath.Join(dir, "cluster.log")
	l := New(path)
	defer l.Close()
	for i := range 2 {
		if err := l.Write(ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(path, path+".1"); err != nil { // logrotate, nocreate
		t.Fatal(err)
	}
	if err := l.Write(ev(2)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".2"); err != nil { // logrotate with create
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := l.Write(ev(3)); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{path + ".1": {"event 0", "event 1"}, path + ".2": {"event 2"}, path: {"event 3"}} {
		got := read(t, file)
		if len(got) != len(want) {
			t.Fatalf("%s holds %q, want %q", file, got, want)
		}
		for i := range want {
			if !strings.HasSuffix(got[i], want[i]) {
				t.Fatalf("%s holds %q, want %q", file, got, want)
			}
		}
	}
}

// TestTwoWritersShareTheFile: two daemons' logs on one path, writing at
// once, leave every line whole.
func TestTwoWritersShareTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cluster.log")
	a, b := New(path), New(path)
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	for _, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range 200 {
				if err := l.Write(ev(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	lines := read(t, path)
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "2024-05-01T12:00:00.000Z n1 transition event ") {
			t.Fatalf("a torn line: %q", line)
		}
	}
}

func TestOffAndUnwritable(t *testing.T) {
	var off *Log = New("")
	if off != nil || off.Write(ev(0)) != nil || off.Close() != nil || off.Path() != "" {
		t.Fatal("a log without a path does something")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := New(filepath.Join(file, "cluster.log")).Write(ev(0))
	if err == nil || !strings.Contains(err.Error(), "logging.dir") {
		t.Fatalf("a log under a file: %v, want an error naming logging.dir", err)
	}
}
