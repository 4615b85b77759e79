package handlerrunner

import (
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// TestCarry is the table of config.Fencing's two rules for a grant round
// while Consul has no leader, on three nodes.
func TestCarry(t *testing.T) {
	failsafe := config.Fencing{Failsafe: true, ElectionCarry: 10 * time.Second}
	fence := config.Fencing{ElectionCarry: 10 * time.Second}
	for _, c := range []struct {
		name                  string
		f                     config.Fencing
		agentUp               bool
		granted, failsafeOnly int
		carried               time.Duration
		want                  int
	}{
		{"election: one peer grants, majority", fence, true, 1, 0, 2 * time.Second, carriedByMajority},
		{"fence: the carry ends after an election's worth", fence, true, 2, 0, 11 * time.Second, notCarried},
		{"fence: peers whose agents are down do not count", fence, true, 0, 2, time.Second, notCarried},
		{"fence: the active's own agent down", fence, false, 2, 0, time.Second, notCarried},
		{"failsafe: servers of both standbys down, both grant", failsafe, true, 0, 2, time.Hour, carriedByAll},
		{"failsafe: the active's agent down too, every member grants", failsafe, false, 1, 1, time.Minute, carriedByAll},
		{"failsafe: a member does not answer (partition)", failsafe, true, 0, 1, time.Second, notCarried},
		{"failsafe: the active's agent down and a member silent", failsafe, false, 1, 0, time.Second, notCarried},
		{"failsafe: majority with agents up carries without a bound", failsafe, true, 1, 0, time.Hour, carriedByMajority},
		{"nobody grants", failsafe, true, 0, 0, time.Second, notCarried},
	} {
		if got := carry(c.f, c.agentUp, 3, c.granted, c.failsafeOnly, c.carried); got != c.want {
			t.Errorf("%s: carry = %d, want %d", c.name, got, c.want)
		}
	}
}
