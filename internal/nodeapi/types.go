package nodeapi

import (
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Role is a node's place in the handler-runner's state machine, as the API
// reports it. Transitions, and why, are logged and recorded as events:
//
//	rejoining -> standby      PostgreSQL runs as a standby of the leader (or of nobody while there is none)
//	standby   -> candidate    the leader key is free
//	standby   -> rejoining    a new leader, or the standby cannot stream from the leader
//	candidate -> active       chosen as next-master and acquired the leader key
//	candidate -> standby      another node was chosen and took the lock, or the election timed out
//	active    -> demoting     lock lost or unconfirmed, PostgreSQL down, next-master names another node
//	                          (a lock lost with the session while healthy is first taken back: handlerrunner/regain.go)
//	demoting  -> rejoining    active-only services stopped, PostgreSQL stopped, lock released
type Role string

const (
	RoleRejoining Role = "rejoining"
	RoleStandby   Role = "standby"
	RoleCandidate Role = "candidate"
	RoleActive    Role = "active"
	RoleDemoting  Role = "demoting"
)

// NodeStatus is what a node says of itself at GET /v1/status/node (and
// /health): what the election asks each peer at the moment it decides,
// rather than trusting a member record that may be an interval old.
type NodeStatus struct {
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	Since      time.Time `json:"since"`
	Reason     string    `json:"reason"`
	HasSession bool      `json:"has_session"`
	// Serving is true on the active once PostgreSQL is promoted and the lock
	// confirmed within the lease: the /status 200 condition.
	Serving bool `json:"serving"`
	// LeaseConfirmed is when the active last had a renewal of its lock
	// committed (its lease runs from there), absent elsewhere.
	LeaseConfirmed *time.Time `json:"lease_confirmed,omitempty"`
	NoFailover     bool       `json:"nofailover"`
	Priority       int        `json:"priority"`
	Leader         string     `json:"leader,omitempty"`
	// Regaining: the active lost its Consul session while alive and
	// healthy and is taking its lock back under its lease.
	Regaining bool `json:"regaining,omitempty"`
	// LeaseCarried is set on the active while Consul commits none of its
	// renewals and the peers' grants carry its lease instead.
	LeaseCarried *LeaseCarry `json:"lease_carried,omitempty"`
	// Paused is the cluster's pause as this node last read it (nil: the
	// cluster runs).
	Paused *cluster.Pause `json:"paused,omitempty"`
	// Maintenance is this node's maintenance as it last read it (nil: not
	// in maintenance).
	Maintenance *cluster.Maintenance `json:"maintenance,omitempty"`
	// Minority is the partition side this node runs on while it runs on
	// a Consul quorum of its own (partition_mode "active-minority"): its
	// side's writes may be thrown away at the heal.
	Minority *cluster.Minority `json:"minority,omitempty"`
	Postgres PGStatus          `json:"postgres"`
	// Parameters is how far the node applied the cluster-wide PostgreSQL
	// parameters (nil until it first looked).
	Parameters *ParametersState `json:"parameters,omitempty"`
}

// The rules by which the peers carry the active's lease (LeaseCarry.Rule;
// config.Fencing has them).
const (
	// CarryMajority: the active and the peers that granted are a majority
	// of the cluster, their agents up: a Consul leader election.
	CarryMajority = "majority"
	// CarryFailsafe: every other member granted (consul.outage =
	// "failsafe"): a Consul outage.
	CarryFailsafe = "failsafe"
)

// LeaseCarry says how the active keeps its lease while Consul has no
// leader.
type LeaseCarry struct {
	Rule string `json:"rule"`
	// Since is when the last renewal Consul committed was sent.
	Since     time.Time `json:"since"`
	GrantedBy []string  `json:"granted_by"`
}

// ParametersState is a node's account of the cluster-wide PostgreSQL
// parameters: the version it wrote into its data directory and what its
// PostgreSQL made of it.
type ParametersState struct {
	// Version is the At of the parameters the node wrote.
	Version time.Time `json:"version"`
	// PendingRestart are the parameters that take effect at the next
	// restart (understudy cluster restart --pending).
	PendingRestart []string `json:"pending_restart,omitempty"`
	// Lowered are those of PendingRestart that a standby needs at least
	// the primary's value of, lowered: this node, if it is the active,
	// restarts before the standbys (postgres.StandbyAtLeastPrimary).
	Lowered []string `json:"lowered,omitempty"`
	// Errors are the lines PostgreSQL refused (pg_file_settings).
	Errors []string `json:"errors,omitempty"`
	// Error is why the node could not write or reload.
	Error string `json:"error,omitempty"`
}

// ConfigAnswer is GET and PUT /v1/cluster/config: the cluster-wide
// parameters, and after a PUT what it changed ("" for nothing).
type ConfigAnswer struct {
	Parameters cluster.Parameters `json:"parameters"`
	Changed    string             `json:"changed,omitempty"`
}

// RestartAnswer is POST /v1/node/restart: the standby whose PostgreSQL was
// restarted, and how long it took.
type RestartAnswer struct {
	Node string `json:"node"`
	Took string `json:"took"`
}

// ReloadAnswer is POST /v1/node/reload: the node whose PostgreSQL read its
// files again and what it says of them now.
type ReloadAnswer struct {
	Node           string   `json:"node"`
	PendingRestart []string `json:"pending_restart,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

// PGStatus is the node's local PostgreSQL as last seen.
type PGStatus struct {
	Running    bool        `json:"running"`
	InRecovery bool        `json:"in_recovery"`
	Timeline   uint32      `json:"timeline"`
	WriteLSN   cluster.LSN `json:"write_lsn"`
	ReceiveLSN cluster.LSN `json:"receive_lsn"`
	ReplayLSN  cluster.LSN `json:"replay_lsn"`
	// Upstream is host:port of the primary a standby streams from.
	Upstream  string `json:"upstream,omitempty"`
	Streaming bool   `json:"streaming"`
	// LastCommit is when its last transaction committed (or, on a
	// standby, the last it replayed), when PostgreSQL knows
	// (track_commit_timestamp).
	LastCommit time.Time `json:"last_commit,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// Position is the most advanced WAL position the node has: what the
// election compares.
func (p PGStatus) Position() cluster.LSN {
	return max(p.WriteLSN, p.ReceiveLSN, p.ReplayLSN)
}

// StatusAnswer is the body of GET /status (200 on the active that serves,
// 400 elsewhere): which node answered and its role.
type StatusAnswer struct {
	Node string `json:"node"`
	Role Role   `json:"role"`
	// Minority: the node serves as the active of a partition's minority
	// side (partition_mode "active-minority"): its writes may be thrown
	// away when the partition heals. The header MinorityHeader says so
	// too, for a load balancer's check that reads no body.
	Minority bool `json:"minority,omitempty"`
}

// ConsulKeyring is GET /v1/consul/keyring: the node's Consul cluster (its
// ID, cluster.ConsulClusterID) and gossip keys, primary first.
type ConsulKeyring struct {
	Cluster string   `json:"cluster"`
	Keys    []string `json:"keys"`
}

// MinorityHeader is set ("true") on /status of a minority active.
const MinorityHeader = "X-Understudy-Minority"

// ClusterStatus is what GET /v1/status/cluster answers: what `nodes list`
// shows.
type ClusterStatus struct {
	Cluster    string              `json:"cluster"`
	Leader     string              `json:"leader"`
	NextMaster *cluster.NextMaster `json:"next_master,omitempty"`
	Members    []cluster.Member    `json:"members"`
	// Consul is how the Consul servers stand, as autopilot sees them
	// (absent when it did not answer): what the cluster can lose.
	Consul *ServersHealth `json:"consul,omitempty"`
	// Paused is set while the cluster is paused (understudy cluster
	// pause).
	Paused *cluster.Pause `json:"paused,omitempty"`
	// Maintenance is every node in maintenance, by name (understudy node
	// maintenance on).
	Maintenance map[string]cluster.Maintenance `json:"maintenance,omitempty"`
	// Stale: Consul had no leader, and the node answered from its own
	// server's state, which may be old (a Consul outage, or this node in
	// a partition's minority).
	Stale bool `json:"stale,omitempty"`
}

// ServersHealth is autopilot's view of the cluster's Consul servers, one per
// node: the Raft voters, how many of them are healthy, and how many of those
// may fail before no write (no leader key, no election) can be made. It has
// the fields of internal/consul's, which converts to it.
type ServersHealth struct {
	Voters           int `json:"voters"`
	HealthyVoters    int `json:"healthy_voters"`
	FailureTolerance int `json:"failure_tolerance"`
}

// EventsAnswer is the body of GET /v1/events?limit=N: the cluster's
// history, newest first.
type EventsAnswer struct {
	Events []cluster.Event `json:"events"`
}

// SwitchoverRequest is the body of POST /v1/cluster/switchover.
type SwitchoverRequest struct {
	Target string `json:"target"`
	// Timeout is how long to wait for the target to be active, e.g. "60s".
	Timeout string `json:"timeout,omitempty"`
}

// SwitchoverAnswer is the body of a switchover's answer: the node active
// now and how long it took (a duration, e.g. "1.234s"). A 409 adds
// "active_api" or "target" beside an "error".
type SwitchoverAnswer struct {
	Active string `json:"active"`
	Took   string `json:"took"`
}

// OptionsAnswer is the body of PUT /v1/cluster/nodes/NAME/options: the
// node's runtime options after the change.
type OptionsAnswer struct {
	Options cluster.NodeOptions `json:"options"`
}

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	Token   string `json:"token"`
	Node    string `json:"node"`
	Address string `json:"address"`
	// Version is the joining node's understudy version: a cluster runs one.
	Version string `json:"version,omitempty"`
}

// JoinResponse is what a joining node needs: the cluster's CA (certificate
// and key, so whichever node is active later can sign), the Consul gossip
// key and servers to join, and where the active's PostgreSQL is to clone.
type JoinResponse struct {
	Cluster      string   `json:"cluster"`
	KVPrefix     string   `json:"kv_prefix"`
	CACert       string   `json:"ca_cert"`
	CAKey        string   `json:"ca_key"`
	GossipKey    string   `json:"gossip_key"`
	ConsulJoin   []string `json:"consul_join"`
	Active       string   `json:"active"`
	PostgresHost string   `json:"postgres_host"`
	PostgresPort int      `json:"postgres_port"`
	// PostgresCACert and PostgresCAKey are the cluster's PostgreSQL CA
	// (certs.NewPostgresCA), with which the joiner signs its PostgreSQL
	// certificate.
	PostgresCACert string `json:"postgres_ca_cert,omitempty"`
	PostgresCAKey  string `json:"postgres_ca_key,omitempty"`
	// ACL is the joiner's Consul ACL tokens; nil from a cluster whose
	// Consul runs without ACLs.
	ACL *JoinACL `json:"acl,omitempty"`
}

// JoinACL are the Consul ACL tokens a joining node needs: its agent's own
// (created for it by the answering node), the daemons' token every node
// shares, and the management token, with which the joiner, once active,
// answers joins in turn (README "Consul ACLs").
type JoinACL struct {
	AgentToken      string `json:"agent_token"`
	DaemonsToken    string `json:"daemons_token"`
	ManagementToken string `json:"management_token"`
}

// GrantRequest is what the active sends to a peer's POST /v1/lease/grant
// while Consul has no leader: carry my lease.
type GrantRequest struct {
	Holder  string `json:"holder"`
	Session string `json:"session"`
	// Failsafe asks for a grant the holder counts only when every member
	// grants (consul.outage = "failsafe"): the peer may grant it while its
	// own Consul agent does not answer.
	Failsafe bool `json:"failsafe,omitempty"`
}

// GrantReply is the peer's answer to a GrantRequest.
type GrantReply struct {
	Granted bool   `json:"granted"`
	Why     string `json:"why,omitempty"`
	// FailsafeOnly is set on a grant made while the peer's own Consul
	// agent did not answer: it counts toward the failsafe rule (every
	// member) only, not toward a majority.
	FailsafeOnly bool `json:"failsafe_only,omitempty"`
}

// GrantRecord is what GET /v1/lease/grants?session=ID answers: whether the
// node granted that session's lease, and how long ago it last did.
type GrantRecord struct {
	Granted bool  `json:"granted"`
	AgoMS   int64 `json:"ago_ms,omitempty"`
}

// PauseRequest is the body of POST /v1/cluster/pause.
type PauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// PauseAnswer is what /v1/cluster/pause and /resume answer: the pause
// written, nil after a resume.
type PauseAnswer struct {
	Paused *cluster.Pause `json:"paused"`
	// Active is the node that holds the lock as the pause begins; Warning
	// says when none does (the cluster then has no active until resume).
	Active  string `json:"active,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// MaintenanceRequest is the body of PUT /v1/cluster/nodes/NAME/maintenance.
type MaintenanceRequest struct {
	Reason string `json:"reason,omitempty"`
}

// MaintenanceAnswer is what PUT and DELETE
// /v1/cluster/nodes/NAME/maintenance answer: the node's maintenance after
// the change, nil when it is out of maintenance.
type MaintenanceAnswer struct {
	Node        string               `json:"node"`
	Maintenance *cluster.Maintenance `json:"maintenance"`
}

// FailoverRequest is the body of POST /v1/cluster/failover.
type FailoverRequest struct {
	Target string `json:"target"`
	// Force accepts losing what the target does not have (its position
	// behind the former active's last known one, or either unknown).
	Force bool `json:"force,omitempty"`
	// DryRun answers the plan (the gap, and why it would be refused)
	// without acting.
	DryRun bool `json:"dry_run,omitempty"`
	// Timeout is how long to wait for the target to hold the lock, e.g.
	// "60s".
	Timeout string `json:"timeout,omitempty"`
}

// FailoverPlan is what a failover to Target would do, as the node asked
// sees it: the answer of a dry run, and part of every answer.
type FailoverPlan struct {
	Target string `json:"target"`
	// FormerActive is the node the leader key names (held or not); its
	// state says why it is not a healthy active that could hand over.
	FormerActive      string `json:"former_active,omitempty"`
	FormerActiveHolds bool   `json:"former_active_holds_lock"`
	FormerActiveState string `json:"former_active_state,omitempty"`
	Paused            bool   `json:"paused"`
	// Gap is the former active's last known write position against the
	// target's; GapBytes is -1 when unknown.
	Gap       cluster.FailoverGap `json:"gap"`
	GapBytes  int64               `json:"gap_bytes"`
	LosesData bool                `json:"loses_data"`
	// Refused is why the failover is refused whatever --force says (a
	// healthy active, a target that cannot take over); "" when it may go
	// ahead (with Force when LosesData).
	Refused string `json:"refused,omitempty"`
}

// FailoverAnswer is the answer of a failover that completed: the plan, the
// node active now and how long it took.
type FailoverAnswer struct {
	FailoverPlan
	Active string `json:"active,omitempty"`
	Took   string `json:"took,omitempty"`
}
