package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Rewind makes the stopped data directory a copy of source's history with
// pg_rewind, so that a former primary whose last writes never reached the new
// primary can follow it without a full clone. "No rewind required" is
// success. pg_rewind copies the source's configuration files, so
// understudy's settings are written back after, and standby.signal: the
// directory must replay the source's WAL before it is consistent, and a
// rewound directory started as a primary would be a second one.
//
// It needs the server stopped (an unclean stop is fine: pg_rewind runs crash
// recovery first), wal_log_hints or data checksums (Init sets both), and the
// source up as a primary with the WAL since the fork. When it fails, the
// directory may be half rewound: Clone from the source instead.
//
// What pg_rewind discards, the WAL this directory wrote after its history
// left the source's, is copied aside first (Kept, empty when nothing
// diverged); a rewind whose diverged WAL cannot be kept does not run.
func (i *Instance) Rewind(ctx context.Context, source Upstream) (Kept, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	fail := func(err error) (Kept, error) {
		return Kept{}, fmt.Errorf("rewind %s to the history of %s: %w; see %s", i.dataDir, source.Addr(), err, i.LogFile())
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return fail(err)
	}
	if pid, running, err := i.Running(ctx); err != nil || running {
		return fail(errors.Join(err, runningErr(pid, running)))
	}
	if !i.HasData() {
		return fail(errors.New("no cluster in the data directory (no PG_VERSION); Clone instead"))
	}
	if err := i.clearStalePidFile(ctx); err != nil {
		return fail(err)
	}
	// Before checkpointSource, whose connection uses the TLS copies too.
	auth, err := i.clientAuth(u)
	if err != nil {
		return fail(err)
	}
	if err := i.checkpointSource(ctx, source); err != nil {
		return fail(fmt.Errorf("%w; is %s up and a primary?", err, source.Addr()))
	}
	kv := [][2]string{{"host", source.Host}, {"port", strconv.Itoa(source.Port)}, {"user", i.cfg.User},
		{"dbname", i.cfg.Database}, {"connect_timeout", strconv.Itoa(connectTimeoutSeconds(i.cfg.ConnectTimeout))}}
	kv = append(kv, auth...)
	args := []string{"--target-pgdata=" + i.dataDir, "--source-server=" + conninfo(kv)}
	if i.noSync {
		args = append(args, "--no-sync")
	}
	// After an unclean stop pg_rewind first runs crash recovery in
	// single-user mode, which refuses to start in standby mode.
	if err := setStandbySignal(u, i.dataDir, false); err != nil {
		return fail(err)
	}
	kept, err := i.keepDiverged(ctx, u, source, args)
	if err != nil {
		return fail(errors.Join(fmt.Errorf("keep the diverged WAL aside: %w", err), setStandbySignal(u, i.dataDir, true)))
	}
	out, runErr := i.run(ctx, u, "pg_rewind", args...)
	confErr := errors.Join(i.ensureConfig(u, i.dataDir, nil), setStandbySignal(u, i.dataDir, true))
	if runErr != nil {
		_, err := fail(fmt.Errorf("%w; if pg_rewind cannot rewind (WAL since the fork gone from the source, another cluster), Clone from the source instead",
			errors.Join(runErr, confErr)))
		return kept, err
	}
	if confErr != nil {
		_, err := fail(confErr)
		return kept, err
	}
	if strings.Contains(out, "no rewind required") {
		i.log.Info("rewind not required", "source", source.Addr())
	} else {
		i.log.Info("rewound data directory", "source", source.Addr())
	}
	return kept, nil
}

// ErrSourceInRecovery: the rewind source has not promoted yet (a node that
// holds the leader key waits out the old active's lease first). Rewound
// against a standby, the target would have to replay to the standby's
// minimum recovery point on the old timeline, which the new timeline may
// not contain: it would never start. Retry once the source is a primary.
var ErrSourceInRecovery = errors.New("the rewind source is still in recovery (not promoted yet); retry once it is a primary")

// checkpointSource refuses a source in recovery (ErrSourceInRecovery), and
// makes the source write a checkpoint when its control file
// is behind its timeline. pg_rewind learns the source's timeline from the
// control file, which changes only at the first checkpoint after a promotion
// (the one PostgreSQL requests then is spread out); until then pg_rewind sees
// both on one timeline and answers "no rewind required" for a target that did
// diverge.
func (i *Instance) checkpointSource(ctx context.Context, source Upstream) error {
	conn, done, err := i.sourceConn(ctx, source)
	if err != nil {
		return err
	}
	defer done()
	rec, err := inRecovery(ctx, conn)
	if err != nil {
		return err
	}
	if rec {
		return fmt.Errorf("%s: %w", source.Addr(), ErrSourceInRecovery)
	}
	var current, checkpoint int64
	err = conn.QueryRow(ctx, `select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int,
		(select timeline_id from pg_control_checkpoint())`).Scan(&current, &checkpoint)
	if err != nil {
		return fmt.Errorf("read timeline of %s: %w", source.Addr(), err)
	}
	if current == checkpoint {
		return nil
	}
	if _, err := conn.Exec(ctx, "checkpoint"); err != nil {
		return fmt.Errorf("checkpoint on %s: %w", source.Addr(), err)
	}
	i.log.Info("checkpoint on rewind source", "source", source.Addr(), "timeline", current)
	return nil
}

// sourceConn connects to the rewind source as understudy's user; done
// closes the connection.
func (i *Instance) sourceConn(ctx context.Context, source Upstream) (conn *pgx.Conn, done func(), err error) {
	cfg := i.cfg
	cfg.Host, cfg.Port = source.Host, source.Port
	conn, err = NewClient(cfg).connect(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to rewind source %s: %w", source.Addr(), err)
	}
	return conn, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}, nil
}
