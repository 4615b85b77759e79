package files

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The GUI password's hash stays with a prepared home (Prepare rewrites
// nothing), and is replaced when config.xml names another user or holds
// something Syncthing would not take for a bcrypt hash (a password in the
// clear, which an operator might have typed).
func TestPrepareGUIPassword(t *testing.T) {
	s := testSetup(t)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	first := readConfig(t, s.Home).GUI.Password
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	if got := readConfig(t, s.Home).GUI.Password; got != first {
		t.Errorf("second Prepare changed the GUI password hash %q to %q", first, got)
	}
	path := filepath.Join(s.Home, configName)
	for _, tc := range []struct {
		name     string
		from, to func(hash string) string
	}{
		{"another user", fixed("<user>" + guiUser + "</user>"), fixed("<user>admin</user>")},
		{"a password in the clear", func(h string) string { return h }, fixed("hunter2")},
		{"no password", func(h string) string { return "<password>" + h + "</password>" }, fixed("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edited := strings.Replace(string(data), tc.from(first), tc.to(first), 1)
			if edited == string(data) {
				t.Fatalf("%q not in config.xml:\n%s", tc.from(first), data)
			}
			if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Prepare(s); err != nil {
				t.Fatal(err)
			}
			g := readConfig(t, s.Home).GUI
			if g.User != guiUser || !bcryptHash.MatchString(g.Password) || g.Password == first {
				t.Errorf("after Prepare: user %q password %q; want %q and a new bcrypt hash", g.User, g.Password, guiUser)
			}
			first = g.Password
		})
	}
	// Only the hash is written: no file of the home but config.xml
	// mentions the GUI user's password.
	entries, err := os.ReadDir(s.Home)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(s.Home, e.Name()))
		if e.Name() != configName && strings.Contains(string(data), first) {
			t.Errorf("%s holds the GUI password hash", e.Name())
		}
	}
}

func fixed(s string) func(string) string { return func(string) string { return s } }
