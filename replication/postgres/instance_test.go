package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// A new cluster started as a standby with no upstream waits read-only; a
// promotion makes it a writable primary on timeline 2; Stop ends the
// postmaster and Running sees it go.
func TestInitStandbyPromote(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.11")

	if a.HasData() {
		t.Fatal("HasData before Init")
	}
	must(t, a.Init(ctx))
	if !a.HasData() {
		t.Fatal("no HasData after Init")
	}
	checkOwner(t, a.DataDir(), 0o700)
	if err := a.Init(ctx); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second Init: %v, want a refusal of a non-empty directory", err)
	}
	cd, err := a.ControlData(ctx)
	must(t, err)
	if cd.State != "shut down" || cd.Timeline != 1 || !cd.DataChecksums {
		t.Fatalf("control data after initdb: %+v", cd)
	}

	must(t, a.StartStandby(ctx, nil))
	pid, running, err := a.Running(ctx)
	must(t, err)
	if !running || pid <= 0 || !processAlive(pid) {
		t.Fatalf("Running = %d, %v after start", pid, running)
	}
	st, err := a.Client().State(ctx)
	must(t, err)
	if !st.InRecovery || st.Receiver != nil {
		t.Fatalf("standby without upstream: state %+v", st)
	}
	if err := query(a, "create table t (v text)"); err == nil {
		t.Fatal("a standby took a write")
	}
	if err := a.StartStandby(ctx, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("StartStandby while running: %v, want ErrRunning", err)
	}

	must(t, a.Promote(ctx))
	st, err = a.Client().State(ctx)
	must(t, err)
	if st.InRecovery || st.Timeline != 2 {
		t.Fatalf("after Promote: state %+v, want a primary on timeline 2", st)
	}
	mustExec(t, a, "create table t (v text)")
	mustExec(t, a, "insert into t values ('one')")
	must(t, a.Promote(ctx)) // a primary already: nothing to do

	must(t, a.Stop(ctx, "fast"))
	if _, running, err := a.Running(ctx); err != nil || running {
		t.Fatalf("Running after Stop: %v, %v", running, err)
	}
	if processAlive(pid) {
		t.Fatalf("postmaster %d alive after Stop", pid)
	}
	must(t, a.Stop(ctx, "fast")) // not running: no error
	cd, err = a.ControlData(ctx)
	must(t, err)
	if cd.State != "shut down" || cd.Timeline != 2 {
		t.Fatalf("control data after a clean stop: %+v", cd)
	}
}

// checkOwner checks that path is the postgres user's, with mode, when the
// test is root.
func checkOwner(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != mode {
		t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
	u, err := lookupOSUser("postgres")
	must(t, err)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid {
		t.Errorf("%s belongs to uid %d, want %d", path, st.Uid, u.uid)
	}
}

// A clone started as a standby streams from the primary through its slot and
// sees the primary's writes.
func TestStreamingStandby(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.21")
	b := newTestInstance(t, "b", "127.0.0.22")
	startPair(t, ctx, a, b)

	testenv.Eventually(t, waitTimeout, func() error { return slotActive(a, "b") })
	mustExec(t, a, "create table t (v text)")
	mustExec(t, a, "insert into t values ('one')")
	waitRow(t, b, "one")
	var app string
	must(t, query(a, "select application_name from pg_stat_replication", &app))
	if app != "b" {
		t.Errorf("standby streams as %q, want its member name", app)
	}
}

// The failover path of a former primary: the standby is promoted without the
// primary's last write, the old primary crashes (immediate stop), is rewound
// to the new primary's history and streams from it on the new timeline; the
// write the new primary never had is gone from it.
func TestFailoverRewind(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.31")
	b := newTestInstance(t, "b", "127.0.0.32")
	startPair(t, ctx, a, b)
	mustExec(t, a, "create table t (v text)")
	mustExec(t, a, "insert into t values ('before')")
	waitRow(t, b, "before")

	must(t, b.Stop(ctx, "fast"))
	mustExec(t, a, "insert into t values ('lost')") // b never receives it
	must(t, b.StartStandby(ctx, nil))
	must(t, b.Promote(ctx))
	must(t, b.EnsureSlots(ctx, []string{"a", "b"}))
	mustExec(t, b, "insert into t values ('after')")

	must(t, a.Stop(ctx, "immediate"))
	cd, err := a.ControlData(ctx)
	must(t, err)
	if cd.Clean() {
		t.Fatalf("control data after an immediate stop: %+v, want an unclean state", cd)
	}
	kept, err := a.Rewind(ctx, upstream(b))
	must(t, err)
	// The write b never had is kept aside, readable, before pg_rewind
	// discarded it.
	if kept.Dir == "" || kept.Commits < 1 || kept.To <= kept.From || kept.Timeline != 1 {
		t.Fatalf("kept %+v; want the diverged WAL of timeline 1 with the lost commit", kept)
	}
	if got := KeptAside(a.DataDir()); len(got) != 1 || got[0].Dir != kept.Dir {
		t.Fatalf("KeptAside = %+v, want the one kept", got)
	}
	dump, _ := exec.Command(filepath.Join(a.cfg.BinDir, "pg_waldump"), "-p", kept.Dir, "-t", "1", "-s", kept.From.String()).CombinedOutput()
	if !strings.Contains(string(dump), "INSERT") || !strings.Contains(string(dump), "COMMIT") {
		t.Fatalf("%s does not show the lost insert:\n%s", kept.Inspect(), dump)
	}
	up := upstream(b)
	must(t, a.StartStandby(ctx, &up))
	waitStreaming(t, a, b)
	waitRow(t, a, "after")
	if hasRow(t, a, "lost") {
		t.Error("the rewound standby still has the write the new primary never had")
	}
	st, err := a.Client().State(ctx)
	must(t, err)
	if st.Timeline != 2 {
		t.Errorf("rewound standby receives timeline %d, want 2", st.Timeline)
	}
	testenv.Eventually(t, waitTimeout, func() error { return slotActive(b, "a") })
	if !strings.Contains(readFile(t, filepath.Join(a.DataDir(), confFile)), "port = "+fmt.Sprint(a.cfg.Port)) {
		t.Error("understudy.conf after rewind is not the node's own")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// Clone over an existing cluster moves it aside, never deletes it; a clone
// that fails leaves the data directory as it was.
func TestCloneKeepsOldDirectory(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.41")
	b := newTestInstance(t, "b", "127.0.0.42")
	must(t, a.Init(ctx))
	must(t, a.StartPrimary(ctx))
	must(t, b.Init(ctx))
	primary, err := a.ControlData(ctx)
	must(t, err)
	own, err := b.ControlData(ctx)
	must(t, err)

	var calls, lastDone, lastTotal int64
	must(t, b.Clone(ctx, upstream(a), func(done, total int64) { calls, lastDone, lastTotal = calls+1, done, total }))
	if calls == 0 || lastTotal == 0 || lastDone != lastTotal {
		t.Errorf("progress: %d calls, last %d of %d bytes; want a final report of all bytes", calls, lastDone, lastTotal)
	}
	clone, err := b.ControlData(ctx)
	must(t, err)
	if clone.SystemIdentifier != primary.SystemIdentifier {
		t.Fatalf("clone has system identifier %d, the primary %d", clone.SystemIdentifier, primary.SystemIdentifier)
	}
	checkOwner(t, b.DataDir(), 0o700)
	if _, err := os.Stat(filepath.Join(b.DataDir(), "standby.signal")); err != nil {
		t.Errorf("a clone must start as a standby: %v", err)
	}
	old := asideDirs(t, b)
	if len(old) != 1 {
		t.Fatalf("old data directories %q, want one", old)
	}
	kept, err := b.controlData(ctx, old[0])
	must(t, err)
	if kept.SystemIdentifier != own.SystemIdentifier {
		t.Errorf("%s holds cluster %d, want the one b had (%d)", old[0], kept.SystemIdentifier, own.SystemIdentifier)
	}

	nowhere := Upstream{Host: "127.0.0.43", Port: testenv.FreePortOn(t, "127.0.0.43")}
	err = b.Clone(ctx, nowhere, nil)
	if err == nil || !strings.Contains(err.Error(), nowhere.Addr()) {
		t.Fatalf("Clone from nowhere: %v, want an error naming %s", err, nowhere.Addr())
	}
	after, err := b.ControlData(ctx)
	must(t, err)
	if after.SystemIdentifier != clone.SystemIdentifier {
		t.Errorf("a failed clone changed the data directory")
	}
	if got := asideDirs(t, b); !slices.Equal(got, old) {
		t.Errorf("old data directories after a failed clone: %q, want %q", got, old)
	}
	if _, err := os.Stat(b.DataDir() + ".clone"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed clone left %s.clone: %v", b.DataDir(), err)
	}
}

func asideDirs(t *testing.T, i *Instance) []string {
	t.Helper()
	old, err := filepath.Glob(i.DataDir() + ".old-*")
	must(t, err)
	return old
}

// A planned switchover: the primary stops cleanly, one standby is promoted,
// the running sibling is re-pointed with a reload and the stopped old primary
// follows without a rewind.
func TestFollow(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.51")
	b := newTestInstance(t, "b", "127.0.0.52")
	c := newTestInstance(t, "c", "127.0.0.53")
	startPair(t, ctx, a, b)
	must(t, a.EnsureSlots(ctx, []string{"a", "b", "c"}))
	must(t, c.Clone(ctx, upstream(a), nil))
	upA := upstream(a)
	must(t, c.StartStandby(ctx, &upA))
	waitStreaming(t, c, a)
	mustExec(t, a, "create table t (v text)")
	mustExec(t, a, "insert into t values ('one')")
	waitRow(t, b, "one")
	waitRow(t, c, "one")

	must(t, a.Stop(ctx, "fast")) // the standbys get everything, shutdown checkpoint included
	must(t, b.Promote(ctx))
	must(t, b.EnsureSlots(ctx, []string{"a", "b", "c"}))
	mustExec(t, b, "insert into t values ('two')")

	cpid, _, err := c.Running(ctx)
	must(t, err)
	must(t, c.Follow(ctx, upstream(b)))
	waitStreaming(t, c, b)
	waitRow(t, c, "two")
	if pid, _, _ := c.Running(ctx); pid != cpid {
		t.Errorf("a running standby was restarted to follow (pid %d, then %d); a reload does", cpid, pid)
	}

	must(t, a.Follow(ctx, upstream(b)))
	waitStreaming(t, a, b)
	waitRow(t, a, "two")
	for _, s := range []*Instance{a, c} {
		st, err := s.Client().State(ctx)
		must(t, err)
		if st.Timeline != 2 {
			t.Errorf("[%s] receives timeline %d, want 2", s.node, st.Timeline)
		}
	}
}

// On a primary: synchronous_standby_names as asked, and the slots follow the
// member list, leaving slots understudy did not make alone.
func TestPrimarySettings(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.61")
	must(t, a.Init(ctx))
	must(t, a.StartPrimary(ctx))

	must(t, a.SetSynchronousStandbys(ctx, []string{"b", "mgr-3"}))
	checkSetting(t, a, "synchronous_standby_names", `FIRST 1 ("b", "mgr-3")`)
	must(t, a.SetSynchronousStandbys(ctx, nil))
	checkSetting(t, a, "synchronous_standby_names", "")

	mustExec(t, a, "select pg_create_physical_replication_slot('backup_tool')")
	must(t, a.EnsureSlots(ctx, []string{"a", "b", "c"}))
	must(t, a.EnsureSlots(ctx, []string{"a", "b", "c"})) // idempotent
	checkSlots(t, a, "backup_tool", SlotName("b"), SlotName("c"))
	must(t, a.EnsureSlots(ctx, []string{"a", "b"}))
	checkSlots(t, a, "backup_tool", SlotName("b"))
}

func checkSetting(t *testing.T, i *Instance, name, want string) {
	t.Helper()
	testenv.Eventually(t, waitTimeout, func() error {
		var got string
		if err := query(i, "show "+name, &got); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s = %q, want %q", name, got, want)
		}
		return nil
	})
}

func checkSlots(t *testing.T, i *Instance, want ...string) {
	t.Helper()
	var got []string
	must(t, query(i, "select coalesce(array_agg(slot_name::text order by slot_name), '{}') from pg_replication_slots", &got))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("slots %q, want %q", got, want)
	}
}

// A lock file left by a postmaster that is now a zombie, which an init that
// does not reap leaves behind, must not keep the server from starting:
// PostgreSQL's own check (kill 0) takes a zombie for a live postmaster.
func TestStartOverAZombiesLockFile(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.19")
	must(t, a.Init(ctx))

	// A zombie of our own: a child that exits and is not waited for yet.
	z := exec.Command("/bin/true")
	must(t, z.Start())
	t.Cleanup(func() { _ = z.Wait() })
	testenv.Eventually(t, 5*time.Second, func() error {
		if processAlive(z.Process.Pid) {
			return fmt.Errorf("pid %d not a zombie yet", z.Process.Pid)
		}
		return nil
	})
	pidFile := filepath.Join(a.DataDir(), "postmaster.pid")
	must(t, os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n%s\n1700000000\n5432\n\n127.0.0.19\n  0 0\nready   \n", z.Process.Pid, a.DataDir())), 0o600))
	if _, running, err := a.Running(ctx); err != nil || running {
		t.Fatalf("Running with a zombie's lock file = %v, %v; want not running", running, err)
	}
	must(t, a.StartStandby(ctx, nil))
	pid, running, err := a.Running(ctx)
	if err != nil || !running || pid == z.Process.Pid {
		t.Fatalf("after StartStandby: pid %d running %v (%v)", pid, running, err)
	}
	stopForGood(t, a)
}

// TestClientSurvivesARestart: a client whose connection a restart of the
// server ended answers from the restarted server on its next call, rather
// than failing with the old connection's "terminating connection due to
// administrator command" (a check-runner reported a standby restarted a
// second before as failing, and Consul ended its session).
func TestClientSurvivesARestart(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "restarted", "127.0.0.29")
	must(t, a.Init(ctx))
	must(t, a.StartStandby(ctx, nil))
	c := a.Client()
	must(t, c.Ping(ctx))
	must(t, a.Stop(ctx, "fast"))
	must(t, a.StartStandby(ctx, nil))
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("the first call after a restart: %v", err)
	}
	must(t, a.Stop(ctx, "fast"))
	if err := c.Ping(ctx); err == nil {
		t.Fatal("a call to a stopped server succeeded")
	}
}
