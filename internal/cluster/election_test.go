package cluster

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

type candOpt func(*Candidate)

func at(l LSN) candOpt          { return func(c *Candidate) { c.LSN = l } }
func timeline(t uint32) candOpt { return func(c *Candidate) { c.Timeline = t } }
func priority(p int) candOpt    { return func(c *Candidate) { c.Priority = p } }

var (
	noFailover candOpt = func(c *Candidate) { c.NoFailover = true }
	unhealthy  candOpt = func(c *Candidate) { c.Healthy = false }
	regaining  candOpt = func(c *Candidate) { c.Regaining = true }
	maint      candOpt = func(c *Candidate) { c.Maintenance = true }
)

// standby is a healthy candidate on timeline 1 at LSN 0/1000000 unless opts
// say otherwise.
func standby(name string, opts ...candOpt) Candidate {
	c := Candidate{Name: name, Healthy: true, Timeline: 1, LSN: 0x1000000}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func cands(cs ...Candidate) []Candidate { return cs }

func TestChooseNextMaster(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name       string
		cands      []Candidate
		lastLSN    LSN
		maxLag     int64
		sync       []string
		want       string
		wantReason string // substring
	}{
		{"highest LSN wins", cands(standby("a", at(100)), standby("b", at(200))), 0, 16 * mib, nil, "b", "highest LSN 0/C8 on timeline 1"},
		{"maintenance never chosen", cands(standby("a", at(300), maint, priority(9)), standby("b", at(200))), 0, 16 * mib, nil, "b", "only eligible"},
		{"nofailover never chosen", cands(standby("a", at(300), noFailover), standby("b", at(200))), 0, 16 * mib, nil, "b", "only eligible"},
		{"too far behind is not chosen", cands(standby("a", at(1)), standby("b", at(200<<20))), 200 << 20, 16 * mib, nil, "b", "only eligible"},
		{"within maximum lag is chosen", cands(standby("a", at(190<<20), priority(9)), standby("b", at(200<<20))), 201 << 20, 16 * mib, nil, "b", "highest LSN"},
		{"lag rule skipped when the primary LSN is unknown", cands(standby("a", at(1))), 0, 0, nil, "a", "only eligible candidate, at LSN 0/1 on timeline 1"},
		{"max lag 0 takes only one with everything", cands(standby("a", at(99)), standby("b", at(100))), 100, 0, nil, "b", ""},
		{"ahead of the primary record is within lag", cands(standby("a", at(150))), 100, 0, nil, "a", ""},
		{"unhealthy not chosen", cands(standby("a", at(300), unhealthy), standby("b", at(200))), 0, 16 * mib, nil, "b", ""},
		{"timeline beats LSN", cands(standby("a", at(300), timeline(1)), standby("b", at(200), timeline(2))), 0, 16 * mib, nil, "b", "highest timeline 2 (at LSN 0/C8)"},
		{"priority breaks ties", cands(standby("a", priority(1)), standby("b", priority(5)), standby("c", priority(3))), 0, 16 * mib, nil, "b", "highest priority 5 among candidates at LSN 0/1000000 on timeline 1"},
		{"name breaks ties", cands(standby("c"), standby("a"), standby("b")), 0, 16 * mib, nil, "a", "first by name"},
		{"priority never beats more WAL", cands(standby("a", at(101), priority(0)), standby("b", at(100), priority(100))), 0, 16 * mib, nil, "a", "highest LSN"},
		{"sync-only", cands(standby("a", at(300)), standby("b", at(200))), 0, 16 * mib, []string{"b"}, "b", "only eligible"},
		{"sync set nil means any", cands(standby("a", at(300)), standby("b", at(200))), 0, 16 * mib, nil, "a", ""},
		{"unknown LSN not chosen", cands(standby("a", at(0)), standby("b", at(5))), 0, 16 * mib, nil, "b", ""},
		{"the former active regaining its lock first", cands(standby("a", at(300), priority(9)), standby("b", at(300), regaining)), 0, 16 * mib, nil, "b", "the former active, taking back its lock"},
		{"regaining but unhealthy is not chosen", cands(standby("a", at(200)), standby("b", at(300), regaining, unhealthy)), 0, 16 * mib, nil, "a", "only eligible"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := ChooseNextMaster(tc.cands, tc.lastLSN, tc.maxLag, tc.sync)
			if err != nil {
				t.Fatalf("ChooseNextMaster: %v", err)
			}
			if got != tc.want {
				t.Fatalf("chose %q (%s), want %q", got, why, tc.want)
			}
			if !strings.Contains(why, tc.wantReason) {
				t.Fatalf("reason %q, want it to contain %q", why, tc.wantReason)
			}
		})
	}
}

func TestChooseNextMasterNoneEligible(t *testing.T) {
	tests := []struct {
		name  string
		cands []Candidate
		sync  []string
		want  []string // substrings of the error, in order
	}{
		{"no members", nil, nil, []string{"no members to choose from"}},
		{"each exclusion named", cands(
			standby("d", at(1)),
			standby("a", unhealthy),
			standby("c", at(0x2000000)),
			standby("b", noFailover),
			standby("e", at(0)),
		), []string{"a", "b", "d", "e"}, []string{
			"a: unhealthy",
			"b: nofailover is set",
			"c: not in the synchronous standby set",
			"d: at 0/1, 33554431 bytes behind the last primary LSN 0/2000000, more than maximum_lag_on_failover (1024 bytes)",
			"e: its WAL position is unknown",
		}},
		{"empty sync set excludes all", cands(standby("a")), []string{}, []string{"a: not in the synchronous standby set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := ChooseNextMaster(tc.cands, 0x2000000, 1024, tc.sync)
			var nce *NoCandidateError
			if !errors.As(err, &nce) {
				t.Fatalf("chose %q, err %v; want a *NoCandidateError", got, err)
			}
			msg, rest := err.Error(), err.Error()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q: want %q (in this order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if len(nce.Excluded) != len(tc.cands) {
				t.Fatalf("%d exclusions, want one per candidate (%d): %v", len(nce.Excluded), len(tc.cands), nce.Excluded)
			}
		})
	}
}

func TestChooseNextMasterIgnoresInputOrder(t *testing.T) {
	all := cands(
		standby("n1", at(500), priority(1)),
		standby("n2", at(500), priority(2)),
		standby("n3", at(500), priority(2)),
		standby("n4", at(400), timeline(3)),
		standby("n5", at(900), timeline(2)),
		standby("n6", at(9000), timeline(3), unhealthy),
		standby("n7", at(9000), timeline(3), noFailover),
	)
	wantName, wantWhy, err := ChooseNextMaster(all, 0, 1<<30, nil)
	if err != nil || wantName != "n4" {
		t.Fatalf("chose %q (%s, %v), want n4: highest timeline among eligible", wantName, wantWhy, err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		shuffled := append([]Candidate(nil), all...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		before := append([]Candidate(nil), shuffled...)
		got, why, err := ChooseNextMaster(shuffled, 0, 1<<30, nil)
		if err != nil || got != wantName || why != wantWhy {
			t.Fatalf("shuffle %d: chose %q (%s, %v), want %q (%s)", i, got, why, err, wantName, wantWhy)
		}
		for j := range before {
			if before[j] != shuffled[j] {
				t.Fatalf("shuffle %d: ChooseNextMaster reordered its input", i)
			}
		}
	}
}
