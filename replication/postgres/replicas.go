package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Replica is one row of the primary's pg_stat_replication: a standby that
// streams from it, by the application_name it connects with (its member
// name).
type Replica struct {
	Name string
	// State is "streaming" once the standby has caught up.
	State string
	// SyncState is "sync" for the standby commits wait for, "potential",
	// "quorum" or "async" otherwise.
	SyncState string
}

// Replicas lists the standbys streaming from this primary.
func (i *Instance) Replicas(ctx context.Context) ([]Replica, error) {
	var out []Replica
	err := i.Client().with(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, "select application_name, coalesce(state, ''), coalesce(sync_state, '') from pg_stat_replication")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Replica, error) {
			var r Replica
			return r, row.Scan(&r.Name, &r.State, &r.SyncState)
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list standbys streaming from postgres at %s: %w", i.Client().Addr(), err)
	}
	return out, nil
}
