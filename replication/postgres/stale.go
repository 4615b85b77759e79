package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/pgshm"
)

// staleWait bounds the wait for a dead postmaster's children to let go of
// its shared memory: they notice their parent's death within about a second.
const staleWait = 10 * time.Second

// clearStalePidFile removes the postmaster.pid of a postmaster that is not
// running any more, once no process is attached to its shared memory.
//
// PostgreSQL judges its lock file with kill(pid, 0), which succeeds for a
// zombie; and a postmaster that pg_ctl started is orphaned and reaped by
// init, which in a container may never do it. Then pg_ctl start and
// pg_rewind's single-user crash recovery refuse to run ("Is another
// postmaster running?") although Running says no. Removing the file is safe
// only once no backend of the old postmaster still uses the shared memory,
// which the file also names: that check is what PostgreSQL would have done
// with it.
func (i *Instance) clearStalePidFile(ctx context.Context) error {
	path := filepath.Join(i.dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if _, running, err := i.Running(ctx); err != nil || running {
		return err // running: the caller refuses; not ours to remove
	}
	if shmid := pgshm.SegmentOf(string(b)); shmid != "" {
		deadline := time.Now().Add(staleWait)
		for {
			n, err := pgshm.Attached(shmid)
			if err != nil {
				return fmt.Errorf("read /proc/sysvipc/shm: %w", err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d processes of the dead postmaster of %s still use its shared memory %s after %v; stop them (pgrep -u postgres) before starting postgres again",
					n, i.dataDir, shmid, staleWait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	i.log.Info("removed the lock file of a postmaster that is gone", "path", path)
	return nil
}
