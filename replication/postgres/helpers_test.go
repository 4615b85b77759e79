package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// testConf is added to understudy.conf in tests.
const testConf = `# tests
# A test machine does not lose power under a test; fsync only slows it.
fsync = off
# Several instances share the machine. (Not max_connections: a standby
# refuses to run with less than the value in the control file.)
shared_buffers = '16MB'
# A standby whose upstream went away tries again every 5s by default.
wal_retrieve_retry_interval = '500ms'
`

// waitTimeout bounds each wait of these tests for replication to happen.
const waitTimeout = 30 * time.Second

// pgBinDir is where PostgreSQL 15's programs are, as Debian installs them;
// $UNDERSTUDY_PG_BIN_DIR overrides it.
func pgBinDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("UNDERSTUDY_PG_BIN_DIR")
	if dir == "" {
		dir = "/usr/lib/postgresql/15/bin"
	}
	for _, prog := range []string{"initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata"} {
		if _, err := os.Stat(filepath.Join(dir, prog)); err != nil {
			t.Fatalf("PostgreSQL 15 not found: no %s in %s; install it with: make apt (apt-get install -y postgresql-15)", prog, dir)
		}
	}
	return dir
}

// testDir makes /tmp/understudy-pg-<name>-XXXX for an instance, the parent
// of its data directory, owned by the postgres user when the test is root
// (a test's own temporary directory, under /root, is out of that user's
// reach), and removes it at the end. Registered before the instance's stop,
// it runs after it.
func testDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "understudy-pg-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := lookupOSUser("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.chown(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTestInstance is an instance on host and a free port whose data
// directory does not exist yet. Its postmaster, if any, is stopped by PID at
// the end of the test.
func newTestInstance(t *testing.T, name, host string) *Instance {
	t.Helper()
	cfg := config.Postgres{
		BinDir: pgBinDir(t), DataDir: filepath.Join(testDir(t, name), "data"),
		Host: host, Port: testenv.FreePortOn(t, host),
		User: "postgres", Database: "postgres", OSUser: "postgres", ConnectTimeout: 2 * time.Second,
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	i := NewInstance(cfg, name, log)
	i.noSync = true
	i.extraConf = testConf
	t.Cleanup(func() { stopForGood(t, i) })
	return i
}

// stopForGood stops the instance's postmaster: Stop(immediate), then SIGKILL
// to the PID it ran with should that fail. On failure it prints the tail of
// the server log.
func stopForGood(t *testing.T, i *Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i.Client().Close()
	pid, running, err := i.Running(ctx)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if err := i.Stop(ctx, "immediate"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if running && processAlive(pid) {
		t.Errorf("cleanup: postmaster %d still runs after Stop; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := testenv.WaitFor(ctx, 10*time.Second, func() error {
			if processAlive(pid) {
				return fmt.Errorf("postmaster %d still runs", pid)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		if b, err := os.ReadFile(i.LogFile()); err == nil {
			t.Logf("[%s] tail of %s:\n%s", i.node, i.LogFile(), strings.Join(lastLines(string(b), 40), "\n"))
		}
	}
}

// testCtx bounds one test's operations.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func upstream(i *Instance) Upstream { return Upstream{Host: i.cfg.Host, Port: i.cfg.Port} }

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// query runs sql on a connection of its own and scans one row into dest.
func query(i *Instance, sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return i.withConn(ctx, func(conn *pgx.Conn) error {
		if len(dest) == 0 {
			_, err := conn.Exec(ctx, sql)
			return err
		}
		return conn.QueryRow(ctx, sql).Scan(dest...)
	})
}

func mustExec(t *testing.T, i *Instance, sql string) {
	t.Helper()
	if err := query(i, sql); err != nil {
		t.Fatalf("[%s] %s: %v", i.node, sql, err)
	}
}

// waitStreaming waits until standby's WAL receiver streams from primary.
func waitStreaming(t *testing.T, standby, primary *Instance) {
	t.Helper()
	testenv.Eventually(t, waitTimeout, func() error { return streamingFrom(standby, primary) })
}

func streamingFrom(standby, primary *Instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := standby.Client().State(ctx)
	if err != nil {
		return err
	}
	switch r := st.Receiver; {
	case !st.InRecovery:
		return fmt.Errorf("[%s] not in recovery", standby.node)
	case r == nil:
		return fmt.Errorf("[%s] no WAL receiver", standby.node)
	case r.Status != "streaming" || r.SenderHost != primary.cfg.Host || r.SenderPort != primary.cfg.Port:
		return fmt.Errorf("[%s] WAL receiver %s from %s:%d, want streaming from %s",
			standby.node, r.Status, r.SenderHost, r.SenderPort, upstream(primary).Addr())
	}
	return nil
}

// waitRow waits until table t on i holds a row v = value.
func waitRow(t *testing.T, i *Instance, value string) {
	t.Helper()
	testenv.Eventually(t, waitTimeout, func() error {
		var n int
		if err := query(i, "select count(*) from t where v = '"+value+"'", &n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("[%s] %d rows %q", i.node, n, value)
		}
		return nil
	})
}

// hasRow says whether table t on i holds a row v = value.
func hasRow(t *testing.T, i *Instance, value string) bool {
	t.Helper()
	var n int
	must(t, query(i, "select count(*) from t where v = '"+value+"'", &n))
	return n > 0
}

// startPair makes primary a primary and standby its streaming standby, with
// a slot on the primary.
func startPair(t *testing.T, ctx context.Context, primary, standby *Instance) {
	t.Helper()
	must(t, primary.Init(ctx))
	must(t, primary.StartPrimary(ctx))
	must(t, primary.EnsureSlots(ctx, []string{primary.node, standby.node}))
	must(t, standby.Clone(ctx, upstream(primary), nil))
	up := upstream(primary)
	must(t, standby.StartStandby(ctx, &up))
	waitStreaming(t, standby, primary)
}

// slotActive says whether the slot of node on i is in use.
func slotActive(i *Instance, node string) error {
	var active bool
	err := query(i, "select active from pg_replication_slots where slot_name = '"+SlotName(node)+"'", &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("[%s] no slot %s", i.node, SlotName(node))
	}
	if err == nil && !active {
		err = fmt.Errorf("[%s] slot %s not active", i.node, SlotName(node))
	}
	return err
}
