// Package deb holds the tests of the Debian package that make deb builds
// (packaging/deb/build.sh, with dpkg-deb).
package deb

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/config"
)

// deb is the package to test: $UNDERSTUDY_DEB, which make deb-test sets
// after building it.
func deb(t *testing.T) string {
	t.Helper()
	p := os.Getenv("UNDERSTUDY_DEB")
	if p == "" {
		t.Skip("needs a built package: make deb-test builds it and runs this test")
	}
	return p
}

func dpkgDeb(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebControl: the fields apt and dpkg act on, and the file name make
// deb promises (understudy_<version>_amd64.deb).
func TestDebControl(t *testing.T) {
	p := deb(t)
	field := func(name string) string { return strings.TrimSpace(dpkgDeb(t, "-f", p, name)) }
	if got := field("Package"); got != "understudy" {
		t.Errorf("Package: %q", got)
	}
	if got := field("Architecture"); got != "amd64" {
		t.Errorf("Architecture: %q", got)
	}
	if want := "understudy_" + field("Version") + "_amd64.deb"; filepath.Base(p) != want {
		t.Errorf("file %s, want %s", filepath.Base(p), want)
	}
	depends := field("Depends")
	for _, d := range []string{"postgresql-15 | postgresql", "postgresql-client-15 | postgresql-client", "adduser"} {
		if !strings.Contains(depends, d) {
			t.Errorf("Depends: %q lacks %q", depends, d)
		}
	}
	conffiles := dpkgDeb(t, "-I", p, "conffiles")
	for _, c := range []string{"/etc/understudy/understudy.hcl", "/etc/logrotate.d/understudy"} {
		if !strings.Contains(conffiles, c+"\n") {
			t.Errorf("conffiles lacks %s:\n%s", c, conffiles)
		}
	}
	// The units are enabled by cluster start and join, never by the package.
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if script := dpkgDeb(t, "-I", p, s); strings.Contains(script, "systemctl enable") || strings.Contains(script, "deb-systemd-helper enable") {
			t.Errorf("%s enables a unit:\n%s", s, script)
		}
	}
}

// TestDebFiles: what the package installs, every file root's, every unit
// of packaging/systemd among it, and nothing enabled.
func TestDebFiles(t *testing.T) {
	p := deb(t)
	files := map[string]string{} // path -> owner
	for _, line := range strings.Split(strings.TrimSpace(dpkgDeb(t, "-c", p)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c line %q", line)
		}
		files[strings.TrimPrefix(f[5], ".")] = f[1]
	}
	want := []string{
		"/usr/bin/understudy",
		"/usr/lib/understudy/bin/consul",
		"/usr/lib/understudy/bin/syncthing",
		"/etc/understudy/understudy.hcl",
		"/etc/logrotate.d/understudy",
		"/usr/share/bash-completion/completions/understudy",
		"/usr/share/zsh/vendor-completions/_understudy",
		"/usr/share/man/man1/understudy.1.gz",
		"/usr/share/man/man1/understudy-cluster-start.1.gz",
		"/usr/share/man/man1/understudy-cluster-join.1.gz",
		"/usr/share/doc/understudy/copyright",
		"/usr/share/doc/understudy/changelog.Debian.gz",
	}
	units, err := filepath.Glob("../systemd/*.service")
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in packaging/systemd: %v", err)
	}
	for _, u := range units {
		want = append(want, "/lib/systemd/system/"+filepath.Base(u))
	}
	for _, w := range want {
		if _, ok := files[w]; !ok {
			t.Errorf("the package lacks %s", w)
		}
	}
	for f, owner := range files {
		if owner != "root/root" {
			t.Errorf("%s is %s's, want root/root", f, owner)
		}
		if strings.Contains(f, ".wants/") || strings.HasPrefix(f, "/etc/systemd/") {
			t.Errorf("the package enables a unit: %s", f)
		}
	}
}

// TestExampleConfigurationParses: the example conffile, its settings
// uncommented, is a configuration understudy accepts (but for the
// mirrored directory, which must exist).
func TestExampleConfigurationParses(t *testing.T) {
	b, err := os.ReadFile("understudy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^# (\s*[a-z_]+( "[^"]*")? \{|\s+[a-z_]+\s+= .*|\})$`)
	var lines []string
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if setting.MatchString(l) {
			l = strings.TrimPrefix(l, "# ")
			n++
		}
		lines = append(lines, l)
	}
	if n < 10 {
		t.Fatalf("found %d settings to uncomment in the example", n)
	}
	shared := t.TempDir()
	hcl := strings.ReplaceAll(strings.Join(lines, "\n"), `"/srv/app/uploads"`, `"`+shared+`"`)
	path := filepath.Join(t.TempDir(), "understudy.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatalf("the example, uncommented:\n%s\n%v", hcl, err)
	}
}
