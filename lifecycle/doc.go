// Package lifecycle builds and changes the cluster a node belongs to:
// `understudy cluster start` today (a fresh node becomes a one-node cluster
// with its own CA, TLS for Consul, PostgreSQL ready for replication, and
// becomes active), `cluster join` next.
//
// It writes the node's identity and TLS material under node.data_dir, the
// Consul agent's configuration, and starts the node's processes (the Consul
// agent, the check-runner, the handler-runner) through internal/services.
// A step that fails undoes the ones before it: a node is either in a
// cluster or left as it was.
//
// It must not run the daemons' logic: once the processes run, the
// handler-runner owns the node's role and PostgreSQL.
package lifecycle
