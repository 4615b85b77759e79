package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// paramsFile holds the cluster-wide parameters (understudy cluster config
// set). understudy.conf includes it first, so that every setting
// understudy owns comes after it and wins; CheckParameter refuses those
// names anyway, so that an operator is told rather than ignored.
const paramsFile = "understudy.parameters.conf"

// owned are the parameters understudy.conf sets (renderConf) or understudy
// sets otherwise (synchronous_standby_names with ALTER SYSTEM), and the
// ones that name files and directories of the data directory's layout.
// Each says where the operator changes it instead.
var owned = map[string]string{
	"listen_addresses":          "node.address (or postgres.host) in the node's configuration",
	"port":                      "postgres.port in the node's configuration",
	"unix_socket_directories":   "nowhere: understudy connects over TCP and socket paths under deep data directories exceed Linux's limit",
	"cluster_name":              "node.name in the node's configuration",
	"ssl":                       "consul.scheme: a TLS node's PostgreSQL always takes TLS",
	"ssl_cert_file":             "the node certificate (understudy certs renew)",
	"ssl_key_file":              "the node certificate (understudy certs renew)",
	"ssl_ca_file":               "the cluster CA",
	"wal_level":                 "nowhere: streaming replication needs replica or more",
	"hot_standby":               "nowhere: standbys answer reads and the checks",
	"wal_log_hints":             "nowhere: pg_rewind needs it",
	"max_wal_senders":           "nowhere yet: understudy sets 10",
	"max_replication_slots":     "nowhere yet: understudy sets 10",
	"wal_keep_size":             "nowhere yet: understudy sets 128MB",
	"max_slot_wal_keep_size":    "nowhere yet: understudy sets 4GB",
	"hot_standby_feedback":      "nowhere: understudy sets it on",
	"recovery_target_timeline":  "nowhere: standbys follow the latest timeline after a failover",
	"primary_conninfo":          "nowhere: understudy points each standby at the active",
	"primary_slot_name":         "nowhere: understudy names each standby's slot",
	"synchronous_standby_names": "postgres.synchronous in the configuration",
	"data_directory":            "postgres.data_dir in the node's configuration",
	"config_file":               "nowhere",
	"hba_file":                  "postgres.pg_hba in the node's configuration",
	"ident_file":                "nowhere",
	"include":                   "nowhere",
	"include_if_exists":         "nowhere",
	"include_dir":               "nowhere",
	// What the one-writer and no-loss guarantees rest on.
	"synchronous_commit":       "postgres.synchronous: local or off would acknowledge commits no standby has",
	"full_page_writes":         "nowhere: pg_rewind needs it, or every rejoin is a clone",
	"recovery_min_apply_delay": "nowhere: a delayed standby cannot take over in a switchover's time",
}

// ParameterError is CheckParameter's refusal of a name or value, as
// opposed to not being able to ask PostgreSQL.
type ParameterError struct{ msg string }

func (e *ParameterError) Error() string { return e.msg }

func refuse(format string, args ...any) error {
	return &ParameterError{msg: fmt.Sprintf(format, args...)}
}

// CheckParameter tells whether name may be set cluster-wide: not one
// understudy owns, and one this PostgreSQL knows (asked of the running
// server, since the set differs by major version and by the libraries
// loaded); a name with a dot is an extension's own and PostgreSQL takes it
// as it is. value is checked by PostgreSQL itself where it can be without
// applying it (parameters a session may set); the others are checked when
// the nodes reload, and errors show in cluster config show.
func (i *Instance) CheckParameter(ctx context.Context, name, value string) error {
	if where, ok := owned[name]; ok {
		return refuse("understudy sets %s itself; change it with %s", name, where)
	}
	if strings.Contains(name, ".") {
		return nil
	}
	return i.withConn(ctx, func(conn *pgx.Conn) error {
		var pgContext string
		err := conn.QueryRow(ctx, "select context from pg_settings where name = $1", name).Scan(&pgContext)
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse("PostgreSQL has no parameter %q (see pg_settings, or the documentation of its version)", name)
		}
		if err != nil {
			return fmt.Errorf("look up %s in pg_settings: %w", name, err)
		}
		if pgContext != "user" && pgContext != "superuser" {
			return nil
		}
		// set_config in a transaction that is rolled back: PostgreSQL's own
		// parser judges the value, units included, and nothing stays.
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("check %s=%s: %w", name, value, err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "select set_config($1, $2, true)", name, value); err != nil {
			return refuse("PostgreSQL refuses %s=%s: %v", name, value, err)
		}
		return nil
	})
}

// CheckParameterFile has PostgreSQL itself read the parameters as the
// nodes will (postgres -C on a file holding just them, as os_user, which a
// running server allows): a value PostgreSQL would refuse at its next start
// is refused now, before every node writes it. A reload only logs such a
// value; the next start of every node would fail on it.
func (i *Instance) CheckParameterFile(ctx context.Context, values map[string]string) error {
	if len(values) == 0 {
		return nil
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "understudy-parameters-")
	if err != nil {
		return fmt.Errorf("check the parameters: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := u.chown(dir); err != nil {
		return err
	}
	file := filepath.Join(dir, paramsFile)
	if err := writeFileAtomic(file, renderParams(values), 0o600, u); err != nil {
		return fmt.Errorf("check the parameters: %w", err)
	}
	name := slices.Sorted(maps.Keys(values))[0]
	if _, err := i.run(ctx, u, "postgres", "-D", i.dataDir, "-C", name, "-c", "config_file="+file); err != nil {
		return refuse("PostgreSQL refuses the parameters: %v", err)
	}
	return nil
}

// renderParams is the parameters file: one line a parameter, sorted.
func renderParams(values map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by understudy: the cluster-wide parameters of understudy cluster\n")
	b.WriteString("# config set. Change them there, not here: this file is rewritten.\n")
	for _, n := range slices.Sorted(maps.Keys(values)) {
		fmt.Fprintf(&b, "%s = %s\n", n, quoteConf(values[n]))
	}
	return b.Bytes()
}

// WriteParameters writes the cluster-wide parameters into the data
// directory; changed is false when the file already held them. A node with
// no data directory yet (before its clone) writes nothing: the clone
// brings the active's file, and the next call rewrites it.
func (i *Instance) WriteParameters(values map[string]string) (changed bool, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.HasData() {
		return false, nil
	}
	path := filepath.Join(i.dataDir, paramsFile)
	want := renderParams(values)
	if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
		return false, nil
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return false, err
	}
	if err := writeFileAtomic(path, want, 0o600, u); err != nil {
		return false, fmt.Errorf("write the cluster-wide parameters: %w", err)
	}
	return true, nil
}

// reloadWait bounds how long Reload waits for the postmaster to have read
// its files after the signal.
const reloadWait = 5 * time.Second

// Reload makes the running server read its configuration files again
// (pg_ctl reload: a SIGHUP to the postmaster, as the PostgreSQL user) and
// returns once it has (pg_conf_load_time moved), so that what pg_settings
// says next is of the new files.
func (i *Instance) Reload(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return err
	}
	var before time.Time
	loaded := func() (t time.Time, err error) {
		err = i.withConn(ctx, func(conn *pgx.Conn) error {
			return conn.QueryRow(ctx, "select pg_conf_load_time()").Scan(&t)
		})
		return t, err
	}
	if before, err = loaded(); err != nil {
		return fmt.Errorf("reload postgres: %w", err)
	}
	if _, err := i.run(ctx, u, "pg_ctl", "reload", "-D", i.dataDir); err != nil {
		return fmt.Errorf("reload postgres: %w", err)
	}
	deadline := time.Now().Add(reloadWait)
	for {
		t, err := loaded()
		if err == nil && t.After(before) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reload postgres: the server did not read its files within %v (%v); see its log", reloadWait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SettingsState is what the server says of its configuration files.
type SettingsState struct {
	// PendingRestart are the parameters changed in the files that take
	// effect only at the next restart.
	PendingRestart []string
	// Errors are the lines of the files the server could not apply.
	Errors []string
	// Lowered are the parameters of PendingRestart, among
	// StandbyAtLeastPrimary, whose value in the files is lower than the
	// one the server runs with: on the primary, restarted before its
	// standbys (a standby restarted first would run a lower value than its
	// primary).
	Lowered []string
}

// NextSettings are the values of StandbyAtLeastPrimary the running server
// would start with: the last line of its files that sets one, else its
// built-in default (a line removed), else for one given on the command line
// the value it runs with.
func (i *Instance) NextSettings(ctx context.Context) (map[string]int64, error) {
	var next map[string]int64
	err := i.withConn(ctx, func(conn *pgx.Conn) (err error) {
		next, _, err = standbyAtLeastSettings(ctx, conn)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the settings postgres would start with: %w", err)
	}
	return next, nil
}

// standbyAtLeastSettings reads, for each of StandbyAtLeastPrimary, the
// value the server would start with (NextSettings) and the one it runs
// with.
func standbyAtLeastSettings(ctx context.Context, conn *pgx.Conn) (next, running map[string]int64, err error) {
	rows, err := conn.Query(ctx, `select s.name, s.setting, case when s.source = 'command line' then s.setting
			else coalesce((select f.setting from pg_file_settings f where f.name = s.name order by f.seqno desc limit 1), s.boot_val) end
		from pg_settings s where s.name = any($1)`, StandbyAtLeastPrimary)
	if err != nil {
		return nil, nil, err
	}
	next, running = map[string]int64{}, map[string]int64{}
	var name, run, nxt string
	_, err = pgx.ForEachRow(rows, []any{&name, &run, &nxt}, func() error {
		r, err1 := strconv.ParseInt(run, 10, 64)
		n, err2 := strconv.ParseInt(nxt, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("%s = %q, next %q: %w", name, run, nxt, err)
		}
		running[name], next[name] = r, n
		return nil
	})
	return next, running, err
}

// BelowPrimary names the parameters of next lower than the primary's
// values (ControlData.PrimarySettings), with both values: a standby started
// with them refuses to start ("recovery aborted because of insufficient
// parameter settings").
func BelowPrimary(next, primary map[string]int64) []string {
	var below []string
	for _, name := range StandbyAtLeastPrimary {
		n, okN := next[name]
		p, okP := primary[name]
		if okN && okP && n < p {
			below = append(below, fmt.Sprintf("%s = %d (the primary's: %d)", name, n, p))
		}
	}
	return below
}

// StandbyAtLeastPrimary are the parameters a hot standby must have at
// least its primary's values of (PostgreSQL's "Hot Standby" section):
// with less it pauses replay when it learns the primary's. Raised, they
// reach the standbys first; lowered, the primary first.
var StandbyAtLeastPrimary = []string{"max_connections", "max_locks_per_transaction", "max_prepared_transactions", "max_wal_senders", "max_worker_processes"}

// Settings asks the running server which parameters wait for a restart and
// which lines of its configuration files it refused.
func (i *Instance) Settings(ctx context.Context) (SettingsState, error) {
	var s SettingsState
	err := i.withConn(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "select name from pg_settings where pending_restart order by name")
		if err != nil {
			return err
		}
		s.PendingRestart, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		next, running, err := standbyAtLeastSettings(ctx, conn)
		if err != nil {
			return err
		}
		for _, name := range s.PendingRestart {
			if n, ok := next[name]; ok && n < running[name] {
				s.Lowered = append(s.Lowered, name)
			}
		}
		// A parameter that waits for a restart has the error "setting could
		// not be applied" too: said once, under pending_restart.
		rows, err = conn.Query(ctx, `select coalesce(f.name, ''), coalesce(f.sourcefile, ''), coalesce(f.sourceline, 0), f.error
			from pg_file_settings f left join pg_settings s on s.name = f.name
			where f.error is not null and not coalesce(s.pending_restart, false) order by f.seqno`)
		if err != nil {
			return err
		}
		s.Errors, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
			var name, file, msg string
			var line int
			if err := row.Scan(&name, &file, &line, &msg); err != nil {
				return "", err
			}
			if name == "" {
				return fmt.Sprintf("%s:%d: %s", filepath.Base(file), line, msg), nil
			}
			return fmt.Sprintf("%s (%s:%d): %s", name, filepath.Base(file), line, msg), nil
		})
		return err
	})
	if err != nil {
		return s, fmt.Errorf("read the settings' state from postgres: %w", err)
	}
	return s, nil
}
