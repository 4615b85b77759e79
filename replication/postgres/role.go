package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// withConn runs f on a connection of its own to this instance's server. The
// role changes do not share Client's long-lived connection: it may have died
// with a restart a moment ago, and a promotion must not fail on that.
func (i *Instance) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	conn, err := i.client.connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres at %s: %w", i.client.Addr(), err)
	}
	defer func() {
		// A context of its own: ctx may be the one that just ended.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	return f(conn)
}

func inRecovery(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var rec bool
	err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&rec)
	return rec, err
}

// Promote turns the running standby into a primary with pg_promote and
// returns when pg_is_in_recovery() is false. A server that already is a
// primary is left alone. understudy.conf is rewritten without an upstream so
// the files say what the server now is.
//
// synchronous_standby_names is not touched: a clone carries the old
// primary's value, so call SetSynchronousStandbys right after.
func (i *Instance) Promote(ctx context.Context) error { return i.PromoteTo(ctx, 0) }

// PromoteTo is Promote onto a timeline numbered minTLI or above (0: the
// next, as PostgreSQL chooses). Two sides of an active-minority partition
// promote apart, and PostgreSQL would give both the same number (one more
// than the newest it knows), with different histories: pg_rewind compares
// the numbers only, says "no rewind required", and the losing side would
// stream the winner's WAL over its own. PostgreSQL takes the number after
// the last of the consecutive timeline history files it finds in pg_wal,
// so empty ones for the numbers to skip are put there for the promotion
// and removed after it (empty: a standby that rescans for a newer
// timeline meanwhile finds none that is a child of its own, and keeps to
// it).
func (i *Instance) PromoteTo(ctx context.Context, minTLI uint32) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	fail := func(err error) error {
		return fmt.Errorf("promote postgres at %s: %w; see %s", i.client.Addr(), err, i.LogFile())
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return fail(err)
	}
	var promoted bool
	err = i.withConn(ctx, func(conn *pgx.Conn) error {
		rec, err := inRecovery(ctx, conn)
		if err != nil || !rec {
			return err
		}
		if minTLI > 0 {
			skipped, err := i.skipTimelines(ctx, conn, u, minTLI)
			defer func() {
				for _, f := range skipped {
					_ = os.Remove(f)
				}
			}()
			if err != nil {
				return err
			}
		}
		// pg_promote waits (up to wait_seconds) for the end of recovery;
		// false means it was still in progress when the wait ran out.
		var done bool
		secs := secondsLeft(ctx, time.Minute)
		if err := conn.QueryRow(ctx, "select pg_promote(true, $1)", secs).Scan(&done); err != nil {
			return err
		}
		if !done {
			return fmt.Errorf("promotion not finished within %ds", secs)
		}
		promoted = true
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if err := i.waitPrimary(ctx); err != nil {
		return fail(err)
	}
	if err := i.writeSettings(u, i.dataDir, nil); err != nil {
		return fail(err)
	}
	if promoted {
		i.log.Info("promoted postgres")
	}
	return nil
}

// waitPrimary polls until the server is out of recovery.
func (i *Instance) waitPrimary(ctx context.Context) error {
	for {
		var rec bool
		err := i.withConn(ctx, func(conn *pgx.Conn) (err error) {
			rec, err = inRecovery(ctx, conn)
			return err
		})
		if err == nil && !rec {
			return nil
		}
		if err == nil {
			err = errors.New("still in recovery")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the end of recovery: %w (last: %w)", ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// Follow points this node at a new upstream. A running standby gets a new
// primary_conninfo and a reload (PostgreSQL 13 and later restart the WAL
// receiver on a reload, no server restart). A running primary is stopped
// (fast) and started as a standby of up; so is a stopped server.
//
// Follow does not rewind: a former primary whose WAL went past the point
// where up's timeline forked will start but not stream ("requested timeline
// is not a child of this server's history"); Stop, Rewind and then
// StartStandby it instead.
func (i *Instance) Follow(ctx context.Context, up Upstream) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	fail := func(err error) error {
		return fmt.Errorf("follow %s with postgres in %s: %w; see %s", up.Addr(), i.dataDir, err, i.LogFile())
	}
	u, err := lookupOSUser(i.cfg.OSUser)
	if err != nil {
		return fail(err)
	}
	_, running, err := i.Running(ctx)
	if err != nil {
		return fail(err)
	}
	if running {
		var standby bool
		err := i.withConn(ctx, func(conn *pgx.Conn) (err error) {
			standby, err = inRecovery(ctx, conn)
			return err
		})
		if err != nil {
			return fail(err)
		}
		if standby {
			return i.repoint(ctx, u, up)
		}
		i.log.Info("stopping primary to follow", "upstream", up.Addr())
		if err := i.stop(ctx, "fast"); err != nil {
			return fail(err)
		}
	}
	return i.start(ctx, &up, true)
}

// repoint rewrites a running standby's upstream and reloads.
func (i *Instance) repoint(ctx context.Context, u osUser, up Upstream) error {
	if err := i.writeSettings(u, i.dataDir, &up); err != nil {
		return fmt.Errorf("follow %s: %w", up.Addr(), err)
	}
	err := i.withConn(ctx, func(conn *pgx.Conn) error {
		var ok bool
		return conn.QueryRow(ctx, "select pg_reload_conf()").Scan(&ok)
	})
	if err != nil {
		return fmt.Errorf("follow %s: reload postgres at %s: %w", up.Addr(), i.client.Addr(), err)
	}
	i.log.Info("following new upstream", "upstream", up.Addr())
	return nil
}

// newestTimelineQuery is the newest timeline a standby knows: its last
// checkpoint's or the newest history file's in pg_wal.
const newestTimelineQuery = `select greatest((select timeline_id from pg_control_checkpoint()),
  coalesce((select max(('x' || substr(name, 1, 8))::bit(32)::int) from pg_ls_waldir()
            where name ~ '^[0-9A-F]{8}[.]history$'), 0))`

// maxSkippedTimelines bounds the placeholder files of one promotion.
const maxSkippedTimelines = 10000

// skipTimelines puts empty history files (the server's user's: it opens
// them) in pg_wal for the timelines from
// the one after the newest known up to minTLI-1, and returns those it made.
func (i *Instance) skipTimelines(ctx context.Context, conn *pgx.Conn, u osUser, minTLI uint32) ([]string, error) {
	var cur int32
	if err := conn.QueryRow(ctx, newestTimelineQuery).Scan(&cur); err != nil {
		return nil, fmt.Errorf("read the newest timeline: %w", err)
	}
	if minTLI <= uint32(cur)+1 {
		return nil, nil
	}
	if minTLI-uint32(cur) > maxSkippedTimelines {
		return nil, fmt.Errorf("timeline %d asked for, %d above the newest (%d)", minTLI, minTLI-uint32(cur), cur)
	}
	var made []string
	for t := uint32(cur) + 1; t < minTLI; t++ {
		f := filepath.Join(i.dataDir, "pg_wal", fmt.Sprintf("%08X.history", t))
		h, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return made, fmt.Errorf("skip timeline %d: %w", t, err)
		}
		made = append(made, f)
		if err := errors.Join(h.Close(), u.chown(f)); err != nil {
			return made, err
		}
	}
	i.log.Info("promoting onto a timeline of its own", "newest", cur, "min_timeline", minTLI)
	return made, nil
}
