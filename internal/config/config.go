package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// DefaultPath is where the daemons and the CLI look for the file unless told
// otherwise.
const DefaultPath = "/etc/understudy/understudy.hcl"

// Partition modes: what the minority side of a Consul partition does.
const (
	// PartitionActiveMinority: the minority recovers a Consul quorum of its
	// own and keeps serving; its writes are at risk until the partition heals.
	PartitionActiveMinority = "active-minority"
	// PartitionFence: the minority stops taking writes until it is back in
	// the majority.
	PartitionFence = "fence"
)

// Consul outage modes (consul.outage): what the active does while no Consul
// server has a leader and the network between the nodes is whole.
const (
	// OutageFailsafe: the active keeps taking writes while every other
	// member confirms it over the API (Patroni's failsafe mode); see
	// Fencing.
	OutageFailsafe = "failsafe"
	// OutageFence: the peers carry the active's lease across a Consul
	// leader election only (Fencing.ElectionCarry); a longer outage
	// stops its writes.
	OutageFence = "fence"
)

// DefaultMinorityTimeout is cluster.minority_timeout when the file sets
// none: above the default Fencing().Takeover() (3.475 s) with a margin for
// a round of probes, so a partition is reported a second or two after the
// cut-off side fenced, and long enough that a Consul leader election or a
// lost probe is never taken for one.
const DefaultMinorityTimeout = 5 * time.Second

// RoundSlack is how much earlier than minority_timeout after the first
// round that found a node cut the round that completes it may run: rounds
// run on a ticker, and a tick late by a fraction of a millisecond would
// otherwise delay the partition by a whole round. Validate keeps
// minority_timeout at least this far above the takeover time.
const RoundSlack = 20 * time.Millisecond

// minorityTimeoutFor is the default cluster.minority_timeout of c:
// DefaultMinorityTimeout, or, when a longer lease or interval needs more,
// the takeover time plus one round, in whole seconds.
func (c *Config) minorityTimeoutFor() time.Duration {
	need := max(c.Fencing().Takeover()+c.Checks.Interval, 2*c.Checks.Interval)
	return max(DefaultMinorityTimeout, (need + time.Second - 1).Truncate(time.Second))
}

// Config is one node's effective configuration: the HCL file after defaults
// and validation. Durations are time.Duration, sizes are bytes.
type Config struct {
	// Path is the file the configuration was loaded from ("" for Default()).
	Path     string
	Cluster  Cluster
	Node     Node
	Consul   Consul
	Postgres Postgres
	Checks   Checks
	API      API
	Services []Service
	// Syncthing is used only when there are Files blocks.
	Syncthing Syncthing
	Files     []Files
	// PromoteHooks run once, in order, each time the node becomes active.
	PromoteHooks []Hook
	Logging      Logging

	// src remembers where each field was written, so that Validate can
	// name the line of a value even after Load returned. nil for a Config
	// built in code.
	src *source
}

// Cluster is the `cluster` block: what every node of the cluster must agree
// on. A node with a different name or prefix is in another cluster.
type Cluster struct {
	// Name is required; lowercase letters, digits and '-'. It is part of
	// every Consul key: <kv_prefix>/<name>/...
	Name string // required
	// KVPrefix is the Consul KV folder above the cluster ("a/b" allowed, no
	// leading or trailing '/').
	KVPrefix string // default "understudy"
	// PartitionMode is what the minority side of a partition does:
	// "fence" (the fencing the role loop does: the minority takes no
	// writes), or "active-minority" (its consul-watchers recover a Consul
	// quorum of their own and it elects an active; at the heal the side
	// written last stays: acknowledged writes of the other can be lost,
	// hence refused with postgres.synchronous, and Warnings).
	PartitionMode string // "fence" (default)
	// MinorityTimeout is how long the consul-watcher must see this node cut
	// from a majority of the cluster's Consul servers (their RPC ports do
	// not answer) before it says the node is in the minority: a partition
	// starts, recorded as a partition event, shown by cluster status and
	// GET /v1/status/partition. It ends at the first round that reaches a
	// majority again. It is at least Fencing().Takeover() (and RoundSlack
	// above it): by the time a
	// node says it is in the minority, an active on its side has stopped
	// taking writes (no renewal of its lease can commit without a
	// majority), so "minority" never describes a node that may still
	// write. And at least two checks.interval, the watcher's round, so one
	// lost probe is no partition.
	//
	// Not written (or 0), it is DefaultMinorityTimeout, or more when the
	// lease or the interval need more (minorityTimeoutFor).
	MinorityTimeout time.Duration // default 5s, Fencing().Takeover()..10m
}

// Node is the `node` block: this machine.
type Node struct {
	// Name is required; lowercase letters, digits and '-', because it
	// becomes a Consul key (members/<name>) and the tie-breaker of the
	// election. It must be unique in the cluster.
	Name string // required
	// Address is required: peers reach this node's API and PostgreSQL there.
	Address string // required: IP or host name peers use to reach this node
	// DataDir holds understudy's own state and, unless postgres.data_dir says
	// otherwise, the PostgreSQL data directory. Absolute.
	DataDir string // default "/var/lib/understudy"
	// Priority breaks ties between equally advanced standbys: higher wins.
	// It never beats a standby that has received more WAL.
	Priority int // default 100, >= 0
	// NoFailover keeps the node a standby forever: it is never elected.
	NoFailover bool // default false
	// Tags are published in the member record and on the Consul service.
	Tags []string
}

// Consul is the `consul` block: how to reach the local Consul agent.
type Consul struct {
	Address string // default "127.0.0.1:8500"
	// Scheme "https" needs CAFile: understudy does not fall back to the
	// system roots for a cluster-internal CA. With "https", Address defaults
	// to 127.0.0.1:8501 and CAFile, CertFile and KeyFile to the files
	// `cluster start` and `cluster join` write under <node.data_dir>/tls.
	Scheme string // "http" (default) or "https"
	Token  string // ACL token, default ""
	// TokenFile holds the ACL token every Consul client of this node's
	// daemons and commands presents (read once, when the client is made:
	// after a new token is written, restart the daemons). With scheme
	// "https" and no Token it defaults to <node.data_dir>/acl/daemons.token,
	// the daemons' token `cluster start` and `cluster join` write there
	// (README "Consul ACLs"). Token and TokenFile exclude each other.
	TokenFile string // default "" ("<node.data_dir>/acl/daemons.token" with https)
	// CAFile, CertFile and KeyFile are only used with scheme "https";
	// CertFile and KeyFile go together (client certificate).
	CAFile   string // TLS material for the agent's HTTPS API; "" = none
	CertFile string
	KeyFile  string
	// SessionTTL is the TTL of each handler-runner's Consul session: a
	// handler-runner that cannot renew it for this long loses it (and the
	// lock with it). It must be longer than LeaderLease.
	SessionTTL time.Duration // default 10s, Consul accepts 10s..24h
	// LockDelay is how long Consul refuses the lock after a session that
	// held it was invalidated. Safety does not rest on it (see Fencing).
	LockDelay time.Duration // default 1s, 0..60s
	// LeaderLease is how long the active may take writes after the last
	// renewal of its lock that Consul committed (Fencing: the invariant and
	// why the default is what it is).
	LeaderLease time.Duration // default 3s, at least 2s x RaftMultiplier, under SessionTTL

	// RaftMultiplier scales Consul's Raft timing (performance {
	// raft_multiplier }): a Consul leader election takes up to about
	// 2 s x RaftMultiplier, which the lease must outlast. 1 (the default)
	// suits machines that are not overloaded; raise it on slow ones, and
	// the lease with it.
	RaftMultiplier int // default 1, 1..10
	// GossipProbeInterval, GossipProbeTimeout and GossipSuspicionMult are
	// Consul's LAN gossip timing (gossip_lan): how soon a dead node is
	// declared dead (Bounds). Consul's defaults (1s, 500ms, 4) suit large
	// clusters; a few nodes on a LAN can be this quick.
	GossipProbeInterval time.Duration // default 500ms, 100ms..10s
	GossipProbeTimeout  time.Duration // default 250ms, under the interval
	GossipSuspicionMult int           // default 3, 1..10
	// Outage is what the active does while Consul has no leader (servers
	// down or restarting, no quorum) but the nodes reach each other:
	// OutageFailsafe (the default) or OutageFence. A partition is not an
	// outage: a cut-off active fences in both.
	Outage string // default "failsafe"
}

// Postgres is the `postgres` block: the PostgreSQL instance understudy owns
// on this node.
type Postgres struct {
	BinDir string // default "/usr/lib/postgresql/15/bin"
	// DataDir, when not written, follows node.data_dir.
	DataDir string // default "<node.data_dir>/postgres"
	// Host, when not written, follows node.address.
	Host         string // where checks connect; default node.address
	Port         int    // default 5432, 1..65535; must differ from api.listen's port
	User         string // default "postgres"
	Database     string // default "postgres"
	PasswordFile string // default "": no password
	OSUser       string // OS user that runs postgres, default "postgres"
	// Synchronous: only a member of the synchronous set may be elected, so
	// no acknowledged write is lost.
	Synchronous bool // default false
	// MaximumLagOnFailover: a standby further behind than this is never
	// elected. 0 means only a standby with everything the active sent.
	MaximumLagOnFailover int64 // bytes; HCL takes "16MB", "1GB", "0"; default 16 MiB
	// CloneMaxRate caps pg_basebackup's transfer rate, in bytes per second,
	// when a standby is cloned (a join, a re-clone), so a clone does not
	// starve the active's disk and network. 0 means no cap.
	CloneMaxRate   int64         // bytes per second; HCL takes "50MB"; default 0; 0 or 32kB..1GB
	ConnectTimeout time.Duration // default 2s, > 0
	// PgHBA are pg_hba.conf lines written right after understudy's own:
	// how the operator lets the managed application in, like "hostssl app
	// app 10.0.0.0/24 scram-sha-256". The first matching line wins, so on a
	// TLS node a TLS connection as User still needs the certificate; a line
	// here that admits User without TLS (the dev cluster trusts loopback)
	// is the operator's choice.
	PgHBA []string // default none; each non-empty, one line

	// CAFile, CertFile, KeyFile and TLSDir are not written in the file: on
	// a TLS node (consul.scheme = "https") they are derived, the node's TLS
	// files and <node.data_dir>/postgres-tls, and PostgreSQL then takes
	// only certificate logins for understudy's user. PostgreSQL's programs
	// run as os_user and cannot read root's files, so copies of the three
	// owned by os_user are kept in TLSDir; every connection understudy
	// makes uses the copies. All four are "" elsewhere.
	CAFile, CertFile, KeyFile string
	TLSDir                    string
}

// Checks is the `checks` block: how often the check-runner looks and how
// Consul judges silence.
type Checks struct {
	// Interval is how often every check runs. The TTL of each Consul check
	// is Interval x TTLMultiplier, at most 1h.
	Interval time.Duration // default 1s, >= 100ms
	// HeartbeatInterval is how often the member record is rewritten when
	// nothing changed.
	HeartbeatInterval time.Duration // default 15s, >= Interval
	TTLMultiplier     int           // default 1, >= 1
	// FailFast fails a check in Consul at once on an error instead of
	// letting its TTL run out.
	FailFast bool // default true
}

// API is the `api` block: the handler-runner's HTTP API (/status for
// HAProxy, the CLI's calls).
type API struct {
	Listen        string // default ":8008"; host:port, host may be empty
	BasicAuthFile string // default ""
	// Open are the paths a TLS node answers without a client certificate
	// or basic auth: the load balancer's checks. Any of OpenPaths.
	Open []string // default DefaultOpen
}

// OpenPaths are the paths api.open may name: read-only answers that give
// away no more than a load balancer needs (and /metrics, for a scraper
// that cannot present a certificate).
var OpenPaths = []string{"/status", "/health", "/replica", "/metrics"}

// DefaultOpen is api.open when the file does not set it: what HAProxy's
// httpchk calls.
func DefaultOpen() []string { return []string{"/status", "/health", "/replica"} }

// Service is one `service "NAME"` block, run by exactly one of three
// backends: a systemd unit (SystemdUnit), three commands that manage it
// (Start, Stop, Status), or a process understudy starts and supervises itself
// (Command).
type Service struct {
	// Name is the block label: lowercase letters, digits and '-', unique.
	Name        string   // the block label
	SystemdUnit string   // exclusive with Command and with Start/Stop/Status
	Start       []string // argv
	Stop        []string
	Status      []string // exit 0 = running
	// Command is the argv of a long-running program that understudy starts
	// without a shell, restarts when it exits and stops with SIGTERM, then
	// SIGKILL. The program must stay in the foreground: one that forks into
	// the background and exits is seen as exiting, and restarted.
	Command []string
	// ActiveOnly services run on the active node only; the others run on
	// every node.
	ActiveOnly bool
}

// Logging is the `logging` block: where the daemons write cluster.log,
// beside journald.
type Logging struct {
	// Dir holds cluster.log: one line per role transition and cluster event
	// this node's daemons record (time, node, kind, message), the file an
	// operator reads first, as the seed's cloudify-cluster.log. "" turns it
	// off. The daemons create the directory (0755) when it is missing.
	Dir string // default DefaultLogDir; absolute
}

// DefaultLogDir is logging.dir when the file does not set it: what the
// package's logrotate file rotates (/var/log/understudy/*.log).
const DefaultLogDir = "/var/log/understudy"

// ClusterLogPath is the path of cluster.log, "" when logging.dir is empty.
func (c *Config) ClusterLogPath() string {
	if c.Logging.Dir == "" {
		return ""
	}
	return filepath.Join(c.Logging.Dir, "cluster.log")
}

// Syncthing is the `syncthing` block: the Syncthing that mirrors the files
// blocks, one per node, run and configured by understudy (its home is
// <node.data_dir>/syncthing).
type Syncthing struct {
	// Binary is the syncthing program; "" finds the package's pinned one
	// (/usr/lib/understudy/bin/syncthing beside /usr/bin/understudy), else
	// bin/syncthing beside the understudy binary (what `make deps` builds,
	// the pinned version), else syncthing on PATH.
	Binary string
	// Port is where Syncthing's sync protocol listens, on node.address
	// only; peers connect there.
	Port int // default 22000
	// APIPort is Syncthing's REST API, on 127.0.0.1 only, with an API key
	// understudy generates.
	APIPort int // default 8384
}

// Files is one `files "NAME"` block: a directory Syncthing mirrors from the
// active node to the standbys.
type Files struct {
	// Name is the block label and the Syncthing folder ID: lowercase
	// letters, digits and '-', unique.
	Name string // the block label
	Path string // absolute, an existing directory, unique, outside the others and node.data_dir
	// MaxOutOfSync is how many bytes a standby may lack before the files
	// check warns, once it has lacked them for Settle: a burst of writes on
	// the active is not a warning, a standby that stays behind is.
	MaxOutOfSync int64         // bytes; HCL takes "10MB"; default 0
	Settle       time.Duration // default 60s
}

// DefaultFilesSettle is how long a standby may be out of sync before the
// files check warns, when a files block sets no settle.
const DefaultFilesSettle = 60 * time.Second

// DefaultHookTimeout bounds a promote hook that sets no timeout.
const DefaultHookTimeout = 30 * time.Second

// Hook is one `promote_hook "NAME"` block: a command the node runs once each
// time it becomes active ("once-mode"), after its active-only services have
// started. A hook that fails or times out is logged and recorded as an
// event; the node stays active.
type Hook struct {
	Name    string        // the block label
	Command []string      // argv, required
	Timeout time.Duration // default 30s, 1s..1h
}

// Default returns every default. Postgres.DataDir follows the default
// Node.DataDir and Postgres.Host is empty (Node.Address has no default):
// code that changes Node fields of the result sets those two itself. Load
// derives them after reading the file instead.
func Default() *Config {
	c := base()
	c.deriveDefaults()
	return c
}

// base is Default without the values that derive from other fields.
func base() *Config {
	return &Config{
		Cluster: Cluster{KVPrefix: "understudy", PartitionMode: PartitionFence},
		Node:    Node{DataDir: "/var/lib/understudy", Priority: 100},
		Consul: Consul{
			RaftMultiplier: 1, GossipProbeInterval: 500 * time.Millisecond,
			GossipProbeTimeout: 250 * time.Millisecond, GossipSuspicionMult: 3,
			Address:     "127.0.0.1:8500",
			Scheme:      "http",
			SessionTTL:  10 * time.Second,
			LockDelay:   time.Second,
			LeaderLease: DefaultLeaderLease,
			Outage:      OutageFailsafe,
		},
		Postgres: Postgres{
			BinDir:               "/usr/lib/postgresql/15/bin",
			Port:                 5432,
			User:                 "postgres",
			Database:             "postgres",
			OSUser:               "postgres",
			MaximumLagOnFailover: 16 << 20,
			ConnectTimeout:       2 * time.Second,
		},
		Checks: Checks{
			Interval:          time.Second,
			HeartbeatInterval: 15 * time.Second,
			TTLMultiplier:     1,
			FailFast:          true,
		},
		API:       API{Listen: ":8008", Open: DefaultOpen()},
		Syncthing: Syncthing{Port: 22000, APIPort: 8384},
		Logging:   Logging{Dir: DefaultLogDir},
	}
}

// deriveDefaults fills the fields whose default is another field, so that
// `node { data_dir = "/srv/u" }` moves PostgreSQL along with it.
func (c *Config) deriveDefaults() {
	if c.Cluster.MinorityTimeout == 0 {
		c.Cluster.MinorityTimeout = c.minorityTimeoutFor()
	}
	if c.Postgres.DataDir == "" && c.Node.DataDir != "" {
		c.Postgres.DataDir = filepath.Join(c.Node.DataDir, "postgres")
	}
	if c.Postgres.Host == "" {
		c.Postgres.Host = c.Node.Address
	}
	// A node set up by `cluster start` or `cluster join` talks to its agent
	// over HTTPS with the TLS material those commands write under
	// node.data_dir: `consul { scheme = "https" }` is all the file needs.
	if c.Consul.Scheme == "https" && c.Node.DataDir != "" {
		if c.Consul.Address == "127.0.0.1:8500" {
			c.Consul.Address = "127.0.0.1:8501"
		}
		tls := filepath.Join(c.Node.DataDir, "tls")
		if c.Consul.CAFile == "" {
			c.Consul.CAFile = filepath.Join(tls, "ca.pem")
		}
		if c.Consul.CertFile == "" && c.Consul.KeyFile == "" {
			c.Consul.CertFile, c.Consul.KeyFile = filepath.Join(tls, "node.pem"), filepath.Join(tls, "node-key.pem")
		}
		// Consul runs with ACLs, default deny (lifecycle): without the
		// daemons' token a client may do nothing.
		if c.Consul.TokenFile == "" && c.Consul.Token == "" {
			c.Consul.TokenFile = filepath.Join(c.Node.DataDir, "acl", "daemons.token")
		}
		// PostgreSQL authenticates peers by certificate too (between
		// real hosts a peer must prove it is a node of the cluster), with
		// a CA and certificate of its own that Consul does not accept:
		// the postgres OS user holds their key (certs.NewPostgresCA).
		c.Postgres.CAFile = filepath.Join(tls, "postgres-ca.pem")
		c.Postgres.CertFile = filepath.Join(tls, "postgres.pem")
		c.Postgres.KeyFile = filepath.Join(tls, "postgres-key.pem")
		c.Postgres.TLSDir = filepath.Join(c.Node.DataDir, "postgres-tls")
	}
}

// CheckTTL is the TTL of each Consul check: Interval x TTLMultiplier.
func (c Checks) CheckTTL() time.Duration {
	return c.Interval * time.Duration(c.TTLMultiplier)
}

// Redacted returns a copy that is safe to print: the Consul ACL token is
// replaced, everything else is kept.
func (c *Config) Redacted() *Config {
	r := *c
	if r.Consul.Token != "" {
		r.Consul.Token = "<redacted>"
	}
	return &r
}

// APIURL is where peers reach this node's handler-runner: the listen
// address, with the node's address when it listens on every interface.
func (c *Config) APIURL() string {
	host, port, err := net.SplitHostPort(c.API.Listen)
	if err != nil {
		return ""
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = c.Node.Address
	}
	scheme := "http"
	if c.TLS() {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// TLS reports whether the node is set up for TLS everywhere, as `cluster
// start` and `cluster join` set it up: Consul over HTTPS with the node's
// certificate, and the handler-runner's API served over HTTPS with the same
// certificate.
func (c *Config) TLS() bool { return c.Consul.Scheme == "https" }

// SyncthingHome is the node's Syncthing home: its configuration, database,
// API key and identity (the node certificate).
func (c *Config) SyncthingHome() string { return filepath.Join(c.Node.DataDir, "syncthing") }

// ConsulAgentTLSDir is where cluster start and join put the copies of the
// node's CA certificate, certificate and key that its Consul agent reads
// (owned by the agent's user on a systemd host), and where a renewal
// copies the new pair.
func (c *Config) ConsulAgentTLSDir() string { return filepath.Join(c.Node.DataDir, "consul", "tls") }

// SyncthingListen is where the node's Syncthing takes peer connections:
// node.address only.
func (c *Config) SyncthingListen() string {
	return net.JoinHostPort(c.Node.Address, strconv.Itoa(c.Syncthing.Port))
}

// SyncthingAPI is the node's Syncthing REST API, on loopback only.
func (c *Config) SyncthingAPI() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Syncthing.APIPort))
}

// TLSFiles are the CA certificate, node certificate and key of a TLS node.
func (c *Config) TLSFiles() (ca, cert, key string) {
	return c.Consul.CAFile, c.Consul.CertFile, c.Consul.KeyFile
}

// NodeTLSDir is the directory of the node's CA, certificate and key, which
// cluster start and join put side by side (certs.ReadPaths); an error when
// the certificate was put elsewhere by hand: understudy does not renew or
// replace such files.
func (c *Config) NodeTLSDir() (string, error) {
	ca, cert, _ := c.TLSFiles()
	if filepath.Dir(cert) != filepath.Dir(ca) {
		return "", fmt.Errorf("the node certificate %s is not beside the CA %s, where cluster start and join put it: renew or replace it by hand", cert, ca)
	}
	return filepath.Dir(ca), nil
}

// ManagementTokenFile is where a node keeps the cluster's Consul management
// token, beside consul.token_file: cluster start writes it, a join brings
// it, and the handler-runner reads it to create a joining node's agent
// token. "" on a node whose Consul clients use no token file.
func (c *Config) ManagementTokenFile() string {
	if c.Consul.TokenFile == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(c.Consul.TokenFile), "management.token")
}
