package config

import (
	"testing"
	"time"
)

// TestFencingConstants: the fixed parts of the fencing timing agree with
// each other, whatever the configuration: the margin covers two watchdog
// polls, renewals in flight cover a renewal timeout, and the default
// configuration passes its own checks.
func TestFencingConstants(t *testing.T) {
	f := Default().Fencing()
	if f.Margin < 2*f.WatchdogPoll {
		t.Errorf("margin %v under two watchdog polls of %v", f.Margin, f.WatchdogPoll)
	}
	if f.Renew*time.Duration(f.RenewInFlight) < f.RenewTimeout {
		t.Errorf("%d renewals every %v do not cover a renewal timeout of %v", f.RenewInFlight, f.Renew, f.RenewTimeout)
	}
	if p := f.check(); len(p) != 0 {
		t.Errorf("the default timing fails its own checks: %v", p)
	}
	if got, want := f.Takeover(), 3475*time.Millisecond; got != want {
		t.Errorf("takeover wait %v, want %v (the README's figure)", got, want)
	}
}

// TestBoundsOfTheDefaults: the numbers the README's failover table states.
func TestBoundsOfTheDefaults(t *testing.T) {
	b := Default().Bounds()
	want := Bounds{CheckTTL: 2 * time.Second, NodeDetection: 2250 * time.Millisecond, ConsulElection: 2 * time.Second,
		LockDelay: time.Second, Refused: 3225 * time.Millisecond, Takeover: 3475 * time.Millisecond, Partition: 6 * time.Second,
		Failsafe: true, ElectionCarry: 10 * time.Second}
	if b != want {
		t.Fatalf("bounds of the defaults %+v, want %+v", b, want)
	}
	if b.NodeLoss() != 3475*time.Millisecond {
		t.Fatalf("node loss %s, want 3.475s", b.NodeLoss())
	}
	c := Default()
	c.Consul.RaftMultiplier, c.Consul.GossipProbeInterval, c.Consul.GossipSuspicionMult = 3, time.Second, 4
	if b := c.Bounds(); b.ConsulElection != 6*time.Second || b.NodeDetection != 5250*time.Millisecond || b.NodeLoss() != 6250*time.Millisecond {
		t.Fatalf("bounds at raft_multiplier 3, a 1 s probe, suspicion 4: %+v, node loss %s", b, b.NodeLoss())
	}
}
