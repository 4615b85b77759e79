// Package jsonfile keeps small JSON state files that another process (or
// another run) reads: a node's identity, the consul-watcher's partition
// view, a planned restart's window, the dev cluster's state. A file is
// replaced by a rename, so a reader sees the old content or the new, never
// half of it. There is no fsync: each of these is rewritten or expires on
// its own after a crash of the machine.
package jsonfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Write replaces path with v as indented JSON (0644).
func Write(path string, v any) error { return WriteMode(path, v, 0o644) }

// WriteMode is Write with the file's mode: 0600 for a secret.
func WriteMode(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // WriteFile keeps the mode of a file that exists
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Read decodes path into v; found is false, with no error, when there is
// no such file.
func Read(path string, v any) (found bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("read %s: %w", path, err)
	}
	return true, nil
}
