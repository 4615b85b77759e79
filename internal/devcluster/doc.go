// Package devcluster is `understudy dev`: a complete local cluster on
// loopback, for trying understudy and for scripts that drive failures. Each
// node gets a loopback address of its own (127.0.0.11, .12, ...), its own
// Consul server, PostgreSQL and daemons, all under one directory; an HAProxy
// in front sends PostgreSQL traffic to the node whose /status answers 200.
//
// Every process is started detached (a session of its own, output to a log
// file under the directory) so the cluster outlives the command, and its PID
// is recorded in dev.json; `dev down` stops them by PID. It must never be
// used for anything but a local cluster: it trusts loopback, runs Consul
// without TLS and PostgreSQL with trust authentication.
package devcluster
