package config

import "slices"

// The file's schema: which blocks exist and which fields each accepts. The
// HCL names are here and nowhere else.

// blockTypes in the order HCL() writes them. A labelled block ("service",
// "files") may appear any number of times, the others at most once.
var blockTypes = []blockType{
	{"cluster", false}, {"node", false}, {"consul", false}, {"postgres", false},
	{"checks", false}, {"api", false}, {"syncthing", false}, {"logging", false}, {"service", true}, {"files", true}, {"promote_hook", true},
}

type blockType struct {
	name     string
	labelled bool
}

func lookupBlock(name string) (blockType, bool) {
	i := slices.IndexFunc(blockTypes, func(t blockType) bool { return t.name == name })
	if i < 0 {
		return blockType{}, false
	}
	return blockTypes[i], true
}

// bindings returns the fields of a singleton block of c. For "service" and
// "files" it returns those of a fresh block: enough to list the names.
func (c *Config) bindings(blockType string) []binding {
	switch blockType {
	case "cluster":
		return c.Cluster.bindings()
	case "node":
		return c.Node.bindings()
	case "consul":
		return c.Consul.bindings()
	case "postgres":
		return c.Postgres.bindings()
	case "checks":
		return c.Checks.bindings()
	case "api":
		return c.API.bindings()
	case "syncthing":
		return c.Syncthing.bindings()
	case "logging":
		return c.Logging.bindings()
	case "service":
		return (&Service{}).bindings()
	case "files":
		return (&Files{}).bindings()
	case "promote_hook":
		return (&Hook{}).bindings()
	}
	return nil
}

func (b *Cluster) bindings() []binding {
	return []binding{
		{"name", &b.Name, `"prod"`},
		{"kv_prefix", &b.KVPrefix, `"understudy"`},
		{"partition_mode", &b.PartitionMode, `"fence"`},
		{"minority_timeout", &b.MinorityTimeout, `"5s"`},
	}
}

func (b *Node) bindings() []binding {
	return []binding{
		{"name", &b.Name, `"mgr-1"`},
		{"address", &b.Address, `"10.0.0.5"`},
		{"data_dir", &b.DataDir, `"/var/lib/understudy"`},
		{"priority", &b.Priority, `100`},
		{"no_failover", &b.NoFailover, `false`},
		{"tags", &b.Tags, `["rack-1"]`},
	}
}

func (b *Consul) bindings() []binding {
	return []binding{
		{"address", &b.Address, `"127.0.0.1:8500"`},
		{"scheme", &b.Scheme, `"https"`},
		{"token", &b.Token, `"00000000-0000-0000-0000-000000000000"`},
		{"token_file", &b.TokenFile, `"/var/lib/understudy/acl/daemons.token"`},
		{"ca_file", &b.CAFile, `"/etc/understudy/tls/ca.pem"`},
		{"cert_file", &b.CertFile, `"/etc/understudy/tls/node.pem"`},
		{"key_file", &b.KeyFile, `"/etc/understudy/tls/node-key.pem"`},
		{"session_ttl", &b.SessionTTL, `"10s"`},
		{"lock_delay", &b.LockDelay, `"1s"`},
		{"leader_lease", &b.LeaderLease, `"3s"`},
		{"raft_multiplier", &b.RaftMultiplier, `1`},
		{"gossip_probe_interval", &b.GossipProbeInterval, `"500ms"`},
		{"gossip_probe_timeout", &b.GossipProbeTimeout, `"250ms"`},
		{"gossip_suspicion_mult", &b.GossipSuspicionMult, `3`},
		{"outage", &b.Outage, `"failsafe"`},
	}
}

func (b *Postgres) bindings() []binding {
	return []binding{
		{"bin_dir", &b.BinDir, `"/usr/lib/postgresql/15/bin"`},
		{"data_dir", &b.DataDir, `"/var/lib/understudy/postgres"`},
		{"host", &b.Host, `"10.0.0.5"`},
		{"port", &b.Port, `5432`},
		{"user", &b.User, `"postgres"`},
		{"database", &b.Database, `"postgres"`},
		{"password_file", &b.PasswordFile, `"/etc/understudy/pgpass"`},
		{"os_user", &b.OSUser, `"postgres"`},
		{"synchronous", &b.Synchronous, `false`},
		{"maximum_lag_on_failover", &b.MaximumLagOnFailover, `"16MB"`},
		{"clone_max_rate", &b.CloneMaxRate, `"50MB"`},
		{"connect_timeout", &b.ConnectTimeout, `"2s"`},
		{"pg_hba", &b.PgHBA, `["hostssl app app 10.0.0.0/24 scram-sha-256"]`},
	}
}

func (b *Checks) bindings() []binding {
	return []binding{
		{"interval", &b.Interval, `"1s"`},
		{"heartbeat_interval", &b.HeartbeatInterval, `"15s"`},
		{"ttl_multiplier", &b.TTLMultiplier, `1`},
		{"fail_fast", &b.FailFast, `true`},
	}
}

func (b *API) bindings() []binding {
	return []binding{
		{"listen", &b.Listen, `":8008"`},
		{"basic_auth_file", &b.BasicAuthFile, `"/etc/understudy/api-users"`},
		{"open", &b.Open, `["/status", "/health", "/replica"]`},
	}
}

// bindings of a service leave out Name: it is the block label.
func (b *Service) bindings() []binding {
	return []binding{
		{"systemd_unit", &b.SystemdUnit, `"rabbitmq-server.service"`},
		{"start", &b.Start, `["/usr/bin/mgmtworker", "start"]`},
		{"stop", &b.Stop, `["/usr/bin/mgmtworker", "stop"]`},
		{"status", &b.Status, `["/usr/bin/mgmtworker", "status"]`},
		{"command", &b.Command, `["/opt/manager/bin/mgmtworker", "--config", "/etc/mgmtworker.conf"]`},
		{"active_only", &b.ActiveOnly, `true`},
	}
}

func (b *Syncthing) bindings() []binding {
	return []binding{
		{"binary", &b.Binary, `"/usr/local/bin/syncthing"`},
		{"port", &b.Port, `22000`},
		{"api_port", &b.APIPort, `8384`},
	}
}

func (b *Logging) bindings() []binding {
	return []binding{
		{"dir", &b.Dir, `"/var/log/understudy"`},
	}
}

func (b *Files) bindings() []binding {
	return []binding{
		{"path", &b.Path, `"/opt/manager/resources"`},
		{"max_out_of_sync", &b.MaxOutOfSync, `"10MB"`},
		{"settle", &b.Settle, `"60s"`},
	}
}

func (b *Hook) bindings() []binding {
	return []binding{
		{"command", &b.Command, `["/usr/local/bin/notify-active"]`},
		{"timeout", &b.Timeout, `"30s"`},
	}
}

// fieldNames lists a block's field names for "the fields of X are ...".
func fieldNames(bs []binding) []string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.name
	}
	return names
}

// suggest returns the candidate closest to typo when it is close enough to
// be a slip of the keyboard, else "".
func suggest(typo string, candidates []string) string {
	// More than two edits, or half of a short word, is another word.
	best, bestDist := "", min(3, len(typo)/2+1)
	for _, c := range candidates {
		if d := editDistance(typo, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, on bytes: field names are ASCII.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
