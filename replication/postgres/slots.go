package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// slotPrefix marks the replication slots understudy owns, so that
	// EnsureSlots can drop a former member's slot without touching the slots
	// of a backup tool or an operator.
	slotPrefix = "understudy_"
	// maxSlotName is PostgreSQL's limit on a name (NAMEDATALEN - 1).
	maxSlotName = 63
)

// SlotName is the physical replication slot the primary keeps for member
// node: "understudy_" and the name with every character outside [a-z0-9_]
// replaced by '_' (member names are lowercase letters, digits and '-', so two
// members never share a slot). A name too long for PostgreSQL is cut and
// ends in a hash of the whole name.
func SlotName(node string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(node) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := slotPrefix + b.String()
	if len(name) <= maxSlotName {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(node))
	suffix := fmt.Sprintf("_%08x", h.Sum32())
	return name[:maxSlotName-len(suffix)] + suffix
}

// EnsureSlots makes the primary's physical slots match the members: one for
// every member but this node, none of understudy's for anyone else. A slot
// keeps the WAL its standby has not received yet, so a standby that was away
// catches up instead of needing a clone (bounded by max_slot_wal_keep_size).
// It is idempotent. A slot still in use by a former member is left for the
// next call, with a warning: PostgreSQL refuses to drop an active slot.
func (i *Instance) EnsureSlots(ctx context.Context, members []string) error {
	want := map[string]bool{}
	for _, m := range members {
		if m != i.node {
			want[SlotName(m)] = true
		}
	}
	err := i.withConn(ctx, func(conn *pgx.Conn) error {
		rec, err := inRecovery(ctx, conn)
		if err != nil {
			return err
		}
		if rec {
			return errors.New("the server is a standby; slots are kept on the primary")
		}
		have, err := understudySlots(ctx, conn)
		if err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(want)) {
			if _, ok := have[name]; ok {
				continue
			}
			if err := i.createSlot(ctx, conn, name); err != nil {
				return err
			}
		}
		for _, name := range slices.Sorted(maps.Keys(have)) {
			if want[name] {
				continue
			}
			if have[name] {
				i.log.Warn("replication slot of a non-member still in use; dropping it later", "slot", name)
				continue
			}
			if _, err := conn.Exec(ctx, "select pg_drop_replication_slot($1)", name); err != nil {
				return fmt.Errorf("drop slot %s: %w", name, err)
			}
			i.log.Info("dropped replication slot", "slot", name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ensure replication slots on %s: %w", i.client.Addr(), err)
	}
	return nil
}

// understudySlots maps understudy's physical slots to whether they are active.
func understudySlots(ctx context.Context, conn *pgx.Conn) (map[string]bool, error) {
	rows, err := conn.Query(ctx, "select slot_name::text, active from pg_replication_slots where slot_type = 'physical'")
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	var name string
	var active bool
	_, err = pgx.ForEachRow(rows, []any{&name, &active}, func() error {
		if strings.HasPrefix(name, slotPrefix) {
			have[name] = active
		}
		return nil
	})
	return have, err
}

// createSlot creates a physical slot that reserves WAL at once: the member
// may be cloning right now and needs the WAL from here on.
func (i *Instance) createSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, "select pg_create_physical_replication_slot($1, true)", name)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" { // duplicate_object: made by a concurrent call
		return nil
	}
	if err != nil {
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	i.log.Info("created replication slot", "slot", name)
	return nil
}

// SetSynchronousStandbys makes the server wait, at commit, for the first of
// names (in that order) that is connected: synchronous_standby_names =
// 'FIRST 1 ("a", "b")', or empty for none. Names are member names, which
// standbys use as application_name. It is set with ALTER SYSTEM, so it
// survives restarts, and takes effect on pg_reload_conf.
func (i *Instance) SetSynchronousStandbys(ctx context.Context, names []string) error {
	value, err := synchronousStandbyNames(names)
	if err != nil {
		return fmt.Errorf("set synchronous standbys on %s: %w", i.client.Addr(), err)
	}
	err = i.withConn(ctx, func(conn *pgx.Conn) error {
		// ALTER SYSTEM takes no parameters: the value is a quoted literal.
		if _, err := conn.Exec(ctx, "alter system set synchronous_standby_names = "+quoteLiteral(value)); err != nil {
			return err
		}
		var ok bool
		return conn.QueryRow(ctx, "select pg_reload_conf()").Scan(&ok)
	})
	if err != nil {
		return fmt.Errorf("set synchronous standbys on %s to %q: %w", i.client.Addr(), value, err)
	}
	i.log.Info("set synchronous standbys", "synchronous_standby_names", value)
	return nil
}

// synchronousStandbyNames renders the setting. Each name is a double-quoted
// identifier: member names contain '-', which a bare one may not.
func synchronousStandbyNames(names []string) (string, error) {
	var quoted []string
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", fmt.Errorf("standby name %q: want a member name", n)
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		quoted = append(quoted, `"`+strings.ReplaceAll(n, `"`, `""`)+`"`)
	}
	if len(quoted) == 0 {
		return "", nil
	}
	return "FIRST 1 (" + strings.Join(quoted, ", ") + ")", nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings
// is on, so a backslash is an ordinary character).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
