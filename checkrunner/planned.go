package checkrunner

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/jsonfile"
)

// A PostgreSQL restarted on purpose (understudy cluster restart: a
// standby's, or the active's in place when a parameter is lowered) is down
// for a moment. Reported as it is, critical, its checks would end the
// node's Consul session: a standby would drop out of the candidates and
// come back a check interval later with a new session, and a switchover
// that chose it in between (cluster restart --all moves the active role to
// a standby it has just restarted) would find it gone and end in an
// election instead (seen in CI); the active would lose its lock. Patroni
// too keeps a restarting member in its place.
//
// So the handler-runner, which does the restart, writes when it began and
// when PostgreSQL answered again to a file in node.data_dir, and the
// check-runner reports a postgres probe that failed within that window as a
// warning that says so. Nothing else changes: the node's status says
// PostgreSQL is not running, so no election chooses it meanwhile, and a
// restart that fails, or a handler-runner that dies during one, ends the
// window (Until bounds it) and the next round is critical again. The
// window is local and both daemons read the same clock.

// PlannedRestart is one window in which understudy itself stopped and
// started this node's PostgreSQL.
type PlannedRestart struct {
	By    string    `json:"by,omitempty"`
	Began time.Time `json:"began"`
	// Ended is when PostgreSQL answered again (or the restart failed);
	// zero while it is under way.
	Ended time.Time `json:"ended,omitzero"`
	// Until bounds a window whose end was never written.
	Until time.Time `json:"until"`
}

// PlannedRestartFile is where a node's handler-runner writes the window.
func PlannedRestartFile(dataDir string) string {
	return filepath.Join(dataDir, "postgres-restart.json")
}

// BeginPlannedRestart records, before PostgreSQL is stopped, that a restart
// by `by` begins now and ends within bound.
func BeginPlannedRestart(path, by string, now time.Time, bound time.Duration) error {
	return writePlanned(path, PlannedRestart{By: by, Began: now, Until: now.Add(bound)})
}

// EndPlannedRestart records that the restart begun last ended now.
func EndPlannedRestart(path string, now time.Time) error {
	p, ok, err := readPlannedRestart(path)
	if err != nil || !ok {
		return err
	}
	p.Ended = now
	return writePlanned(path, p)
}

func writePlanned(path string, p PlannedRestart) error {
	if err := jsonfile.Write(path, p); err != nil {
		return fmt.Errorf("the planned restart window: %w", err)
	}
	return nil
}

func readPlannedRestart(path string) (PlannedRestart, bool, error) {
	var p PlannedRestart
	found, err := jsonfile.Read(path, &p)
	return p, found && err == nil, err
}

// covers tells whether a round that probed from from to to overlapped the
// window: a probe failed within it then, whenever it began.
func (p PlannedRestart) covers(from, to time.Time) bool {
	end := p.Until
	if !p.Ended.IsZero() && p.Ended.Before(end) {
		end = p.Ended
	}
	return !to.Before(p.Began) && !from.After(end)
}
