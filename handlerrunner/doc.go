// Package handlerrunner is the handler-runner daemon: it holds the node's role
// in the cluster and acts on it. It keeps a Consul session bound to the node's
// health, runs the role state machine (rejoining, standby, candidate, active,
// demoting), elects the next active through the next-master key, promotes,
// follows, rewinds or re-clones PostgreSQL, starts and stops the active-only
// services, fences the node when it cannot be sure it is still the active,
// and serves the HTTP API (/status for HAProxy, /v1 for the CLI and peers,
// /metrics).
//
// It owns decisions; internal/consul, replication/postgres and
// internal/services carry them out, and internal/cluster holds the pure rules
// (candidate choice). It must not judge health itself beyond what fencing
// needs: health is the check-runner's, reported through Consul.
package handlerrunner
