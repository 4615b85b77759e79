package checkrunner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/replication/files"
)

// CheckFiles looks at each mirrored folder in the node's Syncthing: on a
// standby, how much of the active's files it still lacks and whether it has
// local changes; everywhere, whether Syncthing answers and the folder is
// free of errors. It never takes part in the session: files out of sync are
// worth a warning, not a failover.
const CheckFiles = "files"

// folderObs is one folder as this round saw it.
type folderObs struct {
	cfg config.Files
	st  files.FolderStatus
	err error
	// behindFor is how long the folder has lacked more than MaxOutOfSync
	// bytes (0 when it does not).
	behindFor time.Duration
}

// filesObserver keeps what the files check needs across rounds: the
// Syncthing client and since when each folder has been behind.
type filesObserver struct {
	cfg    *config.Config
	client *files.Client
	since  map[string]time.Time
	// deviceID is the node's Syncthing identity, read once from its home.
	deviceID string
}

func newFilesObserver(cfg *config.Config) *filesObserver {
	if len(cfg.Files) == 0 {
		return nil
	}
	return &filesObserver{cfg: cfg, since: map[string]time.Time{}}
}

// observe asks Syncthing about every folder. A node that is not active is a
// standby for files: it should have everything the active sends.
func (f *filesObserver) observe(ctx context.Context, o *observation, now time.Time) {
	if f == nil {
		return
	}
	if f.client == nil {
		c, err := files.Open(f.cfg.SyncthingHome(), f.cfg.SyncthingAPI())
		if err != nil {
			o.filesErr = fmt.Errorf("syncthing is not set up on this node (%w); cluster start or join sets it up", err)
			return
		}
		f.client = c
	}
	if f.deviceID == "" {
		f.deviceID, _ = files.HomeDeviceID(f.cfg.SyncthingHome())
	}
	if err := f.client.Ping(ctx); err != nil {
		o.filesErr = fmt.Errorf("syncthing does not answer at %s: %w", f.cfg.SyncthingAPI(), err)
		return
	}
	for _, fc := range f.cfg.Files {
		fo := folderObs{cfg: fc}
		fo.st, fo.err = f.client.FolderStatus(ctx, fc.Name)
		behind := fo.err == nil && fo.st.NeedBytes > fc.MaxOutOfSync
		switch {
		case !behind:
			delete(f.since, fc.Name)
		case f.since[fc.Name].IsZero():
			f.since[fc.Name] = now
		default:
			fo.behindFor = now.Sub(f.since[fc.Name])
		}
		o.folders = append(o.folders, fo)
	}
}

// states is what the member record publishes of each folder.
func (o *observation) folderStates() map[string]cluster.FolderState {
	if len(o.folders) == 0 && o.filesErr == nil {
		return nil
	}
	typ := files.FolderType(o.active())
	m := map[string]cluster.FolderState{}
	for _, f := range o.folders {
		fs := cluster.FolderState{State: f.st.State, Type: typ, OutOfSyncBytes: f.st.NeedBytes, LocalChanges: f.st.ReceiveOnlyChangedItems}
		if f.err != nil || fs.State == "" {
			fs.State = "unknown"
		}
		m[f.cfg.Name] = fs
	}
	return m
}

func checkFiles(o *observation) Result {
	if o.filesErr != nil {
		return fail("%v", o.filesErr)
	}
	if len(o.folders) == 0 {
		return pass("no files blocks: nothing mirrored")
	}
	var bad, behind, changed, ok []string
	for _, f := range o.folders {
		name := f.cfg.Name
		switch {
		case f.err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", name, f.err))
		case f.st.Errors > 0 || f.st.Error != "":
			bad = append(bad, fmt.Sprintf("%s: %d errors %s", name, f.st.Errors, f.st.Error))
		case !o.active() && f.st.ReceiveOnlyChangedItems > 0:
			changed = append(changed, fmt.Sprintf("%s: %d files changed here (they are reverted to the active's version)", name, f.st.ReceiveOnlyChangedItems))
		case !o.active() && f.st.NeedBytes > f.cfg.MaxOutOfSync && f.behindFor >= f.cfg.Settle:
			behind = append(behind, fmt.Sprintf("%s: %d bytes (%d files) behind the active for %s, more than max_out_of_sync %d",
				name, f.st.NeedBytes, f.st.NeedItems, f.behindFor.Round(time.Second), f.cfg.MaxOutOfSync))
		case f.st.NeedBytes > 0:
			ok = append(ok, fmt.Sprintf("%s %s, %d bytes to receive", name, f.st.State, f.st.NeedBytes))
		default:
			ok = append(ok, fmt.Sprintf("%s %s, in sync", name, f.st.State))
		}
	}
	switch {
	case len(bad) > 0:
		return warn("%s; see the syncthing log beside the node's other processes", strings.Join(bad, "; "))
	case len(behind) > 0:
		return warn("%s; is the active node's syncthing reachable?", strings.Join(behind, "; "))
	case len(changed) > 0:
		return warn("%s; write files on the active node only", strings.Join(changed, "; "))
	}
	return pass("%s", strings.Join(ok, "; "))
}
