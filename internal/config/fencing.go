package config

import (
	"fmt"
	"time"
)

// Fencing is the timing that understudy's first promise rests on: only one
// node takes writes. Every duration the role loop, the watchdog and the
// election use for it is here, and the README's failover bounds are derived
// from it.
//
// The invariant. For every way the leader lock can be freed (the session
// invalidated by serfHealth or a bound check, its TTL run out, the lock
// released), the old active's PostgreSQL refuses writes before the new
// active's PostgreSQL takes its first one, by at least Margin.
//
// How it holds. The active renews its hold on the lock every Renew by
// writing the leader key again with its session (an acquire of a key the
// session holds: a Raft write that succeeds only while the session holds
// the lock), each write numbered. Let S be the moment the active sent the
// last renewal Consul committed. The active takes writes until S + Lease
// at most: at that moment the handler-runner stops PostgreSQL (SIGQUIT to
// the postmaster: every backend exits at once), and the watchdog, a
// separate process that shares nothing with the handler-runner but the
// lease file, does the same within WatchdogPoll if the handler-runner is
// hung. Writes are refused by S + Lease + WatchdogPoll + Stop.
//
// Every other node watches the leader key and notes when it first saw each
// renewal: that is after the renewal was committed, so after S. A node that
// acquires the freed lock waits, before it promotes, until Takeover() has
// passed since it first saw the old active's last renewal, unless the old
// active said it had fenced (it released the lock after stopping
// PostgreSQL, or wrote its fenced record after losing the lock). Both
// clocks measure elapsed time only (monotonic), so the hosts' wall clocks
// need not agree. This holds however the lock was freed: it does not rely
// on the lock delay nor on Consul's failure detection, and a node that was
// hung, cut off or paused since its last renewal has stopped taking writes
// before anyone else starts.
//
// What it costs. A failover in which the old active cannot say it fenced
// (a dead or cut-off host, a hung agent) promotes no earlier than Takeover()
// after the old active's last renewal; Consul's failure detection (about
// 2.5 s with understudy's gossip timing) and LockDelay run at the same time,
// so with the defaults the lease adds little to a node loss. A failover in
// which the old active fenced (PostgreSQL died, a switchover, a failing
// check on a live node) does not wait. The lease must outlast a Consul
// leader election, during which no renewal commits: about 1-2 s at
// raft_multiplier 1, which is why a standby's loss, the Consul leader's
// node included, does not make the active fence itself.
//
// Consul without a leader. No renewal commits then, and the peers carry the
// lease instead (handlerrunner's grants): a peer that grants forgets when it
// saw the active's last renewal, so should it acquire the lock later it
// counts Takeover() from a read after its grant, and the active extends its
// lease by Lease from the moment it sent a round. Two rules decide whether
// a round carries the lease. The majority rule (always on): the active and
// the peers that granted while their own Consul agent answered without a
// working leader are a majority, so no Consul leader existed while they
// granted; without Failsafe it carries at most ElectionCarry past the last
// committed renewal, a leader election; with it, without a bound. The
// failsafe rule (consul.outage = "failsafe"): every other member granted,
// its agent answering or not; no node that could acquire the lock later
// did not promise to wait, so the carry needs no Consul at all and lasts
// as long as every member answers. A peer that sees a working leader never
// grants (the active must renew through it), so an active cut off from
// Consul while its peers are not still fences, and so does one cut off
// from a majority. What both rules take as given: the members the active
// asks are the cluster's (its list is at most a few seconds old, and a
// node needs a Consul leader to join), and the node that takes over reads
// the old active's value in the leader key (a Consul rebuilt from a
// snapshot or peers.json may not have it: the README says to stop the old
// active first).
type Fencing struct {
	// Lease is consul.leader_lease: how long after sending a renewal that
	// Consul committed the active may take writes.
	Lease time.Duration
	// Renew is how often the active renews. Each renewal gives up after
	// RenewTimeout and runs beside the others (up to RenewInFlight), so
	// one stuck on a dead Consul leader's connection (a partition drops
	// packets; nothing answers) holds up neither the next renewal nor the
	// first one a new leader could commit.
	Renew         time.Duration
	RenewTimeout  time.Duration
	RenewInFlight int
	// WatchdogPoll is how often the watchdog compares the lease with the
	// clock.
	WatchdogPoll time.Duration
	// Stop bounds how long refusing writes takes once the lease ran out:
	// the postmaster signalled and its backends gone.
	Stop time.Duration
	// Margin absorbs a late timer, a descheduled process and two hosts'
	// monotonic clocks running at slightly different rates (at most 500
	// ppm with NTP slewing: under 2 ms over a lease).
	Margin time.Duration
	// LockDelay (consul.lock_delay) and SessionTTL (consul.session_ttl):
	// neither is needed for the invariant above; they are here for the
	// checks between them and the lease.
	LockDelay  time.Duration
	SessionTTL time.Duration
	// RaftMultiplier (consul.raft_multiplier) scales how long a Consul
	// leader election takes, which the lease must outlast.
	RaftMultiplier int
	// Failsafe (consul.outage = "failsafe") lets the peers carry the
	// active's lease for as long as Consul has no leader, provided every
	// other member grants it; otherwise the carry lasts ElectionCarry.
	Failsafe bool
	// ElectionCarry bounds, without Failsafe, how long peer grants carry
	// the lease after the last renewal Consul committed: a Consul leader
	// election, with room for a slow one.
	ElectionCarry time.Duration
}

// The fixed parts of the fencing timing; only the lease is configurable.
const (
	// DefaultLeaderLease outlasts a Consul leader election (1-2 s at
	// raft_multiplier 1; the longest measured here, a killed leader's
	// node, is in the README) with a margin, and hides behind Consul's
	// failure detection of a dead node (about 2.5 s) plus the lock delay.
	DefaultLeaderLease = 3 * time.Second
	// MinLeaderLease is the shortest lease that still outlasts a Consul
	// leader election: any shorter and the loss of the node that runs the
	// Raft leader, a standby, would make the active fence itself.
	MinLeaderLease = 2 * time.Second
	renewEvery     = 250 * time.Millisecond
	renewTimeout   = time.Second
	renewInFlight  = 4
	watchdogPoll   = 25 * time.Millisecond
	stopBudget     = 200 * time.Millisecond
	fenceMargin    = 250 * time.Millisecond
	// electionCarry is ElectionCarry at raft_multiplier 1: five times the
	// longest election measured here (README), so only an outage, not a
	// slow election, outlasts it.
	electionCarry = 10 * time.Second
)

// Fencing returns the node's fencing timing.
func (c *Config) Fencing() Fencing {
	return Fencing{
		Lease: c.Consul.LeaderLease, Renew: renewEvery, RenewTimeout: renewTimeout, RenewInFlight: renewInFlight,
		WatchdogPoll: watchdogPoll, Stop: stopBudget, Margin: fenceMargin,
		LockDelay: c.Consul.LockDelay, SessionTTL: c.Consul.SessionTTL, RaftMultiplier: max(c.Consul.RaftMultiplier, 1),
		Failsafe: c.Consul.Outage != OutageFence, ElectionCarry: electionCarry * time.Duration(max(c.Consul.RaftMultiplier, 1)),
	}
}

// MinLease is the shortest lease that outlasts a Consul leader election at
// f's raft multiplier.
func (f Fencing) MinLease() time.Duration {
	return MinLeaderLease * time.Duration(max(f.RaftMultiplier, 1))
}

// Refused is how long after its last committed renewal was sent the old
// active may still take writes: its lease, the watchdog's poll and the
// stop.
func (f Fencing) Refused() time.Duration { return f.Lease + f.WatchdogPoll + f.Stop }

// Takeover is how long a new active waits, from the moment it first saw the
// old active's last renewal, before it promotes, when the old active has
// not said it fenced.
func (f Fencing) Takeover() time.Duration { return f.Refused() + f.Margin }

// check returns the problems between the fields, each as (keys, message):
// the rules the invariant and the promise of no self-fencing on a standby's
// loss need, in the manner of hashicorp/raft's ValidateConfig.
func (f Fencing) check() [][2]string {
	var out [][2]string
	add := func(keys, format string, args ...any) {
		out = append(out, [2]string{keys, fmt.Sprintf(format, args...)})
	}
	if f.Lease < f.MinLease() {
		add("consul.leader_lease consul.raft_multiplier", `consul.leader_lease = %s is shorter than a Consul leader election takes (up to 2 s x raft_multiplier %d): the active would stop PostgreSQL whenever a standby running Consul's leader is lost; write at least "%s"`,
			quote(formatDuration(f.Lease)), max(f.RaftMultiplier, 1), formatDuration(f.MinLease()))
	}
	if f.Lease >= f.SessionTTL {
		add("consul.leader_lease consul.session_ttl", `consul.leader_lease = %s must be shorter than consul.session_ttl = %s: the active must give up its writes before Consul may end its session; lengthen session_ttl or shorten the lease`,
			quote(formatDuration(f.Lease)), quote(formatDuration(f.SessionTTL)))
	}
	if f.Lease >= f.MinLease() && (f.RenewTimeout*2 > f.Lease || f.Renew*time.Duration(f.RenewInFlight) < f.RenewTimeout) {
		add("consul.leader_lease", "consul.leader_lease = %s leaves room for fewer than two renewal timeouts (%s each); lengthen it",
			quote(formatDuration(f.Lease)), f.RenewTimeout)
	}
	if f.LockDelay < f.Renew+f.Stop+f.Margin {
		add("consul.lock_delay", `consul.lock_delay = %s is shorter than an active needs to learn from its next renewal that a Consul leader just ended its session, and stop (%s); write at least "%s"`,
			quote(formatDuration(f.LockDelay)), f.Renew+f.Stop+f.Margin, formatDuration((f.Renew+f.Stop+f.Margin).Round(100*time.Millisecond)+100*time.Millisecond))
	}
	if f.LockDelay > f.Takeover() {
		add("consul.lock_delay", `consul.lock_delay = %s is longer than the wait the lease already imposes on a new active (%s): it slows every failover and adds no safety; write at most "%s"`,
			quote(formatDuration(f.LockDelay)), f.Takeover(), formatDuration(f.Takeover().Truncate(time.Second)))
	}
	return out
}
