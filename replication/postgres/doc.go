// Package postgres is understudy's hand on a node's PostgreSQL.
//
// Client asks a server for its state through pgx. Instance owns the node's
// server, as Patroni and stolon do: its data directory (initdb, pg_basebackup,
// pg_rewind), the settings understudy writes into it (understudy.conf,
// included from postgresql.conf, and marked sections of pg_hba.conf and
// pg_ident.conf), the copies of the node's certificate that a TLS node's
// server and every connection understudy makes use, and the postmaster it
// starts and stops with pg_ctl, which outlives understudy.
// Every PostgreSQL program runs as postgres.os_user when understudy is root.
//
// It carries out a role it is given and reports facts about one server; it
// does not decide roles, and it never deletes a data directory: a clone keeps
// the old one aside. Decisions belong to internal/cluster and the daemons.
package postgres
