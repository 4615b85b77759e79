package jsonfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteThenRead: what Write wrote, Read reads; a missing file is not
// found and no error; a broken one is found, with an error naming it; no
// temporary file is left.
func TestWriteThenRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	type state struct{ Name string }
	var got state
	if found, err := Read(path, &got); found || err != nil {
		t.Fatalf("missing file: found %v, err %v", found, err)
	}
	if err := Write(path, state{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	if found, err := Read(path, &got); !found || err != nil || got.Name != "n1" {
		t.Fatalf("after Write: %+v, found %v, err %v", got, found, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("left %v", left)
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if found, err := Read(path, &got); !found || err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("broken file: found %v, err %v; want found and an error naming it", found, err)
	}
}
