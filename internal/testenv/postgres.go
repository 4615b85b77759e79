package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/pgshm"
)

// pgStartTimeout bounds a start, crash recovery included, and the wait for a
// standby to stream.
const pgStartTimeout = 30 * time.Second

// PostgresOptions says where a PostgreSQL instance listens and how it is set
// up. The zero value is a primary on 127.0.0.1 on a free port.
type PostgresOptions struct {
	// Host is the loopback address it listens on; default 127.0.0.1.
	Host string
	// Port is its TCP port; default a free one on Host.
	Port int
	// Name prefixes its lines in the test log and is its application_name
	// when it streams from a primary (what synchronous_standby_names and
	// pg_stat_replication name); letters, digits, '_', '-' and '.' only.
	// Default "postgres-<port>".
	Name string
	// Settings are added to postgresql.conf, e.g. synchronous_standby_names.
	// Values are written as given: quote strings ("'on'" is fine, "'*'" is
	// needed).
	Settings map[string]string
}

// Postgres is a PostgreSQL instance of the test: a data directory and, while
// it runs, its postmaster.
type Postgres struct {
	Name    string
	Host    string
	Port    int
	DataDir string
	// SocketDir holds its Unix socket.
	SocketDir string
	// Process is the running postmaster; Start replaces it.
	Process *Process

	binDir string
	user   pgUser
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// newPostgres makes the directories of an instance; nothing runs yet.
//
// Layout: /tmp/understudy-<name>-XXXX (0755, the test's), holding data/
// (0700, PostgreSQL's user, as postgres demands) and run/ for the socket,
// apart from data/ so that pg_basebackup never meets a socket file.
func newPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	p := &Postgres{Name: opts.Name, Host: opts.Host, Port: opts.Port, binDir: postgresBinDir(t), user: postgresUser(t)}
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	if p.Port == 0 {
		p.Port = FreePortOn(t, p.Host)
	}
	if p.Name == "" {
		p.Name = "postgres-" + strconv.Itoa(p.Port)
	}
	if !validName.MatchString(p.Name) {
		t.Fatalf("postgres name %q: use letters, digits, '_', '-' and '.' only", p.Name)
	}
	base := tempDir(t, p.Name)
	p.DataDir = filepath.Join(base, "data")
	p.SocketDir = filepath.Join(base, "run")
	for dir, mode := range map[string]os.FileMode{p.DataDir: 0o700, p.SocketDir: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		p.user.own(t, dir)
	}
	return p
}

// StartPostgres creates a primary with initdb, starts it and returns when it
// answers queries over TCP. It trusts every connection from loopback,
// replication included, and is set up for streaming replication and
// pg_rewind.
func StartPostgres(t testing.TB, opts PostgresOptions) *Postgres {
	t.Helper()
	p := newPostgres(t, opts)
	p.run(t, "initdb", "-D", p.DataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	p.appendFile(t, "postgresql.conf", primaryConf+settingsConf(opts.Settings))
	// initdb -A trust trusts 127.0.0.1 only. Connections to another loopback
	// address come from 127.0.0.1 too (Linux picks the source address of
	// lo's route), but a client that binds its own source address would be
	// refused without these.
	p.appendFile(t, "pg_hba.conf", "host all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n")
	p.Start(t)
	return p
}

// primaryConf is what every instance of a test runs with. A standby copies
// it from its primary with the rest of the data directory.
const primaryConf = `
# testenv
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
# pg_rewind needs hint bits in the WAL (or data checksums).
wal_log_hints = on
# Lets a standby that was stopped for a while catch up without a slot.
wal_keep_size = '128MB'
# A test machine does not lose power under a test; fsync only slows it.
fsync = off
# A standby whose primary went away tries again every 5s by default; tests
# move primaries around and should not wait that long.
wal_retrieve_retry_interval = '500ms'
# Report replay progress every second instead of 10, so the primary's view
# of lag is fresh.
wal_receiver_status_interval = '1s'
# Several instances share the machine.
shared_buffers = '32MB'
max_connections = 50
`

func settingsConf(settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	return b.String()
}

// Start starts the postmaster on the same directory and port, after Kill or
// Stop, and returns when it answers queries, crash recovery done.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.Process != nil && p.Process.running() {
		t.Fatalf("%s: Start while its postmaster (pid %d) still runs", p.Name, p.Process.PID())
	}
	// After a SIGKILL the old postmaster's children linger for a moment;
	// postgres refuses to start while any of them is attached to the old
	// shared memory ("pre-existing shared memory block is still in use").
	if err := waitShmReleased(p.DataDir, pgStartTimeout); err != nil {
		t.Fatal(err)
	}
	// The postgres binary itself, not pg_ctl: the PID the test holds is
	// then the postmaster's. Address, port and socket are given on the
	// command line, which wins over the configuration files, because a
	// standby's files are a copy of its primary's.
	cmd := p.user.command(context.Background(), filepath.Join(p.binDir, "postgres"), "-D", p.DataDir,
		"-c", "listen_addresses="+p.Host,
		"-c", "port="+strconv.Itoa(p.Port),
		"-c", "unix_socket_directories="+p.SocketDir,
		"-c", "cluster_name="+p.Name) // shows in ps, to tell instances apart
	cmd.Dir = p.SocketDir
	// SIGINT is PostgreSQL's fast shutdown. SIGTERM is its smart shutdown,
	// which waits for every client to disconnect: one connection a test
	// left open would hold it for the whole stop timeout.
	proc, err := startProcess(t, p.Name, cmd, syscall.SIGINT)
	if err != nil {
		t.Fatal(err)
	}
	p.Process = proc
	waitRunning(t, pgStartTimeout, []*Process{proc}, func() error {
		var one int
		return p.queryRow("select 1", &one)
	})
}

// Stop shuts the postmaster down (fast shutdown, SIGKILL after 10s).
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err := p.Process.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Kill sends SIGKILL to the postmaster, as a crash would, and returns once
// its children have gone too.
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	if err := p.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := waitShmReleased(p.DataDir, stopGrace); err != nil {
		t.Fatal(err)
	}
}

// Addr is "host:port".
func (p *Postgres) Addr() string { return addr(p.Host, p.Port) }

// ConnString is a pgx/libpq connection string for user and database
// postgres over TCP.
func (p *Postgres) ConnString() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5", p.Host, p.Port)
}

// Conn opens a connection, closed at the end of the test.
func (p *Postgres) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.ConnString())
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	t.Cleanup(func() {
		// A context of its own: the test's may be gone by now.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}

// queryRow runs one query on a connection of its own, for waits that must
// survive restarts between attempts.
func (p *Postgres) queryRow(sql string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.ConnString())
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %s: %w", p.Name, sql, err)
	}
	return nil
}

// run runs one of PostgreSQL's programs to completion as its user.
func (p *Postgres) run(t testing.TB, prog string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.user.command(ctx, filepath.Join(p.binDir, prog), args...)
	cmd.Dir = p.SocketDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("[%s] %s: %v\n%s", p.Name, strings.Join(cmd.Args, " "), err, out)
	}
}

func (p *Postgres) appendFile(t testing.TB, name, text string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(p.DataDir, name), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitShmReleased waits until no process is attached to the shared memory
// that the data directory's postmaster.pid names: a postmaster's children
// are attached to it until they exit. No postmaster.pid, or a segment that
// is gone, means there is nothing to wait for.
func waitShmReleased(dataDir string, timeout time.Duration) error {
	pid, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	shmid := pgshm.SegmentOf(string(pid))
	if shmid == "" {
		return nil
	}
	return WaitFor(context.Background(), timeout, func() error {
		n, err := pgshm.Attached(shmid)
		if err != nil || n == 0 {
			return err
		}
		return fmt.Errorf("%d processes still attached to shared memory %s of %s", n, shmid, dataDir)
	})
}
