package lifecycle

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// undo collects what a step did so that a failure takes the node back to
// where it was, last step first. An undo step removes only what the run
// created: a directory it made, or the entries it added to one that was
// there (removeNew). What the operator had on the machine before, such as
// a mount point's lost+found, is never its to delete.
type undo struct {
	log   io.Writer
	steps []undoStep
}

type undoStep struct {
	what string
	do   func() error
}

func (u *undo) add(what string, do func() error) { u.steps = append(u.steps, undoStep{what, do}) }

// addRemoveNew registers the removal of what the run is about to create at
// path (removeNew); first runs before it, to stop what uses the files.
func (u *undo) addRemoveNew(path string, first func()) error {
	if path == "" {
		return nil // a file the configuration leaves out
	}
	what, rm, err := removeNew(path)
	if err != nil {
		return err
	}
	u.add(what, func() error {
		if first != nil {
			first()
		}
		return rm()
	})
	return nil
}

func (u *undo) run() {
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.do(); err != nil {
			fmt.Fprintf(u.log, "undo: %s: %v\n", s.what, err)
		}
	}
}

// removeNew looks at path before a step creates it or writes into it, and
// returns the undo of that step, which removes only what the step added:
//   - path missing: the outermost of its missing ancestors (or path), which
//     the step creates with everything below it;
//   - path a directory: the entries that are not in it now; it stays, and
//     so does what it holds (a mount point's lost+found, an earlier
//     attempt's files, which the operator may want to look at);
//   - anything else (a file where a directory goes, a dangling symlink):
//     nothing; the step fails on it by itself.
func removeNew(path string) (what string, do func() error, err error) {
	path = filepath.Clean(path)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, lerr := os.Lstat(path); lerr == nil {
			return "leave " + path, func() error { return nil }, nil // a dangling symlink: not ours
		}
		top := path
		for {
			parent := filepath.Dir(top)
			if parent == top {
				break
			}
			if _, err := os.Lstat(parent); err == nil {
				break
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", nil, fmt.Errorf("look at %s before writing there: %w", parent, err)
			}
			top = parent
		}
		return "remove " + top, func() error { return os.RemoveAll(top) }, nil
	case err != nil:
		return "", nil, fmt.Errorf("look at %s before writing there: %w", path, err)
	case !fi.IsDir():
		return "leave " + path, func() error { return nil }, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return "", nil, fmt.Errorf("look at %s before writing there: %w", path, err)
	}
	had := make(map[string]bool, len(entries))
	for _, e := range entries {
		had[e.Name()] = true
	}
	return "remove what this run added to " + path, func() error {
		now, err := os.ReadDir(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		var errs []error
		for _, e := range now {
			if !had[e.Name()] {
				errs = append(errs, os.RemoveAll(filepath.Join(path, e.Name())))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// ErrDataDirNotEmpty is returned by Start and Join for a PostgreSQL data
// directory that holds files but no PostgreSQL cluster.
var ErrDataDirNotEmpty = errors.New("postgres.data_dir is not empty and holds no PostgreSQL data directory")

// checkPostgresDataDir refuses, before anything is done, a data directory
// that initdb and pg_basebackup would refuse: one that holds files but no
// PG_VERSION, such as a mount point with only lost+found, or a
// distribution's /var/lib/postgresql/15 holding main/. A missing or empty
// directory, or a PostgreSQL data directory, passes.
func checkPostgresDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("postgres.data_dir %s: %w; point postgres.data_dir at a directory, or at a path that does not exist yet (it is created)", dir, err)
	case len(entries) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return nil
	}
	var names []string
	adopt := ""
	for _, e := range entries {
		names = append(names, e.Name())
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "PG_VERSION")); err == nil && e.IsDir() && adopt == "" {
			adopt = filepath.Join(dir, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	hint := ""
	if adopt != "" {
		hint = fmt.Sprintf("; or, to keep the database in %s, point postgres.data_dir at it (cluster start adopts it)", adopt)
	}
	return fmt.Errorf("%w: %s holds %s but no PG_VERSION; initdb and the clone need an empty directory, and understudy does not delete what it did not create: point postgres.data_dir at an empty subdirectory such as %s, or empty %s%s",
		ErrDataDirNotEmpty, dir, strings.Join(names, ", "), filepath.Join(dir, "data"), dir, hint)
}
