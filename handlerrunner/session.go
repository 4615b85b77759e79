package handlerrunner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/checkrunner"
	"github.com/understudy-ha/understudy/internal/consul"
)

// sessionChecks are the checks the session is bound to, besides serfHealth:
// PostgreSQL is reachable and answers. A failing one invalidates the session
// and frees the lock at once. postgres-role is left out on purpose: between
// acquiring the lock and promoting, the new active is still in recovery and
// that check fails, which would throw away the lock just won. services and
// consul are left out too: a broken active-only service is worth a warning,
// not a failover loop, and without a Consul leader no session changes anyway.
var sessionChecks = []string{
	"serfHealth",
	checkrunner.CheckID(checkrunner.CheckListening),
	checkrunner.CheckID(checkrunner.CheckQuery),
}

// session keeps one Consul session for the node: it creates one whenever
// there is none (which Consul refuses while a bound check is critical) and
// renews it. The active holds the leader key with it.
type session struct {
	cc    *consul.Client
	opts  consul.SessionOptions
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	id      string
	renewed time.Time // last successful create or renew
	failing bool      // log the first failure of a streak only
	kick    chan struct{}
}

// poke makes the session loop try now rather than at its next tick: the
// active regaining its lock needs a new session as soon as Consul grants
// one.
func (s *session) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ID is the current session, "" while there is none.
func (s *session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Renewed is when Consul last confirmed the session.
func (s *session) Renewed() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewed
}

// forget drops a session Consul no longer knows, so the next tick creates
// one.
func (s *session) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == id {
		s.id = ""
	}
}

// run creates and renews the session until ctx ends, then destroys it with a
// bounded context of its own. Renewing every interval rather than every
// TTL/2 costs one request a second and lets the active confirm its lease
// from a recent renewal.
func (s *session) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.tick(ctx)
		select {
		case <-ctx.Done():
			s.destroy(ctx)
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *session) tick(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, s.every)
	defer cancel()
	id := s.ID()
	if id == "" {
		nid, err := s.cc.CreateSession(tctx, s.opts)
		if err != nil {
			s.fail("cannot create consul session; this node cannot become active until it can", err)
			return
		}
		s.mu.Lock()
		s.id, s.renewed, s.failing = nid, time.Now(), false
		s.mu.Unlock()
		s.log.Info("consul session created", "session", nid, "ttl", s.opts.TTL, "checks", s.opts.Checks)
		return
	}
	err := s.cc.RenewSession(tctx, id)
	switch {
	case errors.Is(err, consul.ErrSessionGone):
		s.log.Warn("consul session invalidated; creating a new one when the node's checks pass", "session", id)
		s.forget(id)
	case err != nil:
		s.fail("cannot renew consul session", err)
	default:
		s.mu.Lock()
		s.renewed, s.failing = time.Now(), false
		s.mu.Unlock()
	}
}

func (s *session) fail(msg string, err error) {
	s.mu.Lock()
	first := !s.failing
	s.failing = true
	s.mu.Unlock()
	if first {
		s.log.Warn(msg, "err", err)
	}
}

func (s *session) destroy(ctx context.Context) {
	id := s.ID()
	if id == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := s.cc.DestroySession(dctx, id); err != nil {
		s.log.Warn("cannot destroy consul session on exit; it expires after its TTL", "session", id, "err", err)
		return
	}
	s.forget(id)
}
