package cluster

import "path"

// Keys names the cluster's keys in Consul's KV store, all under
// <kv_prefix>/<cluster>/ so several clusters can share one Consul.
type Keys struct{ base string }

// NewKeys returns the key layout of cluster name under prefix.
func NewKeys(prefix, name string) Keys { return Keys{base: path.Join(prefix, name) + "/"} }

// Prefix is the directory every key of the cluster lives under, ending in "/".
func (k Keys) Prefix() string { return k.base }

func (k Keys) Leader() string             { return k.base + "leader" }
func (k Keys) NextMaster() string         { return k.base + "next-master" }
func (k Keys) Members() string            { return k.base + "members/" }
func (k Keys) Member(node string) string  { return k.base + "members/" + node }
func (k Keys) Config() string             { return k.base + "config" }
func (k Keys) Options(node string) string { return k.base + "options/" + node }
func (k Keys) JoinToken() string          { return k.base + "join-token" }
func (k Keys) Sync() string               { return k.base + "sync" }
func (k Keys) Events() string             { return k.base + "events/" }
func (k Keys) Fenced(node string) string  { return k.base + "fenced/" + node }
func (k Keys) Paused() string             { return k.base + "paused" }
func (k Keys) Parameters() string         { return k.base + "postgres/parameters" }

// Maintenances is the directory of maintenance/<node>; Maintenance the key
// of one node's.
func (k Keys) Maintenances() string           { return k.base + "maintenance/" }
func (k Keys) Maintenance(node string) string { return k.base + "maintenance/" + node }
