package consulrecovery

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

const id1 = "13cc3836-7c0e-f89f-8421-cf769fafa258"

func dataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"raft", "serf"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "node-id"), []byte(id1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "raft", "raft.db"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRecoverWritesPeersJSON(t *testing.T) {
	d := dataDir(t)
	id, err := NodeID(d)
	if err != nil || id != id1 {
		t.Fatalf("NodeID = %q, %v", id, err)
	}
	if err := Recover(d, []Server{{ID: id, Address: "10.0.0.1:8300"}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d, "raft", "peers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	// Consul's documented format for Raft protocol 3.
	if len(got) != 1 || got[0]["id"] != id1 || got[0]["address"] != "10.0.0.1:8300" || got[0]["non_voter"] != false {
		t.Fatalf("peers.json = %s", b)
	}
}

func TestRecoverRefusesBadInput(t *testing.T) {
	d := dataDir(t)
	for name, servers := range map[string][]Server{
		"none":       nil,
		"no id":      {{Address: "10.0.0.1:8300"}},
		"no port":    {{ID: id1, Address: "10.0.0.1"}},
		"twice":      {{ID: id1, Address: "10.0.0.1:8300"}, {ID: id1, Address: "10.0.0.2:8300"}},
		"short uuid": {{ID: "abc", Address: "10.0.0.1:8300"}},
	} {
		if err := Recover(d, servers); err == nil {
			t.Errorf("%s: Recover(%v) = nil, want an error", name, servers)
		}
	}
	if err := Recover(t.TempDir(), []Server{{ID: id1, Address: "10.0.0.1:8300"}}); err == nil {
		t.Error("Recover on a directory that never held a server = nil, want an error")
	}
	if _, err := os.Stat(filepath.Join(d, "raft", "peers.json")); err == nil {
		t.Error("a refused recovery left a peers.json")
	}
}

func TestResetKeepsTheNodeIDAndTakesTheKeyring(t *testing.T) {
	d := dataDir(t)
	if err := Rekey(d, []string{"old"}); err != nil {
		t.Fatal(err)
	}
	if err := Reset(d, []string{"new", "older"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "raft")); !os.IsNotExist(err) {
		t.Errorf("raft/ survived the reset: %v", err)
	}
	if id, err := NodeID(d); err != nil || id != id1 {
		t.Errorf("node id after the reset = %q, %v", id, err)
	}
	keys, err := Keyring(d)
	if err != nil || !slices.Equal(keys, []string{"new", "older"}) {
		t.Errorf("keyring after the reset = %v, %v", keys, err)
	}
	if err := Reset(t.TempDir(), nil); err == nil {
		t.Error("Reset of a directory without a node-id = nil, want an error")
	}
	if keys, err := Keyring(t.TempDir()); keys != nil || err != nil {
		t.Errorf("Keyring without a keyring file = %v, %v; want nil, nil", keys, err)
	}
}
