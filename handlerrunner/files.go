package handlerrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/wait"
	"github.com/understudy-ha/understudy/replication/files"
)

// mirror keeps the node's Syncthing as the cluster wants it: every other
// member a device (from the member records), every files block a folder
// shared with all of them, send-only on the active and receive-only
// elsewhere, and a standby's own changes reverted. The role loop flips the
// folder types (flipFiles); the rest is upkeep every interval (runFiles),
// which also repairs what a flip could not do while Syncthing was down.
type mirror struct {
	cfg *config.Config
	log *slog.Logger

	mu     sync.Mutex
	client *files.Client // opened on first use: Syncthing may start after us
	// sendOnly is the type the folders should have: true from the moment
	// the node is active until it starts demoting.
	sendOnly bool
	// override lists the folders whose send-only version has yet to be made
	// the cluster's (files.Client.Override) after a promotion.
	override map[string]bool
}

func newMirror(cfg *config.Config, log *slog.Logger) *mirror {
	if len(cfg.Files) == 0 {
		return nil
	}
	return &mirror{cfg: cfg, log: log.With("subsystem", "files"), override: map[string]bool{}}
}

// open returns the Syncthing client; mu is held.
func (m *mirror) open() (*files.Client, error) {
	if m.client != nil {
		return m.client, nil
	}
	c, err := files.Open(m.cfg.SyncthingHome(), m.cfg.SyncthingAPI())
	if err != nil {
		return nil, err
	}
	m.client = c
	return c, nil
}

// flipFiles sets the folder types for the node's new role, at once: on
// promotion before the active-only services start (they may write files at
// once, and those must spread), on demotion before the node follows
// another. A failure is logged; runFiles retries every interval.
func (r *Runner) flipFiles(ctx context.Context, sendOnly bool) {
	m := r.files
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.sendOnly != sendOnly
	m.sendOnly = sendOnly
	if sendOnly {
		for _, f := range m.cfg.Files {
			m.override[f.Name] = true
		}
	} else {
		clear(m.override)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := m.open()
	if err == nil && sendOnly {
		// A receive-only folder announces its local changes the moment it
		// turns send-only: what was written on this node as a standby
		// must not spread now that it is active.
		m.revertStray(ctx, c)
	}
	if err == nil {
		err = c.SetFolderTypes(fctx, sendOnly)
	}
	if err != nil {
		m.log.Warn("cannot set the mirrored folders' type; retrying every interval", "send_only", sendOnly, "err", err)
		return
	}
	if changed {
		m.log.Info("mirrored folders flipped", "type", files.FolderType(sendOnly))
	}
	if sendOnly {
		m.overrideAll(fctx, c)
	}
}

// revertStray reverts the local changes of every folder that is still
// receive-only, and waits (at most revertWait) until Syncthing has done so.
// mu is held.
func (m *mirror) revertStray(ctx context.Context, c *files.Client) {
	ctx, cancel := context.WithTimeout(ctx, revertWait)
	defer cancel()
	_, folders, err := c.Configured(ctx)
	if err != nil {
		m.log.Warn("cannot read the mirrored folders before promotion; files written here as a standby may spread", "err", err)
		return
	}
	for _, f := range folders {
		if f.SendOnly {
			continue
		}
		if err := c.Revert(ctx, f.ID); err != nil {
			m.log.Warn("cannot revert files written here as a standby before promotion; they may spread", "folder", f.ID, "err", err)
			continue
		}
		err := wait.Until(ctx, revertWait, func() error {
			st, err := c.FolderStatus(ctx, f.ID)
			if err != nil {
				return err
			}
			if st.ReceiveOnlyChangedItems > 0 {
				return fmt.Errorf("%d files changed here not reverted yet", st.ReceiveOnlyChangedItems)
			}
			return nil
		})
		if err != nil {
			m.log.Warn("files written here as a standby were not reverted before promotion; they may spread", "folder", f.ID, "err", err)
		}
	}
}

// revertWait bounds the revert that precedes a promotion's flip: the
// active-only services wait for it (PostgreSQL already takes writes).
const revertWait = 10 * time.Second

// overrideAll makes the active's files the cluster's version: a standby
// that became active may hold files older than what the lost active had
// sent to others; from now on its version wins. mu is held.
func (m *mirror) overrideAll(ctx context.Context, c *files.Client) {
	for name := range m.override {
		if err := c.Override(ctx, name); err != nil {
			m.log.Warn("cannot make the active's files the cluster's version; retrying", "folder", name, "err", err)
			continue
		}
		delete(m.override, name)
	}
}

// runFiles is the mirror's upkeep, every interval until ctx ends.
func (r *Runner) runFiles(ctx context.Context) {
	if r.files == nil {
		return
	}
	t := time.NewTicker(r.cfg.Checks.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.filesOnce(ctx)
	}
}

func (r *Runner) filesOnce(ctx context.Context) {
	m := r.files
	members, err := r.listMembers(ctx)
	if err != nil {
		// Without the member list no device may be removed: keep what
		// Syncthing has.
		r.warnEvery("files-members", "cannot list members for the mirrored folders' devices", "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := m.open()
	if err == nil {
		err = c.Apply(fctx, devicesOf(members, r.name), foldersOf(m.cfg.Files, m.sendOnly))
	}
	if err != nil {
		r.warnEvery("files-apply", "cannot configure syncthing; is it running? see its log beside the node's other processes", "err", err)
		return
	}
	if m.sendOnly {
		m.overrideAll(fctx, c)
		return
	}
	for _, f := range m.cfg.Files {
		st, err := c.FolderStatus(fctx, f.Name)
		if err != nil || st.ReceiveOnlyChangedItems == 0 {
			continue
		}
		// A file written on a standby would be lost at the next failover
		// or spread against the active's will: put the active's back.
		if err := c.Revert(fctx, f.Name); err != nil {
			r.warnEvery("files-revert-"+f.Name, "cannot revert local changes in a mirrored folder", "folder", f.Name, "err", err)
			continue
		}
		m.log.Warn("files changed on this standby were reverted to the active node's version; write them on the active node",
			"folder", f.Name, "path", f.Path, "files", st.ReceiveOnlyChangedItems, "bytes", st.ReceiveOnlyChangedBytes)
		r.record(ctx, cluster.Event{Kind: cluster.EventFiles, Reason: fmt.Sprintf("reverted %d files changed on standby %s in %s", st.ReceiveOnlyChangedItems, r.name, f.Name),
			Details: map[string]string{"folder": f.Name, "files": fmt.Sprint(st.ReceiveOnlyChangedItems), "bytes": fmt.Sprint(st.ReceiveOnlyChangedBytes)}})
	}
}

// devicesOf are the Syncthing devices of every other member that publishes
// one. A removed node's record is gone, so its device goes at the next
// Apply.
func devicesOf(members []cluster.Member, self string) []files.Device {
	var ds []files.Device
	for _, m := range members {
		// Discovery is off: a device without an address could not be
		// reached, and Apply refuses it.
		if m.Name == self || m.SyncthingDeviceID == "" || m.SyncthingAddress == "" {
			continue
		}
		ds = append(ds, files.Device{ID: m.SyncthingDeviceID, Name: m.Name, Addresses: []string{m.SyncthingAddress}})
	}
	return ds
}

func foldersOf(fs []config.Files, sendOnly bool) []files.Folder {
	out := make([]files.Folder, 0, len(fs))
	for _, f := range fs {
		out = append(out, files.Folder{ID: f.Name, Label: f.Name, Path: f.Path, SendOnly: sendOnly})
	}
	return out
}

// listMembers reads every member record, failing rather than returning a
// partial list.
func (r *Runner) listMembers(ctx context.Context) ([]cluster.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out []cluster.Member
	err := r.cc.ListJSON(ctx, r.keys.Members(), func(_ string, raw []byte) error {
		var m cluster.Member
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		if m.Name != "" {
			out = append(out, m)
		}
		return nil
	})
	return out, err
}
