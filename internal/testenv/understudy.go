package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Understudy builds cmd/understudy once per test binary and returns its
// path: tests of the daemons as processes (signals, exit codes, SIGKILL of a
// whole node) run the real binary.
func Understudy(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, ok := moduleRoot()
		if !ok {
			buildErr = fmt.Errorf("build understudy: cannot find the module root from the working directory")
			return
		}
		dir, err := os.MkdirTemp("", "understudy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "understudy")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/understudy")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/understudy: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
