package lifecycle

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree lists every path under dir, relative, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func mkfile(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUndoRemovesOnlyWhatTheRunCreated: the undo of a step that writes at
// a path takes away what the step made there and nothing that was there
// before it.
func TestUndoRemovesOnlyWhatTheRunCreated(t *testing.T) {
	tests := []struct {
		name   string
		before []string // files (or dirs, ending in /) under root before the run
		target string   // what the step writes into, under root
		writes []string // what the step makes, under target
		want   []string // what is under root after the undo
	}{
		{"a missing directory goes entirely", nil, "pg", []string{"PG_VERSION", "base/1"}, nil},
		{"missing parents go with it", []string{"keep"}, "srv/pg/data", []string{"PG_VERSION"}, []string{"keep"}},
		{"an empty directory stays, emptied", []string{"pg/"}, "pg", []string{"PG_VERSION", "base/1"}, []string{"pg"}},
		{"a mount point keeps its lost+found", []string{"pg/lost+found/"}, "pg", []string{"PG_VERSION"}, []string{"pg", "pg/lost+found"}},
		{"an earlier attempt's files stay", []string{"tls/ca.pem"}, "tls", []string{"ca.pem", "node.pem"}, []string{"tls", "tls/ca.pem"}},
		{"a file where the directory goes stays", []string{"pg"}, "pg", nil, []string{"pg"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, p := range tc.before {
				if strings.HasSuffix(p, "/") {
					if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
						t.Fatal(err)
					}
				} else {
					mkfile(t, filepath.Join(root, p))
				}
			}
			u := &undo{log: io.Discard}
			if err := u.addRemoveNew(filepath.Join(root, tc.target), nil); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.writes {
				mkfile(t, filepath.Join(root, tc.target, p))
			}
			u.run()
			if got := tree(t, root); !slices.Equal(got, tc.want) {
				t.Fatalf("after the undo: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckPostgresDataDir(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, files ...string) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "/") {
				if err := os.MkdirAll(filepath.Join(dir, f), 0o755); err != nil {
					t.Fatal(err)
				}
			} else {
				mkfile(t, filepath.Join(dir, f))
			}
		}
		return dir
	}
	tests := []struct {
		name string
		dir  string
		want []string // in the error; nil: no error
	}{
		{"missing", filepath.Join(root, "nothing"), nil},
		{"empty", mk("empty"), nil},
		{"a database", mk("db", "PG_VERSION", "base/"), nil},
		{"a mount point", mk("mnt", "lost+found/"), []string{filepath.Join(root, "mnt"), "lost+found", filepath.Join(root, "mnt", "data"), "empty " + filepath.Join(root, "mnt")}},
		{"a distribution's version directory", mk("15", "main/PG_VERSION"), []string{"point postgres.data_dir at it", filepath.Join(root, "15", "main")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPostgresDataDir(tc.dir)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrDataDirNotEmpty) {
				t.Fatalf("got %v, want ErrDataDirNotEmpty", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
