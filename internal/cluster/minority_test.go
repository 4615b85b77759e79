package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestChooseSurvivor(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		sides []HealSide
		want  string
	}{
		{"the later commit wins over more nodes and a further LSN", []HealSide{
			{Cluster: "aaa", Nodes: []string{"n2", "n3"}, LastCommit: t0, LSN: 900},
			{Cluster: "bbb", Nodes: []string{"n1"}, LastCommit: t0.Add(time.Millisecond), LSN: 100},
		}, "bbb"},
		{"a known commit time wins over none", []HealSide{
			{Cluster: "aaa", Nodes: []string{"n1"}, LSN: 900},
			{Cluster: "bbb", Nodes: []string{"n2"}, LastCommit: t0, LSN: 100},
		}, "bbb"},
		{"same commit time: the further LSN", []HealSide{
			{Cluster: "aaa", Nodes: []string{"n1"}, LastCommit: t0, LSN: 100},
			{Cluster: "bbb", Nodes: []string{"n2"}, LastCommit: t0, LSN: 200},
		}, "bbb"},
		{"all equal: more nodes, then the lower cluster id", []HealSide{
			{Cluster: "ccc", Nodes: []string{"n1"}},
			{Cluster: "bbb", Nodes: []string{"n2"}},
			{Cluster: "ddd", Nodes: []string{"n3", "n4"}},
		}, "ddd"},
		{"all equal in all: the lower cluster id", []HealSide{
			{Cluster: "ccc", Nodes: []string{"n1"}},
			{Cluster: "bbb", Nodes: []string{"n2"}},
		}, "bbb"},
		{"three sides", []HealSide{
			{Cluster: "a", Nodes: []string{"n1"}, LastCommit: t0.Add(2 * time.Second)},
			{Cluster: "b", Nodes: []string{"n2"}, LastCommit: t0.Add(3 * time.Second)},
			{Cluster: "c", Nodes: []string{"n3"}, LastCommit: t0.Add(1 * time.Second)},
		}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, why := ChooseSurvivor(tc.sides)
			if tc.sides[i].Cluster != tc.want {
				t.Fatalf("winner %s, want %s (%s)", tc.sides[i].Cluster, tc.want, why)
			}
			// The same answers in another order choose alike.
			rev := make([]HealSide, len(tc.sides))
			for j := range tc.sides {
				rev[len(rev)-1-j] = tc.sides[j]
			}
			if j, _ := ChooseSurvivor(rev); rev[j].Cluster != tc.want {
				t.Fatalf("reversed: winner %s, want %s", rev[j].Cluster, tc.want)
			}
			if !strings.Contains(why, "side "+tc.want) {
				t.Errorf("reason %q does not name the winner", why)
			}
			h := Heal{Winner: tc.want, Sides: tc.sides}
			for _, s := range tc.sides {
				if h.Loses(s.Cluster) == (s.Cluster == tc.want) {
					t.Errorf("Loses(%s) = %v", s.Cluster, h.Loses(s.Cluster))
				}
			}
			if h.Loses("unknown") {
				t.Error("a cluster the heal does not name must not reset")
			}
		})
	}
}

func TestMinorityKeyAndClusterID(t *testing.T) {
	const k = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	a := MinorityKey(k, []string{"id-2", "id-1"})
	if b := MinorityKey(k, []string{"id-1", "id-2"}); a != b {
		t.Fatal("the servers of a side, listed in another order, derive another key")
	}
	if a == MinorityKey(k, []string{"id-1"}) || a == MinorityKey("other", []string{"id-1", "id-2"}) {
		t.Fatal("another side or another key derive the same key")
	}
	if len(a) != 44 {
		t.Fatalf("derived key %q is not 32 bytes in base64", a)
	}
	if ConsulClusterID(nil) != "" || ConsulClusterID([]string{a}) == ConsulClusterID([]string{k}) {
		t.Fatal("cluster ids")
	}
	if ConsulClusterID([]string{a, k}) != ConsulClusterID([]string{a}) {
		t.Fatal("the id is the primary key's")
	}
}

func TestRaftStateHasLeader(t *testing.T) {
	for _, c := range []struct {
		r    RaftState
		want bool
	}{
		{RaftState{State: "Leader", LastContactMS: 0}, true},
		{RaftState{State: "Follower", LastContactMS: 120}, true},
		{RaftState{State: "Follower", LastContactMS: 9000}, false}, // heard nothing for 9 s
		{RaftState{State: "Follower", LastContactMS: -1}, false},   // never
		{RaftState{State: "Candidate", LastContactMS: 10}, false},
		{RaftState{}, false},
	} {
		if got := c.r.HasLeader(5 * time.Second); got != c.want {
			t.Errorf("%+v: HasLeader = %v, want %v", c.r, got, c.want)
		}
	}
}
