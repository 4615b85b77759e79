package cluster

import "time"

// Kinds of Event. Kind is a plain string so that an older binary still reads
// the history a newer one wrote.
const (
	EventTransition  = "transition"   // a node's role changed
	EventFailover    = "failover"     // the active was lost and another was chosen
	EventSwitchover  = "switchover"   // a planned move of the active role
	EventPromoteHook = "promote-hook" // a promote hook ran (Details: hook, exit, output)
	EventFence       = "fence"        // a node stopped taking writes
	EventJoin        = "join"         // a member appeared
	EventJoinRefused = "join-refused" // a join was refused for its token (Details: from, the caller's address)
	EventJoinToken   = "join-token"   // a new join token was issued (cluster token) and the one before revoked
	EventRemove      = "remove"       // a member was removed
	EventPartition   = "partition"    // a node entered or left the minority
	EventFiles       = "files"        // a standby's local file changes were reverted (Details: folder, files)
	EventDiverged    = "diverged"     // a former primary's writes after the fork kept aside before a rewind (Details: dir, timeline, from, to, commits, inspect)
	EventPause       = "pause"        // the cluster was paused or resumed (From: "running"/"paused", To: the other)
	EventCertificate = "certificate"  // a node certificate was renewed (Details: serial, not_after, by)
	EventRegained    = "regained"     // the active took back the lock it lost with its session while healthy, its PostgreSQL writable throughout (Details: took)
	EventConfig      = "config"       // the cluster-wide PostgreSQL parameters changed (Reason: what changed)
	EventReload      = "reload"       // a node's PostgreSQL was reloaded by an operator
	EventRestart     = "restart"      // a standby's PostgreSQL was restarted by an operator (cluster restart)
	EventReinit      = "reinit"       // a standby's data directory was cloned afresh by an operator (Details: aside, took)
	EventMaintenance = "maintenance"  // a node was put in or taken out of maintenance (To: the node; From: "on"/"off")
	// EventFailoverRequest: an operator asked for a failover to a node
	// (cluster failover --to) (To: the node, From: the former active;
	// Details: last_known_lsn, target_lsn, gap_bytes, forced, paused).
	EventFailoverRequest = "failover-request"
)

// Event is one entry of the cluster's history at events/<seq>: what happened,
// where, why, and at which WAL position, so an operator can reconstruct a
// failover from Consul alone.
type Event struct {
	// Seq is the event's key under events/, filled in when it is written:
	// it sorts chronologically across nodes (by the writer's clock).
	Seq  string    `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	// Node is the node that wrote the event.
	Node string `json:"node"`
	Kind string `json:"kind"`
	// From and To are what changed: roles for a transition, node names for
	// a failover or switchover.
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
	// LSN is the position the event happened at (the promoted node's LSN,
	// the fenced node's last write position); 0 when it does not apply.
	LSN     LSN               `json:"lsn,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	// By is who asked for what the event records, for a change made
	// through the API: "operator alice", "node n2", "basic auth user
	// admin" (its client certificate's name, else its basic auth user).
	By string `json:"by,omitempty"`
}

// NextMaster is the value of the next-master key: the node that is to be
// active next, who decided it and why. It is written with CAS so that the
// cluster agrees on one name even when several standbys decide at once.
type NextMaster struct {
	Node string `json:"node"`
	// By is the node (or "cli" for `cluster set-active`) that wrote it.
	By     string    `json:"by"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Switchover is true for a planned move: the old active demotes first
	// and the target waits until it has replayed FromLSN.
	Switchover bool `json:"switchover,omitempty"`
	// RequestedBy is who asked for the switchover or the failover through
	// the API (see Event.By).
	RequestedBy string `json:"requested_by,omitempty"`
	// Operator is true for a failover an operator asked for (cluster
	// failover --to): the node named takes the free lock as in any
	// election, and it is the only node that stands for it while the
	// cluster is paused.
	Operator bool `json:"operator,omitempty"`
	// FromLSN is the last primary LSN known when the choice was made; the
	// chosen node must have at least this much before it takes writes in a
	// switchover.
	FromLSN LSN `json:"from_lsn,omitempty"`
	// Term is the leader key's LockIndex when the choice was made: the
	// choice is for the next acquisition only. Acquiring the key increments
	// LockIndex, so a record left from an earlier election is never
	// mistaken for the current one.
	Term uint64 `json:"term"`
}

// SyncState is the value of the sync key in synchronous mode: the standbys
// that PostgreSQL on Leader confirms every commit with. Only they may be
// elected after Leader is lost.
type SyncState struct {
	Leader   string   `json:"leader"`
	Standbys []string `json:"standbys"`
}

// Pause is the value of the paused key: while it exists the cluster makes
// no automatic change (no election, no PostgreSQL restart), and fencing
// still protects the one writer.
type Pause struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Maintenance is the value of maintenance/<node>: while it exists the node
// is never chosen as active (election, switchover, operator failover) and
// its alarms are shown as quieted rather than as the cluster's problems.
type Maintenance struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}
