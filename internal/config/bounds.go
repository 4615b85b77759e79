package config

import (
	"fmt"
	"time"
)

// ProbeTimeout bounds each probe of one check round: three quarters of the
// interval, so a round ends before the next tick, but at least 500 ms so a
// short interval does not fail a healthy but busy PostgreSQL.
func ProbeTimeout(interval time.Duration) time.Duration {
	return max(interval*3/4, 500*time.Millisecond)
}

// PartitionStale is how old the consul-watcher's view (a round every
// interval) may be before its readers mark it stale: three rounds and a
// probe timeout.
func PartitionStale(interval time.Duration) time.Duration {
	return 3*interval + ProbeTimeout(interval)
}

// CheckTTL is the TTL of a check updated every every: every x multiplier,
// plus a margin of one probe timeout and 250 ms for the agent round trip,
// so a check whose probe takes its whole timeout still reports before it
// expires.
func CheckTTL(every time.Duration, multiplier int, interval time.Duration) time.Duration {
	return every*time.Duration(multiplier) + ProbeTimeout(interval) + 250*time.Millisecond
}

// Bounds are the failover times a configuration implies: what the README's
// failover table states for the defaults, and `understudy config check`
// prints for a node's file.
type Bounds struct {
	// CheckTTL: a failing check (or a check-runner that stopped reporting)
	// frees the lock within this.
	CheckTTL time.Duration
	// NodeDetection: Consul's gossip declares a dead or cut-off node dead
	// within about this (a probe, its timeout, and the suspicion time,
	// gossip_suspicion_mult probe intervals for up to ten nodes), and its
	// session and lock go with it.
	NodeDetection time.Duration
	// ConsulElection: a Consul leader election takes up to about this,
	// during which the active's lease is carried by its peers' grants.
	ConsulElection time.Duration
	// LockDelay, Refused and Takeover are Fencing's.
	LockDelay, Refused, Takeover time.Duration
	// Partition: a node cut from a majority of the Consul servers says
	// it is in the minority (its consul-watcher's view, a partition
	// event) within this of the cut: cluster.minority_timeout from the
	// first round that saw the cut, which comes within a round of it.
	Partition time.Duration
	// Failsafe and ElectionCarry are Fencing's: what a Consul outage
	// does to the active (consul.outage).
	Failsafe      bool
	ElectionCarry time.Duration
}

// Bounds returns the failover times of c.
func (c *Config) Bounds() Bounds {
	f := c.Fencing()
	g := c.Consul
	return Bounds{
		CheckTTL:       CheckTTL(c.Checks.Interval, c.Checks.TTLMultiplier, c.Checks.Interval),
		NodeDetection:  g.GossipProbeInterval + g.GossipProbeTimeout + time.Duration(g.GossipSuspicionMult)*g.GossipProbeInterval,
		ConsulElection: f.MinLease(),
		LockDelay:      f.LockDelay, Refused: f.Refused(), Takeover: f.Takeover(),
		Partition: c.Cluster.MinorityTimeout + c.Checks.Interval,
		Failsafe:  f.Failsafe, ElectionCarry: f.ElectionCarry,
	}
}

// NodeLoss is when, after an active node dies or is cut off, another node
// may promote: its lock is free after NodeDetection and the lock delay, and
// it waits out the old lease from the old active's last renewal it saw;
// the election and the promotion (well under a second) come on top.
func (b Bounds) NodeLoss() time.Duration {
	return max(b.NodeDetection+b.LockDelay, b.Takeover)
}

// Lines are the bounds as `config check` prints them.
func (b Bounds) Lines() []string {
	return []string{
		fmt.Sprintf("a failing check or a hung check-runner frees the lock within %s (one check TTL)", b.CheckTTL),
		"the active's PostgreSQL dies: the active releases the lock saying it fenced, and another node promotes at once",
		fmt.Sprintf("a dead or cut-off active: Consul declares it dead in about %s; another node promotes after %s (and the election, under a second)", b.NodeDetection, b.NodeLoss()),
		fmt.Sprintf("an active that cannot renew its lease refuses writes %s after its last renewal; a new active waits %s from the last renewal it saw unless the old one said it fenced", b.Refused, b.Takeover),
		fmt.Sprintf("a Consul leader election takes up to about %s; the lease outlasts it, so losing a standby never fences the active", b.ConsulElection),
		fmt.Sprintf("a node cut from a majority of the Consul servers reports the partition within %s (minority_timeout and a round), after it stopped taking writes", b.Partition),
		b.outageLine(),
	}
}

func (b Bounds) outageLine() string {
	if b.Failsafe {
		return fmt.Sprintf("Consul without a leader, the nodes whole (consul.outage = %q): the active keeps taking writes while every other member confirms it (or a majority whose Consul agents answer); otherwise it stops %s after the last confirmation", OutageFailsafe, b.Refused)
	}
	return fmt.Sprintf("Consul without a leader (consul.outage = %q): the active stops taking writes at most %s after its last committed renewal (a leader election's carry, then the lease)", OutageFence, b.ElectionCarry+b.Refused)
}
