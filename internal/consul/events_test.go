package consul

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

func TestEventSeqSortsChronologically(t *testing.T) {
	early := eventSeq(time.Unix(0, 999), "zz")
	late := eventSeq(time.Unix(1, 0), "aa")
	if len(early) != 20+3 || !(early < late) {
		t.Fatalf("eventSeq: %q should sort before %q", early, late)
	}
	if got := eventSeq(time.Unix(1700000000, 5), "node-1"); got != "01700000000000000005-node-1" {
		t.Fatalf("eventSeq = %q", got)
	}
}

// Two nodes of one Consul cluster append in turn, each through its own
// agent; every reader sees one history, newest first, whatever the names.
func TestEventsNewestFirstAcrossNodes(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	servers := testenv.StartConsulCluster(t, 2)
	clients := make([]*Client, len(servers))
	for i, s := range servers {
		var err error
		if clients[i], err = New(config.Consul{Address: s.HTTPAddr}); err != nil {
			t.Fatal(err)
		}
	}
	c := clients[0]
	const prefix = "understudy/test/events/"
	var keys []string
	for i := range 4 {
		// node-1 sorts after node-0 by name; the history must not care.
		w := (i + 1) % 2
		node := servers[w].NodeName
		ev := cluster.Event{Time: time.Now(), Node: node, Kind: cluster.EventTransition, Reason: fmt.Sprint(i), LSN: 0x3000060}
		key, err := clients[w].AppendEvent(ctxT(t), prefix, node, ev)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, prefix) || !strings.HasSuffix(key, "-"+node) {
			t.Fatalf("event key %q, want %s<seq>-%s", key, prefix, node)
		}
		keys = append(keys, key)
	}
	if _, err := c.AppendEvent(ctxT(t), prefix, "a/b", cluster.Event{}); err == nil {
		t.Fatal("AppendEvent accepted a node name with '/'")
	}

	raws, err := c.Events(ctxT(t), prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != 4 {
		t.Fatalf("Events returned %d events, want 4", len(raws))
	}
	other, err := clients[1].Events(ctxT(t), prefix, 0)
	if err != nil || fmt.Sprintf("%s", other) != fmt.Sprintf("%s", raws) {
		t.Fatalf("the other node reads %s (%v), want the same history %s", other, err, raws)
	}
	for i, raw := range raws {
		var ev cluster.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		want := 3 - i // newest first
		if ev.Reason != fmt.Sprint(want) || prefix+ev.Seq != keys[want] || ev.LSN != 0x3000060 {
			t.Fatalf("event %d = %+v, want reason %d with seq %s", i, ev, want, keys[want])
		}
	}

	raws, err = c.Events(ctxT(t), prefix, 2)
	if err != nil || len(raws) != 2 || !strings.Contains(string(raws[0]), `"reason":"3"`) {
		t.Fatalf("Events limit 2 = %s, %v; want the 2 newest", raws, err)
	}

	if n, err := c.TrimEvents(ctxT(t), prefix, 3); err != nil || n != 1 {
		t.Fatalf("TrimEvents keep 3 = %d, %v; want 1 deleted", n, err)
	}
	raws, err = c.Events(ctxT(t), prefix, 0)
	if err != nil || len(raws) != 3 || !strings.Contains(string(raws[2]), `"reason":"1"`) {
		t.Fatalf("after trimming the oldest: %s, %v", raws, err)
	}
}

// Events reads the newest values in transactions of txnBatch; more events
// than one batch must all come back, in order.
func TestEventsMoreThanOneBatch(t *testing.T) {
	_, c := agent(t)
	const prefix = "understudy/test/events/"
	const n = txnBatch + 6
	for i := range n {
		if _, err := c.AppendEvent(ctxT(t), prefix, "n", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	raws, err := c.Events(ctxT(t), prefix, 0)
	if err != nil || len(raws) != n {
		t.Fatalf("Events = %d events, %v; want %d", len(raws), err, n)
	}
	for i, raw := range raws {
		var v struct{ I int }
		if err := json.Unmarshal(raw, &v); err != nil || v.I != n-1-i {
			t.Fatalf("event %d = %s, want i=%d", i, raw, n-1-i)
		}
	}
}
