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
