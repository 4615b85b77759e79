package consul

import (
	"testing"
	"time"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name      string
		prev, got uint64
		want      uint64
	}{
		{"first answer", 0, 42, 42},
		{"moved on", 42, 50, 50},
		{"unchanged after wait", 42, 42, 42},
		{"went backwards: start over", 42, 7, 0},
		{"zero from consul: never wait on 0", 0, 0, 1},
	}
	for _, tc := range tests {
		if got := nextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("%s: nextIndex(%d, %d) = %d, want %d", tc.name, tc.prev, tc.got, got, tc.want)
		}
	}
}

func TestWatchKey(t *testing.T) {
	_, c := agent(t)
	const key = "understudy/test/leader"

	// Index 0 answers at once, even with a long wait, for a key that does
	// not exist yet.
	start := time.Now()
	ks, idx, err := c.WatchKey(ctxT(t), key, 0, time.Minute)
	if err != nil || ks.Found || idx == 0 {
		t.Fatalf("first WatchKey = %+v, %d, %v; want not found and an index", ks, idx, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("WatchKey with index 0 took %v; it must not block", d)
	}

	// A change ends the wait promptly.
	type result struct {
		ks  KeyState
		idx uint64
		err error
		d   time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		ks, idx, err := c.WatchKey(ctxT(t), key, idx, 30*time.Second)
		done <- result{ks, idx, err, time.Since(start)}
	}()
	time.Sleep(200 * time.Millisecond) // let the query block first; the test holds either way
	if err := c.PutJSON(ctxT(t), key, "a"); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("WatchKey did not return 10s after the key changed")
	}
	if r.err != nil || !r.ks.Found || string(r.ks.Value) != `"a"` || r.idx <= idx || r.ks.ModifyIndex != r.idx {
		t.Fatalf("WatchKey after a change = %+v, %d, %v; want the new value at a higher index", r.ks, r.idx, r.err)
	}
	if r.d > 5*time.Second {
		t.Fatalf("WatchKey returned %v after it started; a change should end it at once", r.d)
	}

	// Without a change it returns after wait (plus Consul's jitter of up to
	// wait/16), with the same index.
	const wait = 500 * time.Millisecond
	start = time.Now()
	ks, idx2, err := c.WatchKey(ctxT(t), key, r.idx, wait)
	d := time.Since(start)
	if err != nil || idx2 != r.idx || ks.ModifyIndex != r.ks.ModifyIndex {
		t.Fatalf("WatchKey without change = %+v, %d, %v; want index %d unchanged", ks, idx2, err, r.idx)
	}
	if d < wait || d > wait+2*time.Second {
		t.Fatalf("WatchKey without change returned after %v, want about %v", d, wait)
	}
}
