package cluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Role is what a node's PostgreSQL is doing, as the node itself sees it.
type Role string

const (
	RolePrimary Role = "primary" // not in recovery: takes writes
	RoleStandby Role = "standby" // in recovery: replays WAL from a primary
	RoleUnknown Role = "unknown" // PostgreSQL could not be asked
)

// LSN is a PostgreSQL write-ahead log position, in bytes since the start of WAL.
type LSN uint64

// ParseLSN reads PostgreSQL's textual form "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: want the form X/Y in hex", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return LSN(h<<32 | l), nil
}

// String is PostgreSQL's textual form, so records and logs read like psql output.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF) }

// MarshalText and UnmarshalText keep LSNs in PostgreSQL's form in JSON records.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Member is the record a node's check-runner publishes at members/<node> every
// interval. It is what the others know of the node without asking it; the
// election asks peers again at the moment it decides, because this may be one
// interval old.
type Member struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	APIURL  string   `json:"api_url,omitempty"`
	Role    Role     `json:"role"`
	Tags    []string `json:"tags,omitempty"`
	// Priority breaks ties between equally advanced standbys; higher wins.
	Priority   int  `json:"priority"`
	NoFailover bool `json:"nofailover,omitempty"`
	// TTLMultiplier is the node's effective checks.ttl_multiplier (runtime
	// options included).
	TTLMultiplier int `json:"ttl_multiplier,omitempty"`

	PostgresPort int `json:"postgres_port"`
	// Timeline is the current timeline of a primary or the timeline a standby
	// receives; 0 when unknown.
	Timeline uint32 `json:"timeline"`
	// WriteLSN is the primary's current write position (0 on a standby).
	WriteLSN LSN `json:"write_lsn"`
	// ReceiveLSN and ReplayLSN are a standby's positions (0 on a primary).
	ReceiveLSN LSN `json:"receive_lsn"`
	ReplayLSN  LSN `json:"replay_lsn"`
	// LagBytes is how far the standby's replay position trails the active's
	// last published write position; -1 when it cannot be told.
	LagBytes int64 `json:"lag_bytes"`
	// UpstreamHost and UpstreamPort are where a standby streams from.
	UpstreamHost string `json:"upstream_host,omitempty"`
	UpstreamPort int    `json:"upstream_port,omitempty"`

	Versions Versions `json:"versions"`
	// ConsulNode is the node's name in Consul (its agent's node name), which
	// need not be the member's name: `nodes remove` takes it out of Consul.
	ConsulNode string `json:"consul_node,omitempty"`
	// SyncthingDeviceID is the Syncthing identity of the node (from its
	// certificate) and SyncthingAddress where its Syncthing takes peer
	// connections ("tcp://10.0.0.5:22000"); both empty on a node without
	// files blocks. Every node's handler-runner adds the others' devices
	// from these.
	SyncthingDeviceID string `json:"syncthing_device_id,omitempty"`
	SyncthingAddress  string `json:"syncthing_address,omitempty"`
	// Files is each mirrored folder as the node's Syncthing last reported it.
	Files map[string]FolderState `json:"files,omitempty"`
	// Partition is the node's consul-watcher's last view (who it reaches,
	// whether it is in the majority), as the check-runner found it; nil
	// when no consul-watcher has run. In a partition the minority side's
	// record cannot be written: ask the node's GET /v1/status/partition.
	Partition *Partition `json:"partition,omitempty"`
	// Diverged is what rewinds of this node kept aside and an operator has
	// not removed yet.
	Diverged []Diverged `json:"diverged,omitempty"`
	// Checks maps each health check to its last state ("passing", "warning",
	// "critical"), for `nodes list` without a second query.
	Checks map[string]string `json:"checks,omitempty"`
	// RoleChanged is when Role last changed between primary and standby,
	// as the node's check-runner saw it (RoleClock): what `nodes list`
	// shows as LAST CHANGE. Zero until the check-runner has seen a role.
	RoleChanged time.Time `json:"role_changed,omitzero"`
	// Heartbeat is when the record was written: its age says whether the
	// check-runner is alive.
	Heartbeat time.Time `json:"heartbeat"`
}

// RoleClock keeps when a node's PostgreSQL last changed role. A round
// where PostgreSQL could not be asked (RoleUnknown) is not a change: a
// crash and restart in the same role keeps the time. The check-runner
// loads it from the record it finds at start, so a restart of the
// check-runner keeps it too.
type RoleClock struct {
	role Role
	at   time.Time
}

// Load takes the role and time of the node's previous record.
func (c *RoleClock) Load(prev Member) {
	if prev.Role != RoleUnknown && prev.Role != "" && !prev.RoleChanged.IsZero() {
		c.role, c.at = prev.Role, prev.RoleChanged
	}
}

// Observe notes the role seen at now and returns when it last changed
// (zero while no role has been seen).
func (c *RoleClock) Observe(role Role, now time.Time) time.Time {
	if role != RoleUnknown && role != "" && role != c.role {
		c.role, c.at = role, now.UTC()
	}
	return c.at
}

// Upstream is the member m streams from, by the host and port of its WAL
// receiver (Patroni's topology); the host:port itself when no member
// matches, "" when m streams from nothing.
func Upstream(m Member, members []Member) string {
	if m.UpstreamHost == "" {
		return ""
	}
	for _, o := range members {
		if o.Name != m.Name && o.Address == m.UpstreamHost && o.PostgresPort == m.UpstreamPort {
			return o.Name
		}
	}
	return net.JoinHostPort(m.UpstreamHost, strconv.Itoa(m.UpstreamPort))
}

// FolderState is one mirrored folder on one node, for `nodes list` and the
// files check.
type FolderState struct {
	// State is Syncthing's: "idle", "scanning", "syncing", ...; "unknown"
	// when Syncthing could not be asked.
	State string `json:"state"`
	// Type is "sendonly" on the active, "receiveonly" on a standby.
	Type string `json:"type,omitempty"`
	// OutOfSyncBytes is how much a standby still lacks of the active's
	// files (0 on the active).
	OutOfSyncBytes int64 `json:"out_of_sync_bytes"`
	// LocalChanges counts files changed on a standby and not yet reverted.
	LocalChanges int64 `json:"local_changes,omitempty"`
}

// Versions of the pieces a node runs; a mixed cluster is visible at a glance.
type Versions struct {
	Understudy string `json:"understudy"`
	Postgres   string `json:"postgres,omitempty"`
	Consul     string `json:"consul,omitempty"`
}

// Leader is the value of the leader key: who holds the lock and since when.
type Leader struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Address, PostgresPort and APIURL say where the active is, so a
	// standby can follow it from this one read.
	Address      string `json:"address,omitempty"`
	PostgresPort int    `json:"postgres_port,omitempty"`
	APIURL       string `json:"api_url,omitempty"`
	// WriteLSN is the active's write position, refreshed by the active every
	// interval. It outlives the active: the election measures
	// maximum_lag_on_failover against it, not against the former active's
	// member record, which its restart rewrites.
	WriteLSN LSN `json:"write_lsn,omitempty"`
	// Session, Renewal and LeaseMS are the holder's lease (config.Fencing):
	// the holder rewrites the key every renewal with Renewal one higher, and
	// may take writes for LeaseMS after sending the last renewal Consul
	// committed. A node that acquires the key after it waits out that lease,
	// measured from when it first saw the last Renewal, unless Fenced.
	Session string `json:"session,omitempty"`
	Renewal uint64 `json:"renewal,omitempty"`
	LeaseMS int64  `json:"lease_ms,omitempty"`
	// Fenced is written by the holder as it releases the key after its
	// PostgreSQL stopped taking writes: the next holder need not wait.
	Fenced bool `json:"fenced,omitempty"`
}

// Diverged is what a rewind throws away, kept aside before it runs: a former
// primary's WAL from the point where its history left the new primary's to
// its last record. Those are writes it acknowledged (in asynchronous mode)
// that the cluster no longer has. They stay in Dir until an operator
// removes it.
type Diverged struct {
	Dir      string `json:"dir"`
	Timeline uint32 `json:"timeline"`
	From     LSN    `json:"from"` // where the histories diverged
	To       LSN    `json:"to"`   // where the last record kept starts
	// Commits counts the transactions committed after From: what was lost.
	Commits int       `json:"commits"`
	At      time.Time `json:"at"`
	// Ranges are the timelines the kept records span, when more than one
	// (a partition's minority side that promoted on its own).
	Ranges []WALRange `json:"ranges,omitempty"`
}

// WALRange is the records of one timeline from From to To (0: to the end).
type WALRange struct {
	Timeline uint32 `json:"timeline"`
	From     LSN    `json:"from"`
	To       LSN    `json:"to,omitempty"`
	Commits  int    `json:"commits"`
}

// Inspect is the command that shows the kept records (one per timeline).
func (d Diverged) Inspect() string {
	if len(d.Ranges) == 0 {
		return fmt.Sprintf("pg_waldump -p %s -t %d -s %s", d.Dir, d.Timeline, d.From)
	}
	var cmds []string
	for _, r := range d.Ranges {
		c := fmt.Sprintf("pg_waldump -p %s -t %d -s %s", d.Dir, r.Timeline, r.From)
		if r.To != 0 {
			c += " -e " + r.To.String()
		}
		cmds = append(cmds, c)
	}
	return strings.Join(cmds, "; ")
}

// Fenced is what a node writes at fenced/<node> once its PostgreSQL has
// stopped taking writes after it lost the leader key without releasing it
// (its session invalidated, its lease run out): the new active, waiting out
// this node's lease, may stop waiting when Session is the one it waits for.
type Fenced struct {
	Session string    `json:"session"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	LSN     LSN       `json:"lsn,omitempty"`
}

// Lag is how many bytes replay trails the primary's write position, or -1 when
// either is unknown. A standby that is ahead of a stale primary record is 0.
func Lag(primaryWrite, replay LSN) int64 {
	if primaryWrite == 0 || replay == 0 {
		return -1
	}
	if replay >= primaryWrite {
		return 0
	}
	return int64(primaryWrite - replay)
}
