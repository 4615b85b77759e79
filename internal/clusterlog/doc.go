// Package clusterlog writes cluster.log: one line per role transition and
// cluster event a node's daemons record, beside journald and the events/
// history in Consul, for the operator who reads a file first (the seed's
// troubleshooting section names its cloudify-cluster.log).
//
// It owns the file only: appending a line, and reopening the path when
// logrotate moved the file away. It must not decide what is an event (the
// daemons do) nor block a daemon on the disk for long: a failed write is
// returned for the caller to warn about, never retried.
package clusterlog
