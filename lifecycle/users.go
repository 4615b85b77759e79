package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// ConsulUser is the user the Consul agent's systemd unit runs as
// (packaging/systemd/understudy-consul.service says User=): cluster start
// and join create it when it is missing (the package's postinst does too)
// and give it the agent's directory, node.data_dir/consul. Supervised, the
// agent runs as whoever ran the command.
const ConsulUser = "understudy-consul"

// SyncthingUser is the user Syncthing's systemd unit runs as
// (packaging/systemd/understudy-syncthing.service), made and given the
// Syncthing home the same way. Its capabilities over files (the unit's
// AmbientCapabilities=) let it reach the mirrored directories, whoever
// owns them.
const SyncthingUser = "understudy-syncthing"

// ensureSystemUser is the uid and gid of the system user name, created
// with a group of its own, no login shell and no home when missing (as
// Debian's adduser --system --group does).
func ensureSystemUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, aerr := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", "understudy "+name, name).CombinedOutput()
		// Another command may have made it meanwhile: look again either way.
		if u, err = user.Lookup(name); err != nil {
			return 0, 0, fmt.Errorf("create the system user %s (useradd: %v %s): %w; create it by hand: useradd --system --user-group --shell /usr/sbin/nologin %s", name, aerr, out, err, name)
		}
	} else if err != nil {
		return 0, 0, fmt.Errorf("look up the user %s: %w", name, err)
	}
	if uid, err = strconv.Atoi(u.Uid); err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	return uid, gid, err
}

// giveTo makes dir and everything under it uid's and gid's, after checking
// that uid can reach dir at all: a directory above it that others may not
// enter (a data_dir made 0700) would stop the process at its first open.
func giveTo(dir, name string, uid, gid int) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (st != nil && ((int(st.Uid) == uid && mode&0o100 != 0) || (int(st.Gid) == gid && mode&0o010 != 0)))
		if !ok {
			return fmt.Errorf("%s runs as the user %s, which may not enter %s (mode %v) on the way to %s: chmod o+x %s, or put node.data_dir where it can", filepath.Base(dir), name, d, mode, dir, d)
		}
		if d == "/" {
			break
		}
	}
	return chownTree(dir, uid, gid)
}

// chownTree makes dir and everything under it uid's and gid's.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}
