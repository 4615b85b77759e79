// Package consul is the one package of understudy that imports Consul's api
// client. It offers what the daemons need in understudy's own terms: a client
// configured from the node's configuration, typed JSON values under the
// cluster's KV prefix, the understudy service with its TTL checks on the local
// agent, and the agent's view of the cluster; sessions and the leader lock
// (session.go, lock.go), CAS on shared keys, one blocking query at a time
// (watch.go), the per-node health the election reads (health.go), and the
// append-only event history (events.go).
//
// It must not make decisions: it reports what Consul says, wrapped with
// context, and leaves retrying, fencing and failing over to its callers.
package consul
