package handlerrunner_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// getJSON GETs url with the tests' client and decodes a 200's body.
func getJSON(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// outageHold is how long the tests below keep Consul without a leader:
// several leases, and longer than the carry of a leader election
// (config.Fencing.ElectionCarry, 10 s), so only the failsafe rule can keep
// an active serving through it.
const outageHold = 15 * time.Second

// stopStandbysConsul stops the Consul servers of every node but act (two of
// three: no quorum, no leader) with the network whole, and waits until
// act's agent knows no leader.
func (c *tcluster) stopStandbysConsul(act *tnode) []*testenv.Consul {
	c.t.Helper()
	var stopped []*testenv.Consul
	for _, n := range c.nodes {
		if n != act {
			n.consul.Stop(c.t)
			stopped = append(stopped, n.consul)
		}
	}
	cc := act.consul.Client(c.t)
	testenv.Eventually(c.t, 30*time.Second, func() error {
		if _, _, err := cc.KV().Get("understudy/t/leader", nil); err == nil {
			return fmt.Errorf("%s's consul still serves reads: it has a leader", act.name)
		}
		return nil
	})
	return stopped
}

// TestFailsafeKeepsTheActiveThroughAConsulOutage: with consul.outage =
// "failsafe" (the default), the Consul servers of both standbys stopped and
// the network whole, every member confirms the active over the API: its
// PostgreSQL keeps acknowledging writes for the whole outage, no other node
// acknowledges one or answers /status 200, and once the servers are back
// the active still holds the lock.
func TestFailsafeKeepsTheActiveThroughAConsulOutage(t *testing.T) {
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)
	cc := act.consul.Client(t)
	lockIndex := leaderLockIndex(t, cc)
	w := c.startWriters(act)
	s := c.sample()

	stopped := c.stopStandbysConsul(act)
	out := time.Now()
	t.Logf("consul has no leader: the servers of the standbys are stopped")
	// What an operator sees meanwhile: the active says its lease is
	// carried by failsafe, in its status and its metrics, and the cluster
	// status still answers, from its server's own state.
	testenv.Eventually(t, 10*time.Second, func() error {
		st, err := act.nodeStatus()
		if err != nil {
			return err
		}
		if c := st.LeaseCarried; c == nil || c.Rule != nodeapi.CarryFailsafe || len(c.GrantedBy) != 2 {
			return fmt.Errorf("%s's lease_carried is %+v, want failsafe granted by both standbys", act.name, c)
		}
		return nil
	})
	if m := act.metrics(t); !strings.Contains(m, `understudy_lease_carried{rule="failsafe"} 1`) {
		t.Errorf("metrics of %s during the outage lack understudy_lease_carried{rule=\"failsafe\"} 1", act.name)
	}
	var cs nodeapi.ClusterStatus
	if err := getJSON(act.apiURL()+"/v1/status/cluster", &cs); err != nil || !cs.Stale || cs.Leader != act.name || len(cs.Members) != 3 {
		t.Errorf("GET /v1/status/cluster on %s during the outage: %+v, %v; want stale, leader %s, 3 members", act.name, cs, err, act.name)
	}
	// Not a sleep-and-hope: the writers and the sampler record every
	// moment of the outage, checked below.
	time.Sleep(outageHold - time.Since(out))
	if code := act.statusCode(); code != 200 {
		t.Errorf("%s answers /status %d after %v without a consul leader, want 200 (failsafe)", act.name, code, time.Since(out).Round(time.Second))
	}
	testenv.StartServers(t, stopped...)
	t.Logf("consul has a leader again %v after the outage began", time.Since(out).Round(time.Millisecond))
	waitRenewals(t, cc, act)
	w.halt()
	keptRole(t, cc, act, lockIndex)
	// The carry ends when the holder hears that Consul committed a
	// renewal, a moment after Consul shows it.
	testenv.Eventually(t, 5*time.Second, func() error {
		if st, err := act.nodeStatus(); err != nil || st.LeaseCarried != nil {
			return fmt.Errorf("%s after the outage: lease_carried %+v (%v), want none", act.name, st.LeaseCarried, err)
		}
		return nil
	})
	for _, o := range w.overlaps() {
		t.Errorf("two writers: %s", o)
	}
	for _, n := range c.nodes {
		if n != act && (len(w.byNode()[n.name]) > 0 || s.everActive(n.name)) {
			t.Errorf("%s acknowledged %d writes or answered /status 200 (%v)", n.name, len(w.byNode()[n.name]), s.everActive(n.name))
		}
	}
	as, gap := w.longestPause(act)
	if gap > time.Second {
		t.Fatalf("the active's PostgreSQL took no write for %v during the consul outage: failsafe did not carry its lease", gap.Round(time.Millisecond))
	}
	t.Logf("%s served through %v without a consul leader: %d rows acknowledged, longest gap %v", act.name, outageHold, len(as), gap.Round(time.Millisecond))
}

// TestOutageFenceStopsTheActive: with consul.outage = "fence", the same
// outage stops the active's writes once its lease runs out: peers whose
// own agent does not answer carry nothing then, so the active stops within
// one lease of its last committed renewal (the ElectionCarry bound of the
// other rule, peers up without a leader, is TestCarry's). No node takes a
// write while Consul has no leader, and once the servers are back an
// active serves again with every acknowledged row.
func TestOutageFenceStopsTheActive(t *testing.T) {
	c := newCluster(t, func(int) extraHCL { return extraHCL{consul: `outage = "fence"`} })
	act := c.waitHealthy(startTimeout)
	w := c.startWriters(act)
	c.sample()

	stopped := c.stopStandbysConsul(act)
	out := time.Now()
	f := act.cfg.Fencing()
	bound := f.Refused() + time.Second
	var fenced time.Duration
	testenv.Eventually(t, bound+5*time.Second, func() error {
		fenced = time.Since(out)
		if code := act.statusCode(); code == 200 {
			return fmt.Errorf("%s still answers /status 200 %v into the outage", act.name, time.Since(out).Round(time.Millisecond))
		}
		return nil
	})
	stillWrites := w.byNode()[act.name]
	time.Sleep(2 * time.Second) // rows acknowledged now would be after the fence
	var late int
	for _, a := range w.byNode()[act.name] {
		if a.at.After(out.Add(bound)) {
			late++
		}
	}
	if late > 0 {
		t.Fatalf("%s acknowledged %d writes more than %v into the outage (consul.outage = \"fence\"; %d before)", act.name, late, bound, len(stillWrites))
	}
	testenv.StartServers(t, stopped...)
	now := c.waitHealthy(startTimeout)
	w.halt()
	for _, o := range w.overlaps() {
		t.Errorf("two writers: %s", o)
	}
	if n := w.lost(t, act, now); n > 0 {
		t.Fatalf("%d rows %s acknowledged are not on the active %s", n, act.name, now.name)
	}
	t.Logf("%s answered /status 400 %v into the outage (bound %v); %s is the active afterwards with every acknowledged row", act.name, fenced.Round(time.Millisecond), bound, now.name)
}
