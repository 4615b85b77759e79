package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// Kept is what a rewind kept aside (cluster.Diverged).
type Kept = cluster.Diverged

// keptPrefix names the directories beside the data directory.
const (
	keptPrefix = "understudy-diverged-"
	keptFile   = "kept.json"
)

var divergedRe = regexp.MustCompile(`servers diverged at WAL location ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline (\d+)`)

// keepDiverged asks pg_rewind (--dry-run, which changes nothing) where this
// directory's history left the source's, copies the WAL segments of that
// timeline from there on beside the data directory, and reads them with
// pg_waldump to find what they hold. Nothing diverged (no transaction
// committed after the fork point, or no rewind required): nothing is kept. It runs as root, the
// daemons' user; the copy is root's, 0700.
func (i *Instance) keepDiverged(ctx context.Context, u osUser, source Upstream, args []string) (Kept, error) {
	// pg_rewind --dry-run refuses a directory that was not shut down
	// cleanly: finish its crash recovery first, as pg_rewind itself would
	// (single-user mode replays the WAL and keeps it).
	if cd, err := i.ControlData(ctx); err == nil && !cd.Clean() {
		cmd := i.command(ctx, u, "postgres", "--single", "-F", "-D", i.dataDir, "template1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Kept{}, fmt.Errorf("crash recovery before the rewind: %w%s", err, outputTail(string(out), tailLines))
		}
	}
	out, err := i.run(ctx, u, "pg_rewind", append(args, "--dry-run")...)
	if err != nil {
		return Kept{}, fmt.Errorf("pg_rewind --dry-run: %w", err)
	}
	if strings.Contains(out, "no rewind required") {
		return Kept{}, i.sameHistory(ctx, source)
	}
	m := divergedRe.FindStringSubmatch(out)
	if m == nil {
		return Kept{}, fmt.Errorf("pg_rewind --dry-run did not say where the histories diverged: %s", outputTail(out, tailLines))
	}
	from, _ := cluster.ParseLSN(m[1])
	tli, _ := parseTimeline(m[2])
	cd, err := i.ControlData(ctx)
	if err != nil {
		return Kept{}, err
	}
	seg := cd.WALSegmentSize
	if seg == 0 {
		seg = 16 << 20
	}
	// The records after the fork may span timelines of this directory's
	// own (a minority side that promoted after it was cut off): every
	// timeline of its history from the fork's on.
	ranges, err := i.pathFrom(cd.Timeline, tli, from)
	if err != nil {
		return Kept{}, err
	}
	src := filepath.Join(i.dataDir, "pg_wal")
	entries, err := os.ReadDir(src)
	if err != nil {
		return Kept{}, fmt.Errorf("read %s: %w", src, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if len(n) != 24 || !e.Type().IsRegular() {
			continue
		}
		for _, r := range ranges {
			if first := walFileName(r.Timeline, uint64(r.From)/seg, seg); strings.HasPrefix(n, first[:8]) && n >= first {
				names = append(names, n)
				break
			}
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return Kept{}, nil
	}
	now := time.Now().UTC()
	dir := filepath.Join(filepath.Dir(i.dataDir), keptPrefix+now.Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Kept{}, err
	}
	for _, n := range names {
		if err := copyFile(filepath.Join(src, n), filepath.Join(dir, n)); err != nil {
			os.RemoveAll(dir)
			return Kept{}, fmt.Errorf("keep diverged WAL segment %s: %w", n, err)
		}
	}
	k := Kept{Dir: dir, Timeline: tli, From: from, At: now}
	if len(ranges) > 1 {
		k.Ranges = ranges
	}
	for j, r := range ranges {
		last, commits := i.readKept(ctx, dir, r)
		k.To, k.Commits = max(k.To, last), k.Commits+commits
		if k.Ranges != nil {
			k.Ranges[j].Commits = commits
		}
	}
	if k.Commits == 0 {
		// Checkpoints and unfinished transactions only: no write was
		// acknowledged after the fork.
		os.RemoveAll(dir)
		return Kept{}, nil
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	readme := fmt.Sprintf(`These are WAL records that this node wrote as the primary after the cluster's
history had left it (timeline %d, from %s to %s, %d committed transactions):
writes the new active never had. understudy kept them before pg_rewind
discarded them from the data directory, on %s.

Read them:   %s
Remove this directory once you have what you need from it.
`, k.Timeline, k.From, k.To, k.Commits, now.Format(time.RFC3339), k.Inspect())
	if err := errors.Join(os.WriteFile(filepath.Join(dir, keptFile), b, 0o600),
		os.WriteFile(filepath.Join(dir, "README"), []byte(readme), 0o600)); err != nil {
		return Kept{}, err
	}
	return k, nil
}

// readKept reads the kept records with pg_waldump: where the last one
// starts and how many commits there are. pg_waldump ends with an error at
// the end of the WAL it was given, which is expected.
func (i *Instance) readKept(ctx context.Context, dir string, r cluster.WALRange) (last cluster.LSN, commits int) {
	args := []string{"-p", dir, "-t", strconv.Itoa(int(r.Timeline)), "-s", r.From.String()}
	if r.To != 0 {
		args = append(args, "-e", r.To.String())
	}
	out, _ := exec.CommandContext(ctx, filepath.Join(i.cfg.BinDir, "pg_waldump"), args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		_, rest, ok := strings.Cut(line, " lsn: ")
		if !ok {
			continue
		}
		lsn, _, _ := strings.Cut(rest, ",")
		if l, err := cluster.ParseLSN(strings.TrimSpace(lsn)); err == nil && l > last {
			last = l
		}
		if strings.Contains(line, "desc: COMMIT") {
			commits++
		}
	}
	return last, commits
}

// walFileName is the name of the WAL segment segno of timeline tli.
func walFileName(tli uint32, segno, segSize uint64) string {
	perID := uint64(0x100000000) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perID, segno%perID)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return errors.Join(out.Sync(), out.Close())
}

// KeptAside lists what earlier rewinds kept beside dataDir and an operator
// has not removed yet, oldest first.
func KeptAside(dataDir string) []Kept {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(dataDir), keptPrefix+"*", keptFile))
	sort.Strings(matches)
	var out []Kept
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		var k Kept
		if json.Unmarshal(b, &k) == nil && k.Dir != "" {
			out = append(out, k)
		}
	}
	return out
}

// ErrTimelineCollision: this directory and the rewind source are on
// timelines of the same number with different histories (two sides of a
// partition promoted apart onto the same number). pg_rewind compares the
// numbers only and would say no rewind is required; the directory must be
// cloned afresh instead (Clone keeps it aside).
var ErrTimelineCollision = errors.New("this node and the source are on timelines of the same number with different histories: pg_rewind cannot rewind it")

// sameHistory is nil when "no rewind required" can be believed: the
// directory's timeline is 1, or the source's history file of that
// timeline is this directory's.
func (i *Instance) sameHistory(ctx context.Context, source Upstream) error {
	cd, err := i.ControlData(ctx)
	if err != nil {
		return err
	}
	if cd.Timeline <= 1 {
		return nil
	}
	name := fmt.Sprintf("%08X.history", cd.Timeline)
	mine, err := os.ReadFile(filepath.Join(i.dataDir, "pg_wal", name))
	if err != nil {
		return fmt.Errorf("read this node's history of timeline %d: %w", cd.Timeline, err)
	}
	conn, done, err := i.sourceConn(ctx, source)
	if err != nil {
		return err
	}
	defer done()
	var theirs []byte
	if err := conn.QueryRow(ctx, `select pg_read_binary_file('pg_wal/' || $1, 0, 1048576, true)`, name).Scan(&theirs); err != nil {
		return fmt.Errorf("read the history of timeline %d on %s: %w", cd.Timeline, source.Addr(), err)
	}
	if theirs != nil && !bytes.Equal(mine, theirs) {
		return fmt.Errorf("timeline %d: %w", cd.Timeline, ErrTimelineCollision)
	}
	return nil
}

// pathFrom is this directory's history (timeline cur's history file) from
// the fork (timeline tli at from) on: each timeline with where its records
// start and end (To 0: the end of the WAL).
func (i *Instance) pathFrom(cur, tli uint32, from cluster.LSN) ([]cluster.WALRange, error) {
	type entry struct {
		tli uint32
		end cluster.LSN
	}
	var hist []entry
	if cur > 1 {
		b, err := os.ReadFile(filepath.Join(i.dataDir, "pg_wal", fmt.Sprintf("%08X.history", cur)))
		if err != nil {
			return nil, fmt.Errorf("read the history of timeline %d: %w", cur, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") {
				continue
			}
			t, err1 := parseTimeline(f[0])
			end, err2 := cluster.ParseLSN(f[1])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("timeline %d's history: bad line %q", cur, line)
			}
			hist = append(hist, entry{t, end})
		}
	}
	hist = append(hist, entry{cur, 0})
	var out []cluster.WALRange
	start := cluster.LSN(0)
	for _, e := range hist {
		if e.tli >= tli && (e.end == 0 || e.end > from) {
			out = append(out, cluster.WALRange{Timeline: e.tli, From: max(start, from), To: e.end})
		}
		start = e.end
	}
	if len(out) == 0 {
		out = []cluster.WALRange{{Timeline: tli, From: from}}
	}
	return out, nil
}
