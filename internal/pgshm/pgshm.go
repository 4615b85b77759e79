// Package pgshm tells whether processes still hold a PostgreSQL
// postmaster's System V shared memory: a postmaster's children stay
// attached to it until they exit, and a new postmaster on the same data
// directory must not start before then. Both understudy (removing the lock
// file of a postmaster that is gone) and its tests (waiting for a stopped
// server to be gone whole) ask it.
package pgshm

import (
	"os"
	"strconv"
	"strings"
)

// SegmentOf reads the shared memory segment's ID from the text of a
// postmaster.pid, whose seventh line is "<key> <shmid>"; "" when it names
// none.
func SegmentOf(pidFile string) string {
	lines := strings.Split(pidFile, "\n")
	if len(lines) < 7 {
		return ""
	}
	f := strings.Fields(lines[6])
	if len(f) != 2 {
		return ""
	}
	if _, err := strconv.Atoi(f[1]); err != nil {
		return ""
	}
	return f[1]
}

// Attached is the number of processes attached to System V segment shmid,
// from /proc/sysvipc/shm (columns: key shmid perms size cpid lpid nattch);
// 0 when the segment is gone.
func Attached(shmid string) (int, error) {
	table, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 7 && f[1] == shmid {
			return strconv.Atoi(f[6])
		}
	}
	return 0, nil
}
