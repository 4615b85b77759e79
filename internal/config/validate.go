package config

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds that Consul itself enforces on sessions; checking them here turns
// a session error at failover time into a message at startup.
const (
	minSessionTTL = 10 * time.Second
	maxSessionTTL = 24 * time.Hour
	maxLockDelay  = 60 * time.Second
	minInterval   = 100 * time.Millisecond
	// maxCheckTTL bounds interval x ttl_multiplier: beyond it a dead node
	// is noticed too late to call the cluster highly available, and the
	// product could overflow.
	maxCheckTTL = time.Hour
)

// Validate checks every field and the rules between fields. It returns nil
// or an *Error listing every problem, with file lines when c came from Load
// or Parse.
func (c *Config) Validate() error {
	return asError(c.validate())
}

func (c *Config) validate() []Problem {
	v := &validator{src: c.src, file: c.Path}
	if c.src != nil {
		v.file = c.src.file
	}
	v.cluster(&c.Cluster)
	v.node(&c.Node)
	v.consul(&c.Consul)
	v.fencing(c)
	v.minority(c)
	v.activeMinority(c)
	v.postgres(c)
	v.checks(&c.Checks)
	v.api(c)
	v.services(c.Services)
	v.files(c)
	v.hooks(c.PromoteHooks)
	v.absPath("logging.dir", c.Logging.Dir, `"/var/log/understudy"`, false)
	return v.problems
}

type validator struct {
	src      *source // nil for a Config built in code
	file     string
	problems []Problem
}

// add reports a problem with one field, at the line where it was written.
func (v *validator) add(key, format string, args ...any) {
	v.addAt([]string{key}, format, args...)
}

// addAt reports a problem between fields, at the line of the first of keys
// that the file sets: the one the operator chose is the one to look at. A
// field already reported while parsing is not reported again.
func (v *validator) addAt(keys []string, format string, args ...any) {
	line := 0
	if v.src != nil {
		for _, k := range keys {
			if v.src.bad[k] {
				return
			}
		}
		line = v.src.line(keys[0])
		for _, k := range keys {
			if l, ok := v.src.lines[k]; ok {
				line = l
				break
			}
		}
	}
	v.problems = append(v.problems, Problem{File: v.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) cluster(c *Cluster) {
	v.name("cluster.name", "cluster", c.Name, `"prod"`, true)
	switch {
	case c.KVPrefix == "":
		v.add("cluster.kv_prefix", `cluster.kv_prefix is empty; write kv_prefix = "understudy" or remove the line`)
	case !validKVPrefix(c.KVPrefix):
		v.add("cluster.kv_prefix", `cluster.kv_prefix = %s is not a Consul key prefix; write words joined by '/', without a leading or trailing '/', like "understudy"`,
			quote(c.KVPrefix))
	}
	switch c.PartitionMode {
	case PartitionFence:
	case PartitionActiveMinority:
	default:
		v.add("cluster.partition_mode", "cluster.partition_mode = %s is not a partition mode; write %q",
			quote(c.PartitionMode), PartitionFence)
	}
}

// activeMinority refuses what partition_mode "active-minority" cannot
// keep: synchronous mode promises that no acknowledged write is lost, and
// this mode throws away the writes of every side but one at the heal (and
// a minority has no synchronous standby to acknowledge them).
func (v *validator) activeMinority(c *Config) {
	if c.Cluster.PartitionMode == PartitionActiveMinority && c.Postgres.Synchronous {
		v.addAt([]string{"cluster.partition_mode", "postgres.synchronous"},
			`cluster.partition_mode = %s with postgres.synchronous = true: synchronous mode promises that no acknowledged write is lost, and active-minority throws away a side's writes when a partition heals; write partition_mode = %q, or synchronous = false`,
			quote(PartitionActiveMinority), PartitionFence)
	}
}

// Warnings are what a valid configuration chooses knowingly that may
// lose acknowledged writes: config check prints them and the
// consul-watcher logs them at its start.
func (c *Config) Warnings() []string {
	if c.Cluster.PartitionMode != PartitionActiveMinority {
		return nil
	}
	return []string{`cluster.partition_mode = "active-minority" can lose acknowledged writes: a node or group cut from the majority for minority_timeout recovers a Consul quorum of its own and takes writes beside the majority's active; when the partition heals, the side whose database was written last stays and the other side's writes are kept aside, out of the database (understudy cluster status lists them). Write "fence" for one writer and no lost write.`}
}

// maxMinorityTimeout bounds cluster.minority_timeout: a partition that
// takes longer to be told is no longer news.
const maxMinorityTimeout = 10 * time.Minute

// minority checks cluster.minority_timeout against the timings it rests
// on (Cluster.MinorityTimeout says why each).
func (v *validator) minority(c *Config) {
	t := c.Cluster.MinorityTimeout
	floor := max(c.Fencing().Takeover(), 2*c.Checks.Interval)
	switch {
	case t <= 0 || t > max(maxMinorityTimeout, c.minorityTimeoutFor()):
		v.add("cluster.minority_timeout", `cluster.minority_timeout = %s is out of range; write a duration from %s to "10m" ("5s" by default)`,
			quote(formatDuration(t)), quote(formatDuration(floor.Round(100*time.Millisecond)+100*time.Millisecond)))
	case t < c.Fencing().Takeover()+RoundSlack:
		v.addAt([]string{"cluster.minority_timeout", "consul.leader_lease"},
			`cluster.minority_timeout = %s is shorter than an active cut off needs to stop taking writes (%s: consul.leader_lease and the stop, and %s for the watcher's ticks): a node would say it is in the minority while it may still write; write at least %s`,
			quote(formatDuration(t)), c.Fencing().Takeover(), RoundSlack, quote(formatDuration(c.Fencing().Takeover().Round(100*time.Millisecond)+100*time.Millisecond)))
	case t < 2*c.Checks.Interval:
		v.addAt([]string{"cluster.minority_timeout", "checks.interval"},
			`cluster.minority_timeout = %s is shorter than two checks.interval = %s (the consul-watcher's round): one lost probe would be a partition; write at least %s`,
			quote(formatDuration(t)), quote(formatDuration(c.Checks.Interval)), quote(formatDuration(2*c.Checks.Interval)))
	}
}

func (v *validator) node(n *Node) {
	v.name("node.name", "node", n.Name, `"mgr-1"`, true)
	if n.Address == "" {
		v.add("node.address", `missing required field node.address; add address = "10.0.0.5" to the node block`)
	} else {
		v.host("node.address", n.Address)
	}
	v.absPath("node.data_dir", n.DataDir, `"/var/lib/understudy"`, true)
	if n.Priority < 0 {
		v.add("node.priority", "node.priority = %d is negative; write 0 or more (higher wins a tie between standbys)", n.Priority)
	}
	for _, t := range n.Tags {
		if strings.TrimSpace(t) == "" {
			v.add("node.tags", "node.tags has an empty tag; remove it")
		}
	}
}

func (v *validator) consul(c *Consul) {
	if !validConsulAddress(c.Address) {
		v.add("consul.address", `consul.address = %s is not host:port; write the agent's HTTP address, like "127.0.0.1:8500"`, quote(c.Address))
	}
	switch c.Scheme {
	case "https":
		if c.CAFile == "" {
			v.addAt([]string{"consul.scheme", "consul.ca_file"},
				`consul.scheme = "https" needs consul.ca_file; add ca_file = "/etc/understudy/tls/ca.pem" to the consul block`)
		}
	case "http":
		for _, f := range []struct{ name, value string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
			if f.value != "" {
				v.addAt([]string{"consul." + f.name, "consul.scheme"},
					`consul.%s is set but consul.scheme is "http", which uses no TLS; write scheme = "https" or remove %s`, f.name, f.name)
			}
		}
	default:
		v.add("consul.scheme", `consul.scheme = %s is not http or https; write "http" or "https"`, quote(c.Scheme))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		v.addAt([]string{"consul.cert_file", "consul.key_file"},
			"consul.cert_file and consul.key_file go together (a client certificate and its key); set both or neither")
	}
	if c.Token != "" && c.TokenFile != "" {
		v.addAt([]string{"consul.token", "consul.token_file"},
			"consul.token and consul.token_file are both set; keep one (token_file keeps the secret out of this file)")
	}
	v.absPath("consul.token_file", c.TokenFile, `"/var/lib/understudy/acl/daemons.token"`, false)
	v.absPath("consul.ca_file", c.CAFile, `"/etc/understudy/tls/ca.pem"`, false)
	v.absPath("consul.cert_file", c.CertFile, `"/etc/understudy/tls/node.pem"`, false)
	v.absPath("consul.key_file", c.KeyFile, `"/etc/understudy/tls/node-key.pem"`, false)
	if c.SessionTTL < minSessionTTL || c.SessionTTL > maxSessionTTL {
		v.add("consul.session_ttl", `consul.session_ttl = %s is outside Consul's bounds; write a value from "10s" to "24h"`,
			quote(formatDuration(c.SessionTTL)))
	}
	if c.LockDelay < 0 || c.LockDelay > maxLockDelay {
		v.add("consul.lock_delay", `consul.lock_delay = %s is outside Consul's bounds; write a value from "0s" to "60s"`,
			quote(formatDuration(c.LockDelay)))
	}
	if c.RaftMultiplier < 1 || c.RaftMultiplier > 10 {
		v.add("consul.raft_multiplier", "consul.raft_multiplier = %d is outside Consul's bounds; write 1 (the default) to 10", c.RaftMultiplier)
	}
	if c.GossipProbeInterval < 100*time.Millisecond || c.GossipProbeInterval > 10*time.Second {
		v.add("consul.gossip_probe_interval", `consul.gossip_probe_interval = %s: write a value from "100ms" to "10s" ("500ms" by default)`,
			quote(formatDuration(c.GossipProbeInterval)))
	} else if c.GossipProbeTimeout <= 0 || c.GossipProbeTimeout >= c.GossipProbeInterval {
		v.addAt([]string{"consul.gossip_probe_timeout", "consul.gossip_probe_interval"},
			`consul.gossip_probe_timeout = %s must be above 0 and under consul.gossip_probe_interval = %s; write half of it, %s`,
			quote(formatDuration(c.GossipProbeTimeout)), quote(formatDuration(c.GossipProbeInterval)), quote(formatDuration(c.GossipProbeInterval/2)))
	}
	switch c.Outage {
	case OutageFailsafe, OutageFence:
	default:
		v.add("consul.outage", "consul.outage = %s is not an outage mode; write %q (the active serves while every member confirms it) or %q (it stops taking writes once a Consul leader election is over)",
			quote(c.Outage), OutageFailsafe, OutageFence)
	}
	if c.GossipSuspicionMult < 1 || c.GossipSuspicionMult > 10 {
		v.add("consul.gossip_suspicion_mult", "consul.gossip_suspicion_mult = %d: write 1 to 10 (3 by default)", c.GossipSuspicionMult)
	}
}

// fencing checks the rules between the timings fencing rests on, once each
// of them is valid by itself.
func (v *validator) fencing(c *Config) {
	for _, p := range v.problems {
		if strings.Contains(p.Msg, "consul.session_ttl") || strings.Contains(p.Msg, "consul.lock_delay") || strings.Contains(p.Msg, "consul.raft_multiplier") {
			return
		}
	}
	for _, p := range c.Fencing().check() {
		v.addAt(strings.Fields(p[0]), "%s", p[1])
	}
}

func (v *validator) postgres(c *Config) {
	p := &c.Postgres
	v.absPath("postgres.bin_dir", p.BinDir, `"/usr/lib/postgresql/15/bin"`, true)
	// A data_dir derived from a bad node.data_dir is the same mistake; the
	// node.data_dir problem names it.
	if filepath.IsAbs(c.Node.DataDir) || p.DataDir != filepath.Join(c.Node.DataDir, "postgres") {
		v.absPath("postgres.data_dir", p.DataDir, `"/var/lib/understudy/postgres"`, true)
	}
	if p.DataDir != "" && filepath.Clean(p.DataDir) == filepath.Clean(c.Node.DataDir) {
		v.addAt([]string{"postgres.data_dir", "node.data_dir"},
			`postgres.data_dir is node.data_dir itself; PostgreSQL needs a directory of its own, like %s`,
			quote(filepath.Join(c.Node.DataDir, "postgres")))
	}
	switch {
	case p.Host == c.Node.Address && p.Host != "": // the node.address check covers it
	case p.Host != "":
		v.host("postgres.host", p.Host)
	case c.Node.Address != "": // else the missing node.address says it all
		v.add("postgres.host", `postgres.host is empty; write host = "10.0.0.5" or remove the line to use node.address`)
	}
	v.port("postgres.port", p.Port, "5432")
	for _, f := range []struct{ name, value string }{{"user", p.User}, {"database", p.Database}, {"os_user", p.OSUser}} {
		if f.value == "" {
			v.add("postgres."+f.name, `postgres.%s is empty; write %s = "postgres" or remove the line`, f.name, f.name)
		}
	}
	v.absPath("postgres.password_file", p.PasswordFile, `"/etc/understudy/pgpass"`, false)
	if r := p.CloneMaxRate; r != 0 && (r < 32<<10 || r > 1<<30) {
		v.add("postgres.clone_max_rate", `postgres.clone_max_rate = %d bytes/s is outside what pg_basebackup takes; write "0" (no cap) or a size from "32kB" to "1GB"`, r)
	}
	if p.MaximumLagOnFailover < 0 {
		v.add("postgres.maximum_lag_on_failover", `postgres.maximum_lag_on_failover = %d is negative; write "0" or a size like "16MB"`,
			p.MaximumLagOnFailover)
	}
	if p.ConnectTimeout <= 0 {
		v.add("postgres.connect_timeout", `postgres.connect_timeout = %s is not positive; write a duration like "2s"`,
			quote(formatDuration(p.ConnectTimeout)))
	}
	// Only the shape is checked: PostgreSQL itself reads the lines, and
	// its log names a wrong one when it starts or reloads.
	for i, l := range p.PgHBA {
		switch {
		case strings.TrimSpace(l) == "":
			v.add("postgres.pg_hba", `postgres.pg_hba has an empty line at position %d; remove it, or write a pg_hba.conf line like "hostssl app app 10.0.0.0/24 scram-sha-256"`, i+1)
		case strings.ContainsAny(l, "\r\n"):
			v.add("postgres.pg_hba", `postgres.pg_hba = %s at position %d holds a line break; write each pg_hba.conf line as a string of its own`, quote(l), i+1)
		}
	}
}

func (v *validator) checks(c *Checks) {
	if c.Interval < minInterval {
		v.add("checks.interval", `checks.interval = %s is shorter than 100ms; write "100ms" or more`, quote(formatDuration(c.Interval)))
	}
	if c.TTLMultiplier < 1 {
		v.add("checks.ttl_multiplier", "checks.ttl_multiplier = %d is less than 1; write 1 or more (each check's TTL is interval x ttl_multiplier)",
			c.TTLMultiplier)
	}
	if c.Interval >= minInterval && c.TTLMultiplier >= 1 && int64(c.TTLMultiplier) > int64(maxCheckTTL/c.Interval) {
		v.addAt([]string{"checks.ttl_multiplier", "checks.interval"},
			"checks.interval x checks.ttl_multiplier (each check's TTL) is longer than 1h; write a smaller interval or ttl_multiplier")
	}
	if c.HeartbeatInterval < c.Interval {
		v.addAt([]string{"checks.heartbeat_interval", "checks.interval"},
			"checks.heartbeat_interval = %s is shorter than checks.interval = %s; write heartbeat_interval = %s or more",
			quote(formatDuration(c.HeartbeatInterval)), quote(formatDuration(c.Interval)), quote(formatDuration(c.Interval)))
	}
}

func (v *validator) api(c *Config) {
	a := &c.API
	host, port, err := net.SplitHostPort(a.Listen)
	n, perr := strconv.Atoi(port)
	switch {
	case err != nil || perr != nil || (host != "" && !validHost(host)):
		v.add("api.listen", `api.listen = %s is not host:port; write ":8008" to listen on every address, or "10.0.0.5:8008"`, quote(a.Listen))
	case n < 1 || n > 65535:
		v.add("api.listen", `api.listen = %s has port %d, outside 1..65535; write a port like ":8008"`, quote(a.Listen), n)
	case n == c.Postgres.Port:
		v.addAt([]string{"api.listen", "postgres.port"},
			`api.listen = %s uses postgres.port %d; write another port, like ":8008"`, quote(a.Listen), n)
	}
	v.absPath("api.basic_auth_file", a.BasicAuthFile, `"/etc/understudy/api-users"`, false)
	for i, p := range a.Open {
		if !slices.Contains(OpenPaths, p) {
			v.add("api.open", "api.open[%d] = %s is not one of %s; the other endpoints change the cluster or show more of it than a load balancer needs",
				i, quote(p), strings.Join(OpenPaths, ", "))
		}
	}
}
