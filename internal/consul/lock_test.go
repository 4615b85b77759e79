package consul

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestCASJSON(t *testing.T) {
	_, c := agent(t)
	const key = "understudy/test/next-master"
	if ok, err := c.CASJSON(ctxT(t), key, map[string]string{"node": "a"}, 0); err != nil || !ok {
		t.Fatalf("CAS index 0 on a missing key = %v, %v, want true", ok, err)
	}
	if ok, err := c.CASJSON(ctxT(t), key, map[string]string{"node": "b"}, 0); err != nil || ok {
		t.Fatalf("CAS index 0 on an existing key = %v, %v, want false", ok, err)
	}
	ks, err := c.GetKey(ctxT(t), key, true)
	if err != nil || !ks.Found || string(ks.Value) != `{"node":"a"}` {
		t.Fatalf("GetKey = %+v, %v", ks, err)
	}
	// Two deciders read the same version; the first write wins, the second
	// is told so and must read again.
	if ok, err := c.CASJSON(ctxT(t), key, map[string]string{"node": "b"}, ks.ModifyIndex); err != nil || !ok {
		t.Fatalf("CAS with the current index = %v, %v, want true", ok, err)
	}
	if ok, err := c.CASJSON(ctxT(t), key, map[string]string{"node": "c"}, ks.ModifyIndex); err != nil || ok {
		t.Fatalf("CAS with a stale index = %v, %v, want false", ok, err)
	}
	var got map[string]string
	if _, _, err := c.GetJSON(ctxT(t), key, &got); err != nil || got["node"] != "b" {
		t.Fatalf("after the conflict the key holds %v (%v), want the first writer's b", got, err)
	}
	if ks, err := c.GetKey(ctxT(t), "understudy/test/missing", false); err != nil || ks.Found {
		t.Fatalf("GetKey of a missing key = %+v, %v, want Found false", ks, err)
	}
}

func TestListJSON(t *testing.T) {
	_, c := agent(t)
	const prefix = "understudy/test/members/"
	for _, n := range []string{"b", "a", "c"} {
		if err := c.PutJSON(ctxT(t), prefix+n, map[string]string{"name": n}); err != nil {
			t.Fatal(err)
		}
	}
	// A folder as Consul's UI creates it, and a key of another prefix.
	if err := c.PutJSON(ctxT(t), "understudy/test/membersX", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.api.KV().Put(&api.KVPair{Key: prefix + "sub/"}, nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	err := c.ListJSON(ctxT(t), prefix, func(key string, raw []byte) error {
		var m struct{ Name string }
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		names = append(names, m.Name)
		return nil
	})
	if err != nil || !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("ListJSON read %v, %v; want a b c", names, err)
	}
	stop := errors.New("stop")
	calls := 0
	err = c.ListJSON(ctxT(t), prefix, func(string, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("ListJSON with a failing callback: %v after %d calls, want stop after 1", err, calls)
	}
	if err.Error() != "list "+prefix+": "+prefix+"a: stop" {
		t.Fatalf("error %q does not name the key", err)
	}
}
