//go:build chaos

package handlerrunner_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// The chaos suite (make chaos): a three-node cluster on hosts with network
// stacks of their own, a writer on every node's PostgreSQL for the whole
// run, and CHAOS_FAULTS random faults one after the other, each held for a
// random time and then healed. After each, the cluster must be whole again
// (one active, the others streaming standbys with sessions) within
// chaosRecovery. Checked where the data is: no two nodes acknowledged
// writes in overlapping windows; every acknowledged row is on the active
// (in asynchronous mode the rows lost are counted, with the time they were
// written in). It ends with one table, a row per kind of fault.
//
// Settings (environment): CHAOS_FAULTS (default 30), CHAOS_MODE "sync"
// (default) or "async", CHAOS_OUTAGE "failsafe" (default) or "fence"
// (consul.outage), CHAOS_SEED (default: the time), CHAOS_TABLE (a file the
// table is also written to).

const (
	// chaosRecovery bounds the time from a fault's heal to a whole
	// cluster. The slowest path is a node that was cut off while another
	// took over: its PostgreSQL is rewound (or re-cloned) and follows the
	// new active; a second failover after a heal (waitHealedAfter) adds
	// one more of those.
	chaosRecovery = 90 * time.Second
	// chaosHoldMin and chaosHoldMax bound how long a fault is held: from
	// shorter than failure detection to longer than a failover.
	chaosHoldMin = 500 * time.Millisecond
	chaosHoldMax = 10 * time.Second
	// chaosSettle is the quiet time between a recovery and the next fault.
	chaosSettle = 2 * time.Second
	// chaosDisk is the size of each node's disk (a tmpfs under the
	// PostgreSQL data directory), which the disk fault fills.
	chaosDisk = "1g"
)

// fault is one kind of fault: where it strikes and how; inject returns the
// heal.
type fault struct {
	name   string
	target string // "active" or "standby"
	inject func(c *tcluster, net *testenv.Net, n *tnode) (heal func())
}

func (f fault) String() string { return f.name + " (" + f.target + ")" }

// faults is every kind the suite draws from.
func faults() []fault {
	var out []fault
	both := func(name string, inject func(c *tcluster, net *testenv.Net, n *tnode) func()) {
		out = append(out, fault{name, "active", inject}, fault{name, "standby", inject})
	}
	both("SIGKILL postgres", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		killPostgres(c.t, n.postmasterPID(c.t))
		return func() {} // the handler-runner starts it again
	})
	both("SIGKILL consul", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		n.consul.Kill(c.t)
		return func() { n.consul.Start(c.t) } // as systemd's Restart= would
	})
	both("SIGKILL check-runner", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		_ = n.checks.Kill()
		return func() { n.checks = c.startDaemon(n, "check-runner") }
	})
	both("SIGKILL handler-runner", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		_ = n.handler.Kill()
		return func() { n.handler = c.startDaemon(n, "handler-runner") }
	})
	both("SIGKILL watchdog", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		if pid := n.watchdogPID(); pid != 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return func() {} // the handler-runner supervises it
	})
	both("SIGSTOP postgres", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return freeze(c.t, services.WithChildren(n.postmasterPID(c.t)))
	})
	both("SIGSTOP consul", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return freeze(c.t, []int{n.consul.Process.PID()})
	})
	both("SIGSTOP check-runner", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return freeze(c.t, []int{n.checks.PID()})
	})
	both("SIGSTOP handler-runner", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return freeze(c.t, []int{n.handler.PID()})
	})
	both("SIGSTOP both daemons", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return freeze(c.t, []int{n.handler.PID(), n.checks.PID()})
	})
	both("SIGSTOP whole node", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		pids := []int{n.consul.Process.PID(), n.handler.PID(), n.checks.PID(), n.watcher.PID()}
		if pid := n.watchdogPID(); pid != 0 {
			pids = append(pids, pid)
		}
		return freeze(c.t, append(pids, services.WithChildren(n.postmasterPID(c.t))...))
	})
	both("partition", func(_ *tcluster, net *testenv.Net, n *tnode) func() {
		net.Isolate(n.host)
		return net.Heal
	})
	both("one-way partition", func(_ *tcluster, net *testenv.Net, n *tnode) func() {
		net.Deafen(n.host)
		return net.Heal
	})
	both("consul restart", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		n.consul.Stop(c.t)
		return func() { n.consul.Start(c.t) }
	})
	// Two of three servers stopped with the network whole: Consul has no
	// leader (consul.outage). On the active, the standbys' servers stop
	// and the active's agent still answers; on a standby, the active's own
	// agent is among those stopped.
	both("consul outage (the other two servers)", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		var stopped []*testenv.Consul
		for _, o := range c.nodes {
			if o != n {
				o.consul.Stop(c.t)
				stopped = append(stopped, o.consul)
			}
		}
		return func() { testenv.StartServers(c.t, stopped...) }
	})
	out = append(out, fault{"disk full", "standby", func(c *tcluster, _ *testenv.Net, n *tnode) func() {
		return fillDisk(c.t, filepath.Dir(n.cfg.Postgres.DataDir))
	}})
	return out
}

// freeze SIGSTOPs pids and returns what thaws them. The first is the
// process frozen; the others are its children, one of which may have exited
// since they were listed (a backend whose client left): it is skipped.
func freeze(t testing.TB, pids []int) func() {
	for i, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			if i > 0 && errors.Is(err, syscall.ESRCH) {
				continue
			}
			t.Fatalf("SIGSTOP process (pid %d): %v", pid, err)
		}
	}
	thaw := func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)
	return thaw
}

// mountDisk mounts a tmpfs of chaosDisk at a new directory: a node's disk,
// small enough to fill.
func mountDisk(t testing.TB, name string) string {
	t.Helper()
	dir := testenv.TempDir(t, name+"-disk")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+chaosDisk+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a disk for %s: %v: %s", name, err, out)
	}
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("cleanup: umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk takes every free block of the filesystem at dir and returns what
// frees them.
func fillDisk(t testing.TB, dir string) func() {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "chaos-fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// tmpfs refuses to allocate the last blocks in one call: most at once,
	// the rest written until the filesystem says it is full.
	size := max(int64(st.Bavail)*st.Bsize-8<<20, 0)
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		t.Fatalf("fill %s: %v", dir, err)
	}
	if _, err := f.Seek(size, 0); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for range 1 << 10 {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	free := func() { _ = os.Remove(path) }
	t.Cleanup(free)
	return free
}

// outcome is what one fault did.
type outcome struct {
	fault     fault
	node      string
	hold      time.Duration
	from, to  time.Time // injected; whole again
	failover  bool
	recovery  time.Duration // heal to whole
	recovered bool
	lost      []ack
}

func TestChaos(t *testing.T) {
	count := 30
	if s := os.Getenv("CHAOS_FAULTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_FAULTS=%q: want a positive number of faults", s)
		}
		count = n
	}
	mode := os.Getenv("CHAOS_MODE")
	switch mode {
	case "":
		mode = "sync"
	case "sync", "async":
	default:
		t.Fatalf("CHAOS_MODE=%q: want sync or async", mode)
	}
	// The partition faults run in the only partition mode there is,
	// "fence"; CHAOS_OUTAGE picks what the Consul outage fault meets.
	outage := os.Getenv("CHAOS_OUTAGE")
	switch outage {
	case "":
		outage = config.OutageFailsafe
	case config.OutageFailsafe, config.OutageFence:
	default:
		t.Fatalf("CHAOS_OUTAGE=%q: want %s or %s", outage, config.OutageFailsafe, config.OutageFence)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want a number", s)
		}
		seed = v
	}
	t.Logf("chaos: %d faults, %s mode, consul.outage %s, partition_mode fence, seed %d (CHAOS_SEED=%d repeats the draw)", count, mode, outage, seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	testenv.RequireNetns(t)
	disks := make([]string, 3)
	for i := range disks {
		disks[i] = mountDisk(t, fmt.Sprintf("n%d", i+1))
	}
	c, net := newHostCluster(t, func(i int) extraHCL {
		return extraHCL{postgres: fmt.Sprintf("data_dir = %q\n  synchronous = %v", filepath.Join(disks[i], "postgres"), mode == "sync"),
			consul: fmt.Sprintf("outage = %q", outage)}
	})
	act := c.waitHealthy(startTimeout)
	w := c.startWriters(act)
	kinds := faults()
	var outs []outcome
	lost := map[ack]bool{}
	// Ctrl-C ends the run after healing the fault in progress, with the
	// table so far and everything the run started stopped and removed (a
	// test binary killed by the signal would leave them running).
	stop, unnotify := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer unnotify()
	pause := func(d time.Duration) {
		select {
		case <-stop.Done():
		case <-time.After(d):
		}
	}
	for i := range count {
		if stop.Err() != nil {
			t.Logf("interrupted after %d faults", i)
			break
		}
		f := kinds[rng.IntN(len(kinds))]
		// The active as it is now: the settle after the last fault may
		// have moved the role.
		if a, err := c.whole(chaosRecovery, time.Now()); err == nil {
			act = a
		} else {
			t.Errorf("fault %d: the cluster is not whole before it: %v", i+1, err)
			break
		}
		var n *tnode
		if f.target == "active" {
			n = act
		} else {
			var standbys []*tnode
			for _, m := range c.nodes {
				if m != act {
					standbys = append(standbys, m)
				}
			}
			n = standbys[rng.IntN(len(standbys))]
		}
		hold := chaosHoldMin + time.Duration(rng.Int64N(int64(chaosHoldMax-chaosHoldMin)))
		o := outcome{fault: f, node: n.name, hold: hold, from: time.Now()}
		heal := f.inject(c, net, n)
		pause(hold)
		heal()
		healed := time.Now()
		got, err := c.whole(chaosRecovery, healed)
		o.to = time.Now()
		o.recovery = o.to.Sub(healed)
		o.recovered = err == nil
		// The active can still change in the moment after the cluster was
		// seen whole (a session ended an instant before the look): the
		// rows are read where the cluster is whole again, within the same
		// bound.
		// The acknowledged rows are taken before the active's are read:
		// a row acknowledged in between is not yet lost.
		var have map[ack]bool
		acks := w.acked()
		for err == nil {
			if have, err = got.acks(); err == nil {
				break
			}
			t.Logf("fault %d: read the rows on %s: %v; waiting for the cluster to be whole again", i+1, got.name, err)
			if got, err = c.whole(chaosRecovery-time.Since(healed), healed); err == nil {
				o.to = time.Now()
				o.recovery = o.to.Sub(healed)
			}
			o.recovered = err == nil
		}
		if err != nil {
			t.Errorf("fault %d, %s on %s held %v: not whole %v after the heal: %v", i+1, f, n.name, hold.Round(time.Millisecond), chaosRecovery, err)
			outs = append(outs, o)
			break
		}
		o.failover = got != act
		act = got
		o.lost = lostRows(acks, have, lost)
		outs = append(outs, o)
		t.Logf("fault %d/%d: %s on %s held %v: whole %v after the heal, active %s, %d acknowledged rows lost",
			i+1, count, f, n.name, hold.Round(time.Millisecond), o.recovery.Round(time.Millisecond), act.name, len(o.lost))
		pause(chaosSettle)
	}
	w.halt()
	table, bad := chaosTable(outs, w.overlapWindows(), mode, outage)
	t.Log("\n" + table)
	if path := os.Getenv("CHAOS_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// whole waits until the cluster is healthy (one node active, the others
// standbys streaming from it with sessions) and the active has had its lock
// confirmed by Consul since since (a cut-off active still looks whole until
// its lease runs out), and returns the active; an error says what was seen
// at the deadline, where waitHealthy would end the test.
func (c *tcluster) whole(timeout time.Duration, since time.Time) (act *tnode, err error) {
	err = testenv.WaitFor(context.Background(), timeout, func() (err error) {
		if act, err = c.healthy(); err != nil {
			return err
		}
		st, err := act.nodeStatus()
		if err != nil {
			return err
		}
		if st.LeaseConfirmed == nil || st.LeaseConfirmed.Before(since) {
			return fmt.Errorf("%s has not had its lock confirmed since %s (last %v)", act.name, since.Format(time.StampMilli), st.LeaseConfirmed)
		}
		return nil
	})
	return act, err
}

// acks reads the rows n has.
func (n *tnode) acks() (map[ack]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := n.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "select node, seq from acks")
	if err != nil {
		return nil, err
	}
	have := map[ack]bool{}
	for rows.Next() {
		var a ack
		if err := rows.Scan(&a.node, &a.seq); err != nil {
			return nil, err
		}
		have[a] = true
	}
	return have, rows.Err()
}

// acked is every row acknowledged so far.
func (w *writers) acked() []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks)
}

// lostRows returns the acknowledged rows not in have that were not already
// reported lost, and adds them to lost.
func lostRows(acks []ack, have, lost map[ack]bool) []ack {
	var out []ack
	for _, a := range acks {
		k := ack{node: a.node, seq: a.seq}
		if !have[k] && !lost[k] {
			lost[k] = true
			out = append(out, a)
		}
	}
	return out
}

// chaosTable is the suite's report, a row per kind of fault, and what broke
// a promise.
func chaosTable(outs []outcome, overlaps []overlap, mode, outage string) (string, []string) {
	type row struct {
		faults, failovers, overlaps, lost, unrecovered int
		worstOverlap, worstRecovery                    time.Duration
		lostFrom, lostTo                               time.Time
	}
	rows := map[string]*row{}
	var bad []string
	for _, o := range outs {
		r := rows[o.fault.String()]
		if r == nil {
			r = &row{}
			rows[o.fault.String()] = r
		}
		r.faults++
		if o.failover {
			r.failovers++
		}
		if !o.recovered {
			r.unrecovered++
		}
		r.worstRecovery = max(r.worstRecovery, o.recovery)
		r.lost += len(o.lost)
		for _, a := range o.lost {
			if r.lostFrom.IsZero() || a.at.Before(r.lostFrom) {
				r.lostFrom = a.at
			}
			r.lostTo = later(r.lostTo, a.at)
		}
		if len(o.lost) > 0 && mode == "sync" {
			bad = append(bad, fmt.Sprintf("%s on %s: %d acknowledged rows lost in synchronous mode", o.fault, o.node, len(o.lost)))
		}
	}
	for _, ov := range overlaps {
		name := "(between faults)"
		for _, o := range outs {
			if !ov.at.Before(o.from) && !ov.at.After(o.to.Add(chaosSettle)) {
				name = o.fault.String()
				break
			}
		}
		r := rows[name]
		if r == nil {
			r = &row{}
			rows[name] = r
		}
		r.overlaps++
		r.worstOverlap = max(r.worstOverlap, ov.span)
		bad = append(bad, fmt.Sprintf("two writers during %s: %s", name, ov.text))
	}
	names := make([]string, 0, len(rows))
	for name := range rows {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "| fault | faults | failovers | overlaps (worst) | acknowledged rows lost | not whole in %v | worst recovery |\n", chaosRecovery)
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	var total row
	for _, name := range names {
		r := rows[name]
		ov := "0"
		if r.overlaps > 0 {
			ov = fmt.Sprintf("%d (%v)", r.overlaps, r.worstOverlap.Round(time.Millisecond))
		}
		lost := strconv.Itoa(r.lost)
		if r.lost > 0 {
			lost += fmt.Sprintf(" (written %s-%s)", r.lostFrom.Format("15:04:05.000"), r.lostTo.Format("15:04:05.000"))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %d | %v |\n", name, r.faults, r.failovers, ov, lost, r.unrecovered, r.worstRecovery.Round(100*time.Millisecond))
		total.faults += r.faults
		total.failovers += r.failovers
		total.overlaps += r.overlaps
		total.worstOverlap = max(total.worstOverlap, r.worstOverlap)
		total.lost += r.lost
		total.unrecovered += r.unrecovered
		total.worstRecovery = max(total.worstRecovery, r.worstRecovery)
	}
	fmt.Fprintf(&b, "| **all (%s mode, consul.outage %s, partition_mode fence)** | %d | %d | %d (%v) | %d | %d | %v |\n", mode, outage, total.faults, total.failovers,
		total.overlaps, total.worstOverlap.Round(time.Millisecond), total.lost, total.unrecovered, total.worstRecovery.Round(100*time.Millisecond))
	return b.String(), bad
}
