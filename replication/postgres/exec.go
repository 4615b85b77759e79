package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osUser is whom PostgreSQL's programs run as: cfg.OSUser when understudy is
// root (initdb and postgres refuse to run as root), understudy's own user
// otherwise.
type osUser struct {
	uid, gid int
	home     string
	cred     *syscall.Credential // nil: run as ourselves
}

// lookupOSUser resolves name on every call rather than once: a user created
// after the daemon started (a package installed later) is picked up.
func lookupOSUser(name string) (osUser, error) {
	if os.Geteuid() != 0 {
		home, _ := os.UserHomeDir()
		return osUser{uid: os.Getuid(), gid: os.Getgid(), home: home}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return osUser{}, fmt.Errorf("look up OS user %q that runs postgres: %w; create it (apt-get install postgresql-15 does) or set postgres.os_user", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %q has uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return osUser{}, fmt.Errorf("OS user %q has gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return osUser{}, fmt.Errorf("postgres.os_user %q is root, which postgres refuses; set it to an unprivileged user such as postgres", name)
	}
	return osUser{uid: uid, gid: gid, home: u.HomeDir,
		// Empty Groups drops root's supplementary groups too.
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}, nil
}

// chown gives path to the user when we are root; otherwise what we create is
// already the user's.
func (u osUser) chown(path string) error {
	if u.cred == nil {
		return nil
	}
	if err := os.Lchown(path, u.uid, u.gid); err != nil {
		return fmt.Errorf("give %s to uid %d: %w", path, u.uid, err)
	}
	return nil
}

// command prepares one of PostgreSQL's programs from cfg.BinDir to run as u.
// It is exec'd directly with u's credentials rather than through su or
// runuser, so no PAM session or login shell gets in between. No Pdeathsig:
// the postmaster pg_ctl starts must outlive understudy, and pg_ctl puts it
// in a session of its own so our signals do not reach it either.
func (i *Instance) command(ctx context.Context, u osUser, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(i.cfg.BinDir, prog), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	// PG* variables of the daemon's environment must not redirect the tools
	// to another server; libpq looks for its files in HOME; LC_ALL=C keeps
	// the output we parse (pg_controldata, pg_rewind) in English.
	cmd.Env = []string{"HOME=" + u.home, "LC_ALL=C", "PATH=/usr/bin:/bin"}
	// The daemon's working directory may be one u cannot enter (/root).
	cmd.Dir = "/"
	// Bounds the wait for output pipes after the program exits, should a
	// child it left behind hold them.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs prog to completion and returns its combined output. The error
// carries the last lines of that output, which is where the tools say why.
func (i *Instance) run(ctx context.Context, u osUser, prog string, args ...string) (string, error) {
	cmd := i.command(ctx, u, prog, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w%s", prog, err, outputTail(string(out), tailLines))
	}
	return string(out), nil
}

// tailLines is how many lines of a tool's output an error carries.
const tailLines = 8

// outputTail is ` (output: "a" | "b")` of the last n non-empty lines of out,
// or "" when there are none.
func outputTail(out string, n int) string {
	lines := lastLines(out, n)
	if len(lines) == 0 {
		return ""
	}
	return " (output: " + strings.Join(lines, " | ") + ")"
}

// lastLines is the last n non-empty lines of s, split at \n or \r (progress
// reports end in \r on a terminal).
func lastLines(s string, n int) []string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	var lines []string
	for _, f := range fields {
		if f = strings.TrimSpace(f); f != "" {
			lines = append(lines, f)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// fileTail is the last n lines of the file at path, for errors that point at
// the server log; "" when it cannot be read.
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 16 << 10
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-window, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	lines := lastLines(string(buf), n)
	if len(lines) == 0 {
		return ""
	}
	return " (log: " + strings.Join(lines, " | ") + ")"
}

// timeoutSeconds is the time left before ctx's deadline in whole seconds, at
// least 1, or def when ctx has none: pg_ctl's -t wants a number.
func timeoutSeconds(ctx context.Context, def time.Duration) string {
	return strconv.Itoa(secondsLeft(ctx, def))
}

// secondsLeft is timeoutSeconds as a number.
func secondsLeft(ctx context.Context, def time.Duration) int {
	d := def
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return max(int(d/time.Second), 1)
}

// writeFileAtomic replaces path with data, owned by u: a temporary file in
// the same directory, synced, then renamed over path. A crash leaves the old
// file or the new one, never half of one, which matters for files the
// postmaster reads when it restarts by itself after a backend crash.
func writeFileAtomic(path string, data []byte, mode os.FileMode, u osUser) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = u.chown(f.Name()); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// processAlive says whether pid names a live process. Signal 0 answers for a
// zombie too, and a postmaster whose parent (init in a container, say) does
// not reap it stays one, so /proc's state settles it (Linux).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	// The state is the first field after the ")" closing the command name,
	// which may itself contain spaces and parentheses.
	j := bytes.LastIndexByte(stat, ')')
	if j < 0 || j+2 >= len(stat) {
		return true
	}
	return stat[j+2] != 'Z' && stat[j+2] != 'X'
}
