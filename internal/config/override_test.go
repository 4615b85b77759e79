package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeOverrideCheck(t *testing.T) {
	tests := []struct {
		o    NodeOverride
		says string // "" when valid
	}{
		{NodeOverride{}, ""},
		{NodeOverride{Name: "mgr-2", Address: "10.0.0.6"}, ""},
		{NodeOverride{Address: "fd00::6"}, ""},
		{NodeOverride{Name: "Mgr_2"}, `--cluster-node-name "Mgr_2" is not a valid node name; use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-', like "mgr-2"`},
		{NodeOverride{Address: "mgr-2.example.com"}, `--cluster-host-ip "mgr-2.example.com" is not an IP address; write the IP address the other nodes reach this one at, like 10.0.0.5 (host names are not taken)`},
		{NodeOverride{Address: "10.0.0.6:8008"}, `--cluster-host-ip "10.0.0.6:8008" is not an IP address; write it without the port: 10.0.0.6`},
	}
	for _, tc := range tests {
		err := tc.o.Check()
		if (err == nil) != (tc.says == "") || (err != nil && err.Error() != tc.says) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.says)
		}
	}
}

// TestWriteNodeOverride: the flags land in the node block, the file's
// comments, other fields and mode stay, and a file that would not validate
// is left alone.
func TestWriteNodeOverride(t *testing.T) {
	path := filepath.Join(t.TempDir(), "understudy.hcl")
	src := `# the operator's notes
cluster { name = "prod" }
node {
  name    = "mgr-1" # was the image's
  address = "192.0.2.1"
  priority = 50
}
`
	if err := os.WriteFile(path, []byte(src), 0o640); err != nil {
		t.Fatal(err)
	}
	changed, err := WriteNodeOverride(path, NodeOverride{Name: "mgr-2", Address: "10.0.0.6"})
	if err != nil || !changed {
		t.Fatalf("WriteNodeOverride = %v, %v", changed, err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node.Name != "mgr-2" || c.Node.Address != "10.0.0.6" || c.Node.Priority != 50 || c.Postgres.Host != "10.0.0.6" {
		t.Fatalf("loaded node %+v, postgres.host %s; want mgr-2 at 10.0.0.6, priority 50, postgres.host following", c.Node, c.Postgres.Host)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "# the operator's notes") || !strings.Contains(string(b), "# was the image's") {
		t.Fatalf("comments lost:\n%s", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	// The same flags again: nothing to write.
	if changed, err := WriteNodeOverride(path, NodeOverride{Name: "mgr-2"}); err != nil || changed {
		t.Fatalf("same name again: %v, %v; want no change", changed, err)
	}
	// A file without a node block gets one.
	bare := filepath.Join(t.TempDir(), "understudy.hcl")
	if err := os.WriteFile(bare, []byte(`cluster { name = "prod" }`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteNodeOverride(bare, NodeOverride{Name: "mgr-3", Address: "10.0.0.7"}); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(bare); err != nil || c.Node.Name != "mgr-3" {
		t.Fatalf("file without a node block: %v %+v", err, c)
	}
	// Invalid flags change nothing.
	before, _ := os.ReadFile(path)
	if _, err := WriteNodeOverride(path, NodeOverride{Name: "-x"}); err == nil {
		t.Fatal("an invalid name was written")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("file changed by a refused override:\n%s", after)
	}
}
