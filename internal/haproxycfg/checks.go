package haproxycfg

import (
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// Checks are the timings of HAProxy's health checks (GET /status), the
// same for every server.
type Checks struct {
	// Inter is how often an up server is checked; DownInter how often a
	// down one is; FastInter how often a server is checked while it is
	// between the two (one check failed, not yet Fall of them).
	Inter, FastInter, DownInter time.Duration
	// Timeout is how long a check may wait for the answer (timeout check);
	// the connection itself gets the shorter of Inter and the connect
	// timeout.
	Timeout time.Duration
	// Fall is how many failed checks in a row mark a server down (and cut
	// its sessions); Rise how many passed checks mark it up.
	Fall, Rise int
}

// ChecksFor derives the check timings from the cluster's fencing timings:
//
//   - Fall is 2: a single lost or late check must not cut every session of
//     a healthy active; two in a row are no accident.
//   - Rise is 1: /status answers 200 only on the promoted active while its
//     lock is confirmed, a claim that needs no second opinion, and every
//     check more would add to the failover clients see.
//   - FastInter is the active's renewal period (250 ms): once a check has
//     failed, HAProxy looks again as often as the active learns whether it
//     still holds the lock.
//   - Inter (and DownInter) is what is left of the lock delay after Fall
//     checks at FastInter: a node that stops being the active answers 400
//     at once, and HAProxy marks it down and cuts its sessions within
//     Inter + (Fall-1) x FastInter plus an answer's time, before the lock
//     delay lets another node take the lock its session held. 500 ms with
//     the defaults; never under 100 ms, and never over 1 s, whatever the
//     lock delay: a down server is checked as often, and a new active
//     waits at most that long to be up in HAProxy.
//   - Timeout is what is left of the new active's wait (Takeover) after a
//     node that stopped answering (a hung handler-runner, a frozen host)
//     has had Fall checks time out, less the margin, capped at 1 s: such a
//     node is down in HAProxy before another one may promote.
func ChecksFor(f config.Fencing) Checks {
	const fall, rise = 2, 1
	c := Checks{Fall: fall, Rise: rise, FastInter: f.Renew}
	c.Inter = min(max(f.LockDelay-fall*c.FastInter, 100*time.Millisecond), time.Second).Truncate(10 * time.Millisecond)
	c.DownInter = c.Inter
	budget := f.Takeover() - c.Inter - (fall-1)*c.FastInter - f.Margin
	c.Timeout = min(budget/fall, time.Second).Truncate(100 * time.Millisecond)
	c.Timeout = max(c.Timeout, 100*time.Millisecond)
	return c
}

// DefaultChecks are ChecksFor the default configuration's fencing.
func DefaultChecks() Checks { return ChecksFor(config.Default().Fencing()) }

// MarkedDown is the longest a server that answers 400 (a demoted node)
// stays up in HAProxy: its next check, then Fall-1 more at FastInter.
func (c Checks) MarkedDown() time.Duration { return c.Inter + time.Duration(c.Fall-1)*c.FastInter }

// Silent is the longest a server that stops answering stays up in HAProxy:
// Fall checks that each wait Timeout, FastInter apart, after Inter.
func (c Checks) Silent() time.Duration {
	return c.Inter + time.Duration(c.Fall)*c.Timeout + time.Duration(c.Fall-1)*c.FastInter
}

// MarkedUp is the longest a new active waits to be up in HAProxy once it
// answers 200: a down server's next check, then Rise-1 more at FastInter.
func (c Checks) MarkedUp() time.Duration { return c.DownInter + time.Duration(c.Rise-1)*c.FastInter }

func (c Checks) comment() string {
	return fmt.Sprintf("checks: a node that answers 400 is down within %s (its sessions cut), one that stops answering within %s; the new active is up within %s of its first 200",
		c.MarkedDown(), c.Silent(), c.MarkedUp())
}

func (c Checks) validate() error {
	if c.Inter <= 0 || c.FastInter <= 0 || c.DownInter <= 0 || c.Timeout <= 0 {
		return fmt.Errorf("check timings inter %s, fastinter %s, downinter %s, timeout %s must all be positive; start from ChecksFor",
			c.Inter, c.FastInter, c.DownInter, c.Timeout)
	}
	for _, d := range []time.Duration{c.Inter, c.FastInter, c.DownInter, c.Timeout} {
		if d%time.Millisecond != 0 {
			return fmt.Errorf("check timing %s is finer than HAProxy's milliseconds", d)
		}
	}
	if c.Fall < 1 || c.Rise < 1 {
		return errors.New("check fall and rise must be at least 1")
	}
	return nil
}
