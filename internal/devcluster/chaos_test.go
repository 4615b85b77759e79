//go:build chaos

package devcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestChaosActiveMinority is the chaos suite's part for partition_mode
// "active-minority" (make chaos CHAOS_PARTITION_MODE=active-minority): a
// dev cluster of three nodes in network namespaces, writers on every
// node's PostgreSQL directly, and CHAOS_FAULTS random partitions one after
// the other: the active cut off, a standby cut off, either deafened
// (one-way), or a three-way split. In each, every side elects an active
// and takes writes; the sides stop being written in a random order, and
// after the heal exactly one active must remain, on the side written last,
// with every row its side acknowledged, none of the rows the other sides
// acknowledged after the cut, and those reported kept aside (each node at
// least as many commits as it acknowledged lost rows). Settings: as
// TestChaos's (CHAOS_FAULTS, default 10; CHAOS_SEED; CHAOS_TABLE).
func TestChaosActiveMinority(t *testing.T) {
	testenv.RequireNetns(t)
	count := 10
	if v := os.Getenv("CHAOS_FAULTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_FAULTS=%q: want a positive number of faults", v)
		}
		count = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want a number", v)
		}
		seed = n
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("chaos: %d faults, partition_mode active-minority, async mode, seed %d (CHAOS_SEED=%d repeats the draw)", count, seed, seed)

	m := startMinorityTest(t, "chaos-minority")
	defer m.stopWriters()
	ctx, s := context.Background(), m.s

	type row struct {
		faults, lost, kept int
		actives, whole     time.Duration
	}
	rows := map[string]*row{}
	for i := range count {
		a, err := Active(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		var kind string
		var sides [][]int
		oneWay := false
		switch f := rng.IntN(5); f {
		case 0, 1:
			kind, sides = "active cut off", [][]int{{a}, others(a)}
			oneWay = f == 1
		case 2, 3:
			sb := others(a)[rng.IntN(2)]
			kind, sides = "standby cut off", [][]int{{sb}, others(sb)}
			oneWay = f == 3
		default:
			kind, sides = "three-way split", [][]int{{0}, {1}, {2}}
		}
		if oneWay {
			kind += " (one-way)"
		}
		order := rng.Perm(len(sides))
		t.Logf("fault %d/%d: %s: sides %v, written last %v", i+1, count, kind, sideNames(s, sides), names(s, sides[order[len(order)-1]]))
		res := m.partition(sides, order, oneWay)
		if t.Failed() {
			t.Fatalf("fault %d/%d (%s) failed; CHAOS_SEED=%d repeats the draw", i+1, count, kind, seed)
		}
		r := rows[kind]
		if r == nil {
			r = &row{}
			rows[kind] = r
		}
		r.faults++
		r.lost += res.lost
		r.kept += res.kept
		r.actives, r.whole = max(r.actives, res.actives), max(r.whole, res.whole)
		t.Logf("fault %d/%d: %s: every side active after %v, whole %v after the heal, %d rows acknowledged by the sides that did not stay, %d commits reported kept aside",
			i+1, count, kind, res.actives.Round(time.Millisecond), res.whole.Round(time.Millisecond), res.lost, res.kept)
	}
	var b strings.Builder
	b.WriteString("| fault | faults | every side active (worst) | whole after the heal (worst) | rows acknowledged then thrown away | commits reported kept aside | staying side's rows missing |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range rows {
			if !yield(k) {
				return
			}
		}
	})
	var all row
	for _, k := range kinds {
		r := rows[k]
		fmt.Fprintf(&b, "| %s | %d | %v | %v | %d | %d | 0 |\n", k, r.faults, r.actives.Round(100*time.Millisecond), r.whole.Round(100*time.Millisecond), r.lost, r.kept)
		all.faults, all.lost, all.kept = all.faults+r.faults, all.lost+r.lost, all.kept+r.kept
		all.actives, all.whole = max(all.actives, r.actives), max(all.whole, r.whole)
	}
	fmt.Fprintf(&b, "| **all (async mode, partition_mode active-minority)** | %d | %v | %v | %d | %d | 0 |\n", all.faults, all.actives.Round(100*time.Millisecond), all.whole.Round(100*time.Millisecond), all.lost, all.kept)
	t.Log("\n" + b.String())
	if path := os.Getenv("CHAOS_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func sideNames(s *State, sides [][]int) [][]string {
	var out [][]string
	for _, side := range sides {
		out = append(out, names(s, side))
	}
	return out
}
