package files

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const syncthingModule = "github.com/syncthing/syncthing"

// The device ID understudy computes (lib/protocol, from the main module) and
// the one the Syncthing binary computes (built from packaging/syncthing)
// must come from the same Syncthing, and the config.xml format Prepare
// writes is that version's.
func TestSyncthingVersionsAgree(t *testing.T) {
	root := filepath.Join("..", "..")
	main := requiredVersion(t, filepath.Join(root, "go.mod"))
	packaging := requiredVersion(t, filepath.Join(root, "packaging", "syncthing", "go.mod"))
	if main != packaging {
		t.Fatalf("go.mod requires %s %s, packaging/syncthing/go.mod %s: make them the same (and configVersion that version's lib/config.CurrentVersion)",
			syncthingModule, main, packaging)
	}
}

// requiredVersion returns the version of syncthingModule that the go.mod at
// path requires, failing on a replace of it (which would make the versions
// say nothing).
func requiredVersion(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	version, block := "", ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(strings.SplitN(line, "//", 2)[0])
		fields := strings.Fields(line)
		switch {
		case line == ")":
			block = ""
			continue
		case strings.HasSuffix(line, "(") && len(fields) == 2:
			block = fields[0]
			continue
		}
		kind := block
		if kind == "" && len(fields) > 0 {
			kind, fields = fields[0], fields[1:]
		}
		if len(fields) < 2 || fields[0] != syncthingModule {
			continue
		}
		switch kind {
		case "require":
			version = fields[1]
		case "replace":
			t.Fatalf("%s replaces %s: %s", path, syncthingModule, line)
		}
	}
	if version == "" {
		t.Fatalf("%s does not require %s", path, syncthingModule)
	}
	return version
}
