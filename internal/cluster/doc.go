// Package cluster is understudy's pure model of a cluster: the member record
// each node publishes, the leader record, the layout of the keys in Consul,
// and (as they arrive) candidate choice and role transitions.
//
// It does no I/O and reads no clock: time is passed in, so everything here is
// tested with plain tables. It must not import Consul, PostgreSQL or any
// package that talks to a process.
package cluster
