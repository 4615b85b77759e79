// Package watcher is the consul-watcher daemon: every round (checks.interval)
// it learns which of the cluster's Consul servers and handler-runner APIs
// this node reaches, decides whether the node is in the majority, runs the
// partition state machine (cluster.minority_timeout) and publishes the view:
// a local file (cluster.PartitionFile) that the handler-runner serves as
// GET /v1/status/partition and the check-runner puts in the member record,
// and a partition event when a partition starts or ends.
//
// The decision is a pure model (Model.Step) of one round's observations:
// each server's gossip status, a direct TCP probe of its RPC port, whether
// its node's API answers, and the local Raft state. Telling a crash from a
// partition: a crashed or stopped Consul leaves its host up, so the probe
// of its RPC port is refused at once (a reset) or, for a hung agent, its
// node's API still answers: the server is Down, and a node that misses a
// majority only through Down servers is in a Consul outage, not a
// partition. A partition drops packets: the probe times out and the API is
// silent too: Unreachable. A host that is off looks the same as a cut one
// from here; the other nodes' views tell them apart.
//
// In partition_mode "fence" the package observes and reports. It never
// changes the node's role, nor touches PostgreSQL or Consul's membership:
// fencing in a partition is the handler-runner's (its lease). In
// "active-minority" it restarts the node's Consul agent twice in a
// partition's life (minority.go): in the minority, on a quorum of the
// servers it still reaches; at the heal, on a side that does not stay,
// reset to join the side that does. The handler-runners do the rest with
// what Consul then says, as in any failover.
package watcher
