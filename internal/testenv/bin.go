package testenv

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// consulBinary finds the pinned Consul agent: $UNDERSTUDY_CONSUL_BIN, else
// bin/consul in the module root (what `make deps` builds), else PATH.
func consulBinary(t testing.TB) string {
	t.Helper()
	const install = "make deps (builds bin/consul from packaging/consul)"
	if p := os.Getenv("UNDERSTUDY_CONSUL_BIN"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("UNDERSTUDY_CONSUL_BIN=%s is not an executable file; unset it or run: %s", p, install)
		}
		return p
	}
	if root, ok := moduleRoot(); ok {
		if p := filepath.Join(root, "bin", "consul"); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	t.Fatalf("consul agent not found ($UNDERSTUDY_CONSUL_BIN, bin/consul, PATH); install it with: %s", install)
	return ""
}

// SyncthingBinary finds the pinned Syncthing: $UNDERSTUDY_SYNCTHING_BIN,
// else bin/syncthing in the module root (what `make deps` builds), else PATH.
func SyncthingBinary(t testing.TB) string {
	t.Helper()
	const install = "make deps (builds bin/syncthing from packaging/syncthing)"
	if p := os.Getenv("UNDERSTUDY_SYNCTHING_BIN"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("UNDERSTUDY_SYNCTHING_BIN=%s is not an executable file; unset it or run: %s", p, install)
		}
		return p
	}
	if root, ok := moduleRoot(); ok {
		if p := filepath.Join(root, "bin", "syncthing"); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath("syncthing"); err == nil {
		return p
	}
	t.Fatalf("syncthing not found ($UNDERSTUDY_SYNCTHING_BIN, bin/syncthing, PATH); install it with: %s", install)
	return ""
}

// postgresBinDir is where PostgreSQL 15's programs are, as Debian installs
// them; $UNDERSTUDY_PG_BIN_DIR overrides it.
func postgresBinDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("UNDERSTUDY_PG_BIN_DIR")
	if dir == "" {
		dir = "/usr/lib/postgresql/15/bin"
	}
	for _, prog := range []string{"initdb", "postgres", "pg_basebackup"} {
		if !isExecutable(filepath.Join(dir, prog)) {
			t.Fatalf("PostgreSQL 15 not found: no %s in %s; install it with: apt-get install -y postgresql-15", prog, dir)
		}
	}
	return dir
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// moduleRoot walks up from the working directory (a test runs in its
// package's directory) to the go.mod of understudy, passing over the
// modules of its own under packaging/ (module .../packaging/consul).
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && !isPackagingModule(string(mod)) {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isPackagingModule(gomod string) bool {
	for _, line := range strings.Split(gomod, "\n") {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Contains(path, "/packaging/")
		}
	}
	return false
}

// pgUser is whom PostgreSQL's programs run as.
type pgUser struct {
	uid, gid int
	home     string
	cred     *syscall.Credential // nil: run as ourselves
}

var (
	pgUserOnce sync.Once
	pgUserVal  pgUser
	pgUserErr  string
)

// postgresUser returns the postgres OS user when the test runs as root
// (initdb and postgres refuse to run as root), and the current user
// otherwise.
func postgresUser(t testing.TB) pgUser {
	t.Helper()
	pgUserOnce.Do(func() {
		if os.Geteuid() != 0 {
			pgUserVal = pgUser{uid: os.Getuid(), gid: os.Getgid(), home: os.Getenv("HOME")}
			return
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			pgUserErr = "tests run as root and PostgreSQL refuses root, but there is no OS user postgres (" +
				err.Error() + "); install it with: apt-get install -y postgresql-15"
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pgUserVal = pgUser{uid: uid, gid: gid, home: u.HomeDir,
			// Empty Groups drops root's supplementary groups too.
			cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
	})
	if pgUserErr != "" {
		t.Fatal(pgUserErr)
	}
	return pgUserVal
}

// command prepares a PostgreSQL program to run as this user. The program is
// exec'd directly with the user's credentials rather than through su or
// runuser, so the PID the test holds is the program's own: killing it kills
// the postmaster, not a wrapper.
func (u pgUser) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	// PG* variables of the caller's shell must not redirect the tools, and
	// libpq looks for .pgpass in the home of the user it runs as.
	cmd.Env = []string{"HOME=" + u.home, "LC_ALL=C", "PATH=/usr/bin:/bin"}
	return cmd
}

// own gives path to the user, when the test is root and the user is not.
func (u pgUser) own(t testing.TB, path string) {
	t.Helper()
	if u.cred == nil {
		return
	}
	if err := os.Chown(path, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
}

// ConsulBinary is the pinned Consul agent the tests run (see consulBinary).
func ConsulBinary(t testing.TB) string {
	t.Helper()
	return consulBinary(t)
}

// HAProxyBinary finds HAProxy: $UNDERSTUDY_HAPROXY_BIN, else PATH, else
// /usr/sbin/haproxy (Debian's, which a user's PATH may lack).
func HAProxyBinary(t testing.TB) string {
	t.Helper()
	const install = "apt-get install -y haproxy (make deps does)"
	if p := os.Getenv("UNDERSTUDY_HAPROXY_BIN"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("UNDERSTUDY_HAPROXY_BIN=%s is not an executable file; unset it or run: %s", p, install)
		}
		return p
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if p := "/usr/sbin/haproxy"; isExecutable(p) {
		return p
	}
	t.Fatalf("haproxy not found ($UNDERSTUDY_HAPROXY_BIN, PATH, /usr/sbin); install it with: %s", install)
	return ""
}
