package handlerrunner

import (
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// The roles, and the transitions between them, are nodeapi.Role's: the API
// reports them. Each has its function here: runRejoining, runStandby,
// runCandidate and runActive return the next role and why; demote is
// demoting.

// state is the snapshot the API reads and the loops write.
type state struct {
	mu sync.Mutex
	st nodeapi.NodeStatus
	// confirmed is when the active last confirmed it holds the lock; /status
	// answers 200 only within the lease after it.
	confirmed time.Time
	promoted  bool
	// grace: not a candidate before this (stepDownGrace).
	grace time.Time
	// opts are the node's runtime options as last read.
	opts cluster.NodeOptions
	// carry is how the peers carry the active's lease now, nil while
	// Consul commits its renewals.
	carry *nodeapi.LeaseCarry
}

// setCarry records how the peers carry the active's lease (nil: they do
// not), in the node's status and its metric at once.
func (r *Runner) setCarry(c *nodeapi.LeaseCarry) {
	r.st.setCarry(c)
	r.metrics.carried(c)
}

func (s *state) setCarry(c *nodeapi.LeaseCarry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.carry = c
}

func (s *state) carried() *nodeapi.LeaseCarry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.carry
}

func (s *state) get() nodeapi.NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *state) update(f func(st *nodeapi.NodeStatus)) {
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
	return s.st.Role == nodeapi.RoleActive && s.promoted && now.Sub(s.confirmed) < lease
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
