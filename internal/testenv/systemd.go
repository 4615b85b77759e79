package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SystemdHost is a host whose init is systemd, for tests of what understudy
// does on one (units written, enabled and started; a process systemd
// restarts; a reboot) on a machine whose PID 1 is not systemd, such as CI's.
//
// systemd runs as PID 1 of its own PID, mount and cgroup namespaces. It
// shares the test's network and files, but has its own /run (so its own
// /run/systemd/system: it knows it is the init), its own cgroup subtree
// (several hosts run side by side), and an /etc/systemd/system of the
// test's that outlives Reboot, as a disk does. Its unit path is that
// directory and a few empty targets plus journald, never the machine's own
// units: those would act on the whole machine (systemd-tmpfiles empties
// /tmp, systemd-sysctl and remount-fs change the kernel's settings).
//
// Commands run on the host through Command (nsenter): systemctl and
// journalctl talk to its systemd, and understudy finds systemd running.
type SystemdHost struct {
	Name string
	dir  string // the boot script, the units, etc/ (its /etc/systemd/system)
	cg   []string
	proc *Process // unshare, whose child is systemd
	pid  int      // systemd's PID as the test sees it
}

// systemdTargets are the targets units name in their dependencies, empty:
// what a unit needs of the machine (network, file systems) is there.
var systemdTargets = []string{
	"default", "sysinit", "basic", "sockets", "timers", "paths", "slices",
	"local-fs", "local-fs-pre", "remote-fs", "swap", "network", "network-pre",
	"network-online", "nss-lookup", "time-set", "time-sync", "multi-user",
	"shutdown", "final", "umount", "emergency", "rescue",
}

// BootSystemd boots a SystemdHost named name and waits until its systemd has
// started its default target. The host is powered off (every process in it
// killed) when the test ends.
func BootSystemd(t testing.TB, name string) *SystemdHost {
	t.Helper()
	return bootSystemd(t, name, "")
}

// BootSystemdOverlay boots a SystemdHost whose / is an overlay of the
// machine's: the machine's files are its lower layer, and what the host
// writes outside /tmp, /dev, /proc and /sys (packages installed with dpkg,
// users added, /etc, /usr, /var) goes to an upper layer of its own under
// the test's directory, which outlives Reboot as a disk does. A package
// installed there never touches the machine's own /. /tmp is the machine's,
// shared with the test as on every SystemdHost.
func BootSystemdOverlay(t testing.TB, name string) *SystemdHost {
	t.Helper()
	return bootSystemd(t, name, overlayRoot)
}

// overlayRoot makes the host's / an overlay of the machine's, then pivots
// into it, before the rest of boot.sh. The upper layer may lie on the
// lower's file system (under /tmp): the kernel accepts it, and the host
// never sees it, /tmp being bound over the overlay's.
const overlayRoot = `mkdir -p "$DIR/root" "$DIR/root-upper" "$DIR/root-work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$DIR/root-upper,workdir=$DIR/root-work" "$DIR/root"
for m in /dev /proc /sys /tmp; do mount --rbind "$m" "$DIR/root$m"; done
mkdir -p "$DIR/root/.oldroot"
cd "$DIR/root"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
`

func bootSystemd(t testing.TB, name, rootScript string) *SystemdHost {
	t.Helper()
	RequireIntegration(t)
	for _, bin := range []string{"/lib/systemd/systemd", "/lib/systemd/systemd-journald"} {
		if !isExecutable(bin) {
			t.Fatalf("no %s: install systemd (apt-get install -y systemd)", bin)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("a SystemdHost needs root (namespaces, mounts, cgroups)")
	}
	h := &SystemdHost{Name: name, dir: tempDir(t, "systemd-"+name)}
	units := filepath.Join(h.dir, "units")
	for _, d := range []string{units, filepath.Join(h.dir, "etc"),
		filepath.Join(units, "sockets.target.wants"), filepath.Join(units, "sysinit.target.wants")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tg := range systemdTargets {
		unit := fmt.Sprintf("[Unit]\nDescription=%s (testenv)\n", tg)
		if tg == "default" {
			unit += "Wants=multi-user.target\nAfter=multi-user.target\n"
		}
		if err := os.WriteFile(filepath.Join(units, tg+".target"), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// journald, so that a test reads a unit's output as an operator does.
	for _, u := range []struct{ name, wantedBy string }{
		{"systemd-journald.service", "sysinit.target"},
		{"systemd-journald.socket", "sockets.target"},
		{"systemd-journald-dev-log.socket", "sockets.target"},
	} {
		b, err := os.ReadFile(filepath.Join("/lib/systemd/system", u.name))
		if err != nil {
			t.Fatalf("%v: install systemd (apt-get install -y systemd)", err)
		}
		if err := os.WriteFile(filepath.Join(units, u.name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../"+u.name, filepath.Join(units, u.wantedBy+".wants", u.name)); err != nil {
			t.Fatal(err)
		}
	}
	// Its own cgroup in the two hierarchies systemd uses, which become the
	// roots of its cgroup namespace; removed once it is powered off. Only
	// the hybrid layout of CI's machines is known to work.
	if _, err := os.Stat("/sys/fs/cgroup/systemd/cgroup.procs"); err != nil {
		t.Fatalf("a SystemdHost needs the hybrid cgroup layout of CI's machines (a name=systemd hierarchy at /sys/fs/cgroup/systemd): %v", err)
	}
	suffix := filepath.Base(h.dir)
	for _, root := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		cg := filepath.Join(root, "understudy-test", suffix)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			t.Fatalf("cgroup for a SystemdHost: %v", err)
		}
		h.cg = append(h.cg, cg)
	}
	boot := "set -e\n" + rootScript + `mount -t tmpfs -o mode=755 run /run
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd,xattr cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
mkdir -p /etc/systemd/system
mount --bind "$DIR/etc" /etc/systemd/system
# The journal in /run only, without the kernel's messages, and none of the
# machine's journal files in sight.
if [ -d /var/log/journal ]; then mount -t tmpfs journal /var/log/journal; fi
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' > /run/systemd/journald.conf.d/testenv.conf
export container=understudy-testenv SYSTEMD_UNIT_PATH="$DIR/units:/etc/systemd/system"
exec /lib/systemd/systemd --system --unit=default.target
`
	if err := os.WriteFile(filepath.Join(h.dir, "boot.sh"), []byte(boot), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.removeCgroups(t) })
	h.boot(t)
	return h
}

// boot starts systemd and waits for its default target.
func (h *SystemdHost) boot(t testing.TB) {
	t.Helper()
	enter := ""
	for _, cg := range h.cg {
		enter += fmt.Sprintf("echo $$ > %s/cgroup.procs && ", cg)
	}
	cmd := exec.Command("sh", "-c", enter+`exec unshare --cgroup --pid --fork --kill-child --mount --mount-proc --propagation private sh "$DIR/boot.sh"`)
	cmd.Env = append(os.Environ(), "DIR="+h.dir)
	p, err := startProcess(t, "systemd "+h.Name, cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	h.proc, h.pid = p, 0
	// Registered after the Process's own cleanup, so it runs before it:
	// the journal is read and every process of the host killed while
	// systemd still runs.
	t.Cleanup(func() {
		if h.proc != p {
			return // rebooted since: this boot was powered off then
		}
		if t.Failed() && h.pid != 0 {
			t.Logf("last lines of the journal of %s as the test ended:\n%s", h.Name, h.Journal("", 150))
		}
		if err := h.powerOff(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	Eventually(t, 30*time.Second, func() error {
		if !p.running() {
			return fmt.Errorf("unshare exited: %s", p.status())
		}
		if h.pid == 0 {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID(), p.PID()))
			if err != nil || len(bytes.Fields(b)) == 0 {
				return fmt.Errorf("no child of unshare yet (%v)", err)
			}
			h.pid, _ = strconv.Atoi(string(bytes.Fields(b)[0]))
		}
		out, _ := h.Command(context.Background(), "systemctl", "is-system-running").CombinedOutput()
		switch state := strings.TrimSpace(string(out)); state {
		case "running":
			return nil
		case "degraded":
			failed, _ := h.Command(context.Background(), "systemctl", "--failed", "--no-legend").CombinedOutput()
			return fmt.Errorf("systemd degraded, failed units: %s", failed)
		default:
			return fmt.Errorf("systemd is %q", state)
		}
	})
	t.Logf("[systemd %s] booted, pid %d", h.Name, h.pid)
}

// Command runs name with args on the host: in its mount, PID and cgroup
// namespaces, with the test's environment.
func (h *SystemdHost) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--target", strconv.Itoa(h.pid), "--mount", "--pid", "--cgroup", "--", name}, args...)
	return exec.CommandContext(ctx, "nsenter", argv...)
}

// UnitDir is the host's /etc/systemd/system, as the test reaches it.
func (h *SystemdHost) UnitDir() string { return filepath.Join(h.dir, "etc") }

// RunTest runs the test that calls it again, as a process on the host,
// with the environment variable OnSystemdHost set: a test of code that
// talks to systemd itself (D-Bus on systemd's private socket, which serves
// only processes of its own namespaces) branches on InsideSystemdHost.
func (h *SystemdHost) RunTest(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := h.Command(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), OnSystemdHost+"="+h.Name)
	out, err := cmd.CombinedOutput()
	t.Logf("%s on %s:\n%s", t.Name(), h.Name, out)
	if err != nil {
		t.Fatalf("%s on %s: %v", t.Name(), h.Name, err)
	}
}

// OnSystemdHost is set in the environment of a test that RunTest runs on a
// SystemdHost.
const OnSystemdHost = "UNDERSTUDY_TEST_ON_SYSTEMD_HOST"

// InsideSystemdHost reports whether this test binary is the one RunTest
// started on a SystemdHost.
func InsideSystemdHost() bool { return os.Getenv(OnSystemdHost) != "" }

// Run runs a command on the host, fails the test when it fails, and returns
// its output.
func (h *SystemdHost) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("on %s: %s %s: %v\n%s", h.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Property is a property of a unit as `systemctl show` gives it ("" when
// systemctl fails, the error then in the second value).
func (h *SystemdHost) Property(unit, prop string) (string, error) {
	out, err := h.Command(context.Background(), "systemctl", "show", "--value", "-p", prop, unit).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("systemctl show -p %s %s: %v: %s", prop, unit, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// MainPID is the PID of a unit's main process as the test sees it (systemd
// gives it as seen in its own PID namespace): 0 when the unit has none, or
// while systemd still names one that has just died.
func (h *SystemdHost) MainPID(t testing.TB, unit string) int {
	t.Helper()
	v, err := h.Property(unit, "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := strconv.Atoi(v)
	if inner == 0 {
		return 0
	}
	pid, err := h.outerPID(inner)
	if err != nil {
		return 0
	}
	return pid
}

// outerPID finds the test's PID of the host's process inner, from the
// NSpid line of each of the host's processes.
func (h *SystemdHost) outerPID(inner int) (int, error) {
	for _, pid := range h.processes() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				ids := strings.Fields(f)
				if len(ids) > 1 && ids[len(ids)-1] == strconv.Itoa(inner) {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no process %d in the PID namespace of %s", inner, h.Name)
}

// Journal is the last lines of a unit's journal ("" for the whole
// journal), for a failure message.
func (h *SystemdHost) Journal(unit string, lines int) string {
	args := []string{"--no-pager", "-o", "short-precise", "-n", strconv.Itoa(lines)}
	if unit != "" {
		args = append(args, "-u", unit)
	}
	out, err := h.Command(context.Background(), "journalctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("journalctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Reboot powers the host off (every process in it is killed at once, as
// when the power goes) and boots it again with the same
// /etc/systemd/system.
func (h *SystemdHost) Reboot(t testing.TB) {
	t.Helper()
	if err := h.powerOff(); err != nil {
		t.Fatal(err)
	}
	h.boot(t)
}

// PowerOff kills every process of the host at once, as when the power
// goes, and leaves it off; Reboot boots it again.
func (h *SystemdHost) PowerOff(t testing.TB) {
	t.Helper()
	if err := h.powerOff(); err != nil {
		t.Fatal(err)
	}
}

// Root is the host's / as the test reaches it while the host runs (its
// systemd's root through /proc): on an overlay host, where the files the
// host wrote outside /tmp are, such as a node's certificates under
// /var/lib/understudy.
func (h *SystemdHost) Root() string { return fmt.Sprintf("/proc/%d/root", h.pid) }

// processes are the PIDs, as the test sees them, of every process in the
// host's PID namespace, systemd first.
func (h *SystemdHost) processes() []int {
	if h.pid == 0 {
		return nil
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.pid))
	if err != nil {
		return nil
	}
	pids := []int{h.pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == h.pid {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && l == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// powerOff kills systemd through unshare (--kill-child), which kills every
// process of the namespace, and waits until none is left but zombies.
func (h *SystemdHost) powerOff() error {
	pids := h.processes()
	if err := h.proc.Kill(); err != nil {
		return fmt.Errorf("power off %s: %w", h.Name, err)
	}
	err := WaitFor(context.Background(), 30*time.Second, func() error {
		for _, pid := range pids {
			if pidLive(pid) {
				return fmt.Errorf("process %d of %s still alive", pid, h.Name)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("power off %s: %w", h.Name, err)
	}
	h.pid = 0
	return nil
}

// pidLive reports whether pid is a live process: not gone, not a zombie
// (this machine's PID 1 may not reap the orphans of a killed namespace).
// services.PIDAlive says the same, but services' own tests import testenv.
func pidLive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// removeCgroups removes the host's cgroups once it is powered off.
func (h *SystemdHost) removeCgroups(t testing.TB) {
	// A cgroup is removed once empty, its children first; the kernel may
	// take a moment to empty them after the kill.
	for _, cg := range h.cg {
		err := WaitFor(context.Background(), 10*time.Second, func() error { return removeCgroup(cg) })
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func removeCgroup(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", dir, err)
	}
	return nil
}
