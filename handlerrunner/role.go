package handlerrunner

import (
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Role is the node's place in the state machine. Transitions, and why, are
// logged and recorded as events:
//
//	rejoining -> standby      PostgreSQL runs as a standby of the leader (or of nobody while there is none)
//	standby   -> candidate    the leader key is free
//	standby   -> rejoining    a new leader, or the standby cannot stream from the leader
//	candidate -> active       chosen as next-master and acquired the leader key
//	candidate -> standby      another node was chosen and took the lock, or the election timed out
//	active    -> demoting     lock lost or unconfirmed, PostgreSQL down, next-master names another node
//	                          (a lock lost with the session while healthy is first taken back: regain.go)
//	demoting  -> rejoining    active-only services stopped, PostgreSQL stopped, lock released
type Role string

const (
	RoleRejoining Role = "rejoining"
	RoleStandby   Role = "standby"
	RoleCandidate Role = "candidate"
	RoleActive    Role = "active"
	RoleDemoting  Role = "demoting"
)

// NodeStatus is what this node says of itself at /v1/status/node: what the
// election asks each peer at the moment it decides, rather than trusting a
// member record that may be an interval old.
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
	// healthy and is taking its lock back under its lease (regain.go).
	Regaining bool `json:"regaining,omitempty"`
	// Paused is the cluster's pause as this node last read it (nil: the
	// cluster runs).
	Paused   *cluster.Pause `json:"paused,omitempty"`
	Postgres PGStatus       `json:"postgres"`
}

// PGStatus is the local PostgreSQL as last seen.
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
	Error     string `json:"error,omitempty"`
}

// Position is the most advanced WAL position the node has: what the
// election compares.
func (p PGStatus) Position() cluster.LSN {
	return max(p.WriteLSN, p.ReceiveLSN, p.ReplayLSN)
}

// state is the snapshot the API reads and the loops write.
type state struct {
	mu sync.Mutex
	st NodeStatus
	// confirmed is when the active last confirmed it holds the lock; /status
	// answers 200 only within the lease after it.
	confirmed time.Time
	promoted  bool
	// grace: not a candidate before this (stepDownGrace).
	grace time.Time
	// opts are the node's runtime options as last read.
	opts cluster.NodeOptions
}

func (s *state) get() NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *state) update(f func(st *NodeStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

// serve marks PostgreSQL promoted and the lock confirmed now.
func (s *state) serve(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.promoted, s.confirmed = true, now
}

// unserve ends the 200s of /status at once: the first step of fencing.
func (s *state) unserve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.promoted = false
}

func (s *state) confirm(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirmed = now
}

// lastConfirmed is when the lock was last confirmed, zero unless promoted.
func (s *state) lastConfirmed() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.promoted {
		return time.Time{}
	}
	return s.confirmed
}

// serving is the /status 200 condition: active, promoted, and the lock
// confirmed within the lease. A hung Consul agent therefore turns /status to
// 400 on its own, before the session can expire.
func (s *state) serving(now time.Time, lease time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Role == RoleActive && s.promoted && now.Sub(s.confirmed) < lease
}

func (s *state) setGrace(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grace = t
}

func (s *state) graceUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grace
}

func (s *state) setOptions(o cluster.NodeOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = o
}

func (s *state) options() cluster.NodeOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts
}
