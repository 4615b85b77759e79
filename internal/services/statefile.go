package services

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

// The files of a supervised service NAME in the state directory. They are
// the only state a Status in another process can see, so everything Detail
// reports is in them.
//
//	NAME.pid    the pid of the running process and nothing else, as
//	            `kill $(cat NAME.pid)` and other tools expect; absent while
//	            no process runs
//	NAME.state  a JSON record: who that pid is, restarts, the last exit
//	NAME.lock   flock(2)ed by the one Manager that supervises NAME
//	NAME.log    the process's stdout and stderr, appended, with a line
//	            from understudy at each start and exit
const (
	pidExt   = ".pid"
	stateExt = ".state"
	lockExt  = ".lock"
	logExt   = ".log"
)

// ErrSupervisedElsewhere is returned by Start and Stop of a supervised
// service whose lock file another Manager holds, in this process or
// another: two supervisors would each restart the process, and a Stop here
// would be undone there.
var ErrSupervisedElsewhere = errors.New("another understudy Manager on this node supervises it")

// record is the content of NAME.state.
type record struct {
	// PID, StartTime and BootID identify the running process: a pid is
	// reused, but not with the same start time within one boot.
	PID       int      `json:"pid,omitempty"`
	StartTime uint64   `json:"start_time,omitempty"` // field 22 of /proc/PID/stat
	BootID    string   `json:"boot_id,omitempty"`
	Argv      []string `json:"argv,omitempty"`
	// Restarts counts the restarts since the service was last started
	// from stopped.
	Restarts int `json:"restarts"`
	// Exit says how the last process ended ("exited 3", "killed by signal
	// 9", "could not start: ...", "stopped") and ExitAt when.
	Exit   string    `json:"exit,omitempty"`
	ExitAt time.Time `json:"exit_at,omitzero"`
}

// observed is what the files and /proc say about a supervised service.
type observed struct {
	rec     record
	pid     int    // from NAME.pid; 0 when there is none
	running bool   // pid is the live process of the service
	start   uint64 // its start time, when running
	why     string // when not running, why, for Status.Detail
}

func (m *Manager) path(name, ext string) string { return filepath.Join(m.stateDir, name+ext) }

func (m *Manager) needStateDir(svc config.Service) error {
	if m.stateDir == "" {
		return fmt.Errorf("service %s runs a supervised command, which needs a state directory for its pid and log files; "+
			"create the Manager with services.NewManager(services.WithStateDir(<node.data_dir>/services))", svc.Name)
	}
	return nil
}

// observe reads the files of svc and checks the process they name. It
// writes nothing, so a Status from any process may call it.
func (m *Manager) observe(svc config.Service) (observed, error) {
	var o observed
	b, err := os.ReadFile(m.path(svc.Name, stateExt))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return o, fmt.Errorf("read state of service %s: %w", svc.Name, err)
	default:
		// A record that does not parse only costs the restart count and
		// the start-time check: the cmdline check below still applies.
		_ = json.Unmarshal(b, &o.rec)
	}
	pidFile := m.path(svc.Name, pidExt)
	b, err = os.ReadFile(pidFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && o.rec.PID > 0 && o.rec.StartTime != 0:
		// The supervisor died between writing the record and the pid
		// file: the record identifies the process as well.
		o.pid = o.rec.PID
	case errors.Is(err, fs.ErrNotExist):
		o.why = "never started"
		if o.rec.Exit != "" {
			o.why = o.rec.Exit + " at " + o.rec.ExitAt.Format(time.RFC3339)
		}
		return o, nil
	case err != nil:
		return o, fmt.Errorf("read pid of service %s: %w", svc.Name, err)
	default:
		o.pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || o.pid <= 0 {
			o.pid, o.why = 0, fmt.Sprintf("%s holds no pid", pidFile)
			return o, nil
		}
	}
	o.start, o.why = verify(o.pid, o.rec, svc.Command[0])
	o.running = o.why == ""
	return o, nil
}

// save writes rec and, when pid > 0, the pid file; pid 0 removes it. The
// record is written first and the pid file removed first, so that a reader
// never finds a pid file without the record that identifies its process.
func (m *Manager) save(name string, rec record) error {
	pidFile := m.path(name, pidExt)
	if rec.PID == 0 {
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(m.path(name, stateExt), append(b, '\n')); err != nil {
		return err
	}
	if rec.PID > 0 {
		return writeAtomic(pidFile, []byte(strconv.Itoa(rec.PID)+"\n"))
	}
	return nil
}

// writeAtomic replaces path by rename, so a reader sees the old or the new
// content, never half of it. No fsync: after a crash of the machine the
// boot id tells a stale record apart anyway.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lock takes NAME.lock for the Manager that supervises NAME. The file
// descriptor is close-on-exec (Go opens every file so), so the lock is not
// inherited by the process and ends with the supervising daemon.
func (m *Manager) lock(name string) (*os.File, error) {
	if err := os.MkdirAll(m.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	path := m.path(name, lockExt)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s is locked)", ErrSupervisedElsewhere, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// note appends a line from understudy to the service's log, so that an
// operator reading it sees where one run of the program ends and the next
// begins. It is best effort: the log is for people.
func (m *Manager) note(name, format string, args ...any) {
	f, err := os.OpenFile(m.path(name, logExt), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s understudy: %s\n", time.Now().Format(time.RFC3339), fmt.Sprintf(format, args...))
}
