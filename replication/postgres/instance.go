package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/fence"
)

// ErrRunning is returned (wrapped) by the operations that need the server
// stopped (Init, Clone, Rewind, StartPrimary, StartStandby) when a postmaster
// runs on the data directory.
var ErrRunning = errors.New("postgres is running")

const (
	// defaultStartTimeout bounds pg_ctl start when ctx has no deadline;
	// crash recovery of a busy server takes a while.
	defaultStartTimeout = 5 * time.Minute
	// defaultStopTimeout bounds pg_ctl stop when ctx has no deadline.
	defaultStopTimeout = 2 * time.Minute
	// pollInterval is how often waits look again.
	pollInterval = 50 * time.Millisecond
)

// Upstream is the primary a standby streams from.
type Upstream struct {
	Host string
	Port int
}

// Addr is host:port, for messages.
func (u Upstream) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// Instance owns one node's PostgreSQL server: the data directory, the
// configuration understudy writes into it and the postmaster it starts with
// pg_ctl. The postmaster is a daemon of its own and outlives understudy.
//
// Operations that change the server or its files are serialised; Running,
// HasData and ControlData only look and may run alongside them.
type Instance struct {
	cfg     config.Postgres
	node    string
	dataDir string
	log     *slog.Logger
	client  *Client

	mu sync.Mutex

	// noSync and extraConf are for tests: no fsync in initdb, pg_basebackup
	// and pg_rewind, and settings appended to understudy.conf.
	noSync    bool
	extraConf string
}

// NewInstance returns the instance of cfg's data directory. node is the
// member name: the application_name a standby streams with and, through
// SlotName, its replication slot on the primary. Nothing runs until a method
// is called.
func NewInstance(cfg config.Postgres, node string, log *slog.Logger) *Instance {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Clean(cfg.DataDir)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &Instance{cfg: cfg, node: node, dataDir: dir, client: NewClient(cfg),
		log: log.With("component", "postgres", "node", node)}
}

// Client is a state Client of this instance's server.
func (i *Instance) Client() *Client { return i.client }

// DataDir is the instance's data directory.
func (i *Instance) DataDir() string { return i.dataDir }

// LogFile is where the postmaster's output goes: next to the data directory,
// so that it survives a clone, which replaces the directory.
func (i *Instance) LogFile() string { return filepath.Join(filepath.Dir(i.dataDir), "postgres.log") }

// HasData says whether the data directory holds a cluster (PG_VERSION).
func (i *Instance) HasData() bool {
	_, err := os.Stat(filepath.Join(i.dataDir, "PG_VERSION"))
	return err == nil
}

// Init creates the cluster with initdb as the OS user and writes understudy's
// settings. It refuses a data directory that is not empty.
func (i *Instance) Init(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return err
	}
	if err := i.makeDataDir(u); err != nil {
		return fmt.Errorf("initdb %s: %w", i.dataDir, err)
	}
	args := []string{"-D", i.dataDir, "-U", i.cfg.User, "-E", "UTF8",
		// The C locale sorts by byte on every machine. Physical replication
		// copies indexes as they are, so a linguistic collation would break
		// them on a node whose C library sorts differently.
		"--locale=C",
		// Checksums catch corruption on disk, and they also let pg_rewind
		// see changed pages (as wal_log_hints does).
		"--data-checksums",
		"--auth-local=peer", "--auth-host=scram-sha-256", "--no-instructions"}
	if i.noSync {
		args = append(args, "--no-sync")
	}
	if i.cfg.PasswordFile != "" {
		pw, cleanup, err := i.initdbPasswordFile(u)
		if err != nil {
			return fmt.Errorf("initdb %s: %w", i.dataDir, err)
		}
		defer cleanup()
		args = append(args, "--pwfile="+pw)
	}
	if _, err := i.run(ctx, u, "initdb", args...); err != nil {
		// initdb removes what it wrote on failure: the directory is empty
		// again and Init can be retried once the cause is fixed.
		return fmt.Errorf("initdb %s: %w", i.dataDir, err)
	}
	if _, err := i.copyTLS(u); err != nil {
		return fmt.Errorf("configure new cluster in %s: %w", i.dataDir, err)
	}
	if err := i.ensureConfig(u, i.dataDir, nil); err != nil {
		return fmt.Errorf("configure new cluster in %s: %w", i.dataDir, err)
	}
	i.log.Info("initialised data directory", "data_dir", i.dataDir)
	return nil
}

// initdbPasswordFile copies the superuser's password where initdb, running as
// the OS user, can read it (postgres.password_file is root's).
func (i *Instance) initdbPasswordFile(u osUser) (string, func(), error) {
	pw, err := readPassword(i.cfg.PasswordFile)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(filepath.Dir(i.dataDir), ".understudy-initdb-pw")
	if err := writeFileAtomic(path, []byte(pw+"\n"), 0o600, u); err != nil {
		return "", nil, err
	}
	return path, func() { os.Remove(path) }, nil
}

// makeDataDir creates the data directory (0700, the OS user's, as postgres
// demands) and its parent when missing, and refuses a directory that holds
// anything. An existing parent is left as it is: nothing here needs to create
// files in it as the OS user, since understudy creates them and hands them
// over.
func (i *Instance) makeDataDir(u osUser) error {
	if err := makeParent(u, i.dataDir); err != nil {
		return err
	}
	entries, err := os.ReadDir(i.dataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(i.dataDir, 0o700); err != nil {
			return err
		}
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("data directory %s is not empty (%d entries); move it away to start a new cluster, or Clone from the primary", i.dataDir, len(entries))
	}
	if err := os.Chmod(i.dataDir, 0o700); err != nil {
		return err
	}
	return u.chown(i.dataDir)
}

// makeParent creates dir's parent for the OS user when it is missing.
func makeParent(u osUser, dir string) error {
	parent := filepath.Dir(dir)
	if _, err := os.Stat(parent); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	return u.chown(parent)
}

// Running reads postmaster.pid and says whether that process lives
// (fence.PostmasterPID: a stale file or a reused PID is "not running").
func (i *Instance) Running(ctx context.Context) (pid int, running bool, err error) {
	return fence.PostmasterPID(i.dataDir)
}

// StartPrimary starts the server as a primary: standby.signal removed, pg_ctl
// start -w. It returns when the server accepts connections.
//
// It continues the timeline it finds, which is right for the node that was
// the primary (a bootstrap after Init, a restart after a crash). To make a
// former standby the primary, StartStandby(nil) and Promote instead: a
// promotion starts a new timeline, so the old primary's later WAL can never
// pass for this node's.
func (i *Instance) StartPrimary(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.start(ctx, nil, false)
}

// StartStandby starts the server as a hot standby of up. With up nil it is a
// read-only standby with no upstream, replaying only its own WAL while it
// waits for an election. It returns when the server accepts connections.
func (i *Instance) StartStandby(ctx context.Context, up *Upstream) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.start(ctx, up, true)
}

// roleName describes a role for messages.
func roleName(up *Upstream, standby bool) string {
	switch {
	case !standby:
		return "primary"
	case up == nil:
		return "standby without upstream"
	default:
		return "standby of " + up.Addr()
	}
}

func (i *Instance) start(ctx context.Context, up *Upstream, standby bool) error {
	role := roleName(up, standby)
	fail := func(err error) error {
		return fmt.Errorf("start postgres in %s as %s: %w; see %s", i.dataDir, role, err, i.LogFile())
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return fail(err)
	}
	if pid, running, err := i.Running(ctx); err != nil || running {
		return fail(errors.Join(err, runningErr(pid, running)))
	}
	if !i.HasData() {
		return fail(errors.New("no cluster in the data directory (no PG_VERSION); Init or Clone first"))
	}
	if err := i.clearStalePidFile(ctx); err != nil {
		return fail(err)
	}
	// A data directory understudy did not make (one `cluster start`
	// adopts) gets understudy's configuration here, at its first start.
	if _, err := i.copyTLS(u); err != nil {
		return fail(err)
	}
	if err := i.ensureConfig(u, i.dataDir, up); err != nil {
		return fail(err)
	}
	if err := setStandbySignal(u, i.dataDir, standby); err != nil {
		return fail(err)
	}
	if err := i.ensureLogFile(u); err != nil {
		return fail(err)
	}
	// -w returns once postmaster.pid says the server accepts connections
	// (read-only ones, on a standby); the postmaster runs in a session of
	// its own with its output in the log file, so it outlives us.
	_, err = i.run(ctx, u, "pg_ctl", "start", "-D", i.dataDir, "-l", i.LogFile(), "-w",
		"-t", timeoutSeconds(ctx, defaultStartTimeout))
	if err != nil {
		// On a timeout the postmaster may still be starting (long crash
		// recovery): Running tells, Stop ends it.
		if _, running, rerr := i.Running(ctx); rerr == nil && !running {
			err = errors.Join(ErrExitedAtStart, err)
		}
		return fail(fmt.Errorf("%w%s", err, fileTail(i.LogFile(), tailLines)))
	}
	pid, _, _ := i.Running(ctx)
	i.log.Info("started postgres", "role", role, "pid", pid, "data_dir", i.dataDir)
	return nil
}

// ErrExitedAtStart: the server started and exited on its own (its log says
// why), rather than taking long to start.
var ErrExitedAtStart = errors.New("the server exited while starting")

func runningErr(pid int, running bool) error {
	if !running {
		return nil
	}
	return fmt.Errorf("%w (postmaster pid %d); stop it first", ErrRunning, pid)
}

// ensureLogFile creates the postmaster's log file for the OS user: pg_ctl
// opens it as that user, who may not be able to create files in the parent.
func (i *Instance) ensureLogFile(u osUser) error {
	f, err := os.OpenFile(i.LogFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create postgres log: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create postgres log: %w", err)
	}
	return u.chown(i.LogFile())
}

// Stop stops the server, mode "fast" (clean: a shutdown checkpoint, and the
// standbys get all WAL first) or "immediate" (no checkpoint: crash recovery at
// the next start, and pg_rewind copes with it). It is not an error when the
// server is not running, and it returns when the postmaster is gone.
func (i *Instance) Stop(ctx context.Context, mode string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.stop(ctx, mode)
}

func (i *Instance) stop(ctx context.Context, mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("stop postgres: mode %q: use \"fast\" or \"immediate\"", mode)
	}
	pid, running, err := i.Running(ctx)
	if err != nil || !running {
		return err
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return err
	}
	_, err = i.run(ctx, u, "pg_ctl", "stop", "-D", i.dataDir, "-m", mode, "-w",
		"-t", timeoutSeconds(ctx, defaultStopTimeout))
	if err != nil && processAlive(pid) {
		return fmt.Errorf("stop postgres (pid %d) in %s, mode %s: %w; try mode immediate, or kill -9 %d as a last resort",
			pid, i.dataDir, mode, err, pid)
	}
	// pg_ctl returns when postmaster.pid is gone, a moment before the
	// process itself.
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop postgres (pid %d) in %s: still running: %w", pid, i.dataDir, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
	i.log.Info("stopped postgres", "mode", mode, "pid", pid)
	return nil
}
