// Package postgres is understudy's hand on a node's PostgreSQL: it asks the
// server for its state through pgx and, as the handler-runner arrives, runs
// pg_ctl, pg_basebackup and pg_rewind as the PostgreSQL OS user.
//
// It reports facts about one server; it does not decide roles. Decisions
// belong to internal/cluster and the daemons.
package postgres
