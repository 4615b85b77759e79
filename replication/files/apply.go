package files

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// Syncthing's folder types (lib/config.FolderType as text).
const (
	typeSendOnly    = "sendonly"
	typeReceiveOnly = "receiveonly"
)

// The settings of every folder Apply configures.
const (
	// fsWatcherDelayS: changes are picked up by inotify and scanned after a
	// second (Syncthing's default is 10): standbys are promised to be in
	// sync within 10 s. Deletions alone wait up to 6x this.
	fsWatcherDelayS = 1
	// rescanIntervalS: a full rescan every minute (default an hour) catches
	// what the watcher missed (overflowed inotify queues, network mounts).
	rescanIntervalS = 60
)

// Device is a peer of this node's Syncthing.
type Device struct {
	ID        string   // device ID, as DeviceID computes it
	Name      string   // shown in logs; the node name
	Addresses []string // like "tcp://10.0.0.2:22000"; at least one, nothing is discovered
}

// Folder is a directory mirrored between the nodes.
type Folder struct {
	ID       string // the same on every node; no "/"
	Label    string
	Path     string // absolute
	SendOnly bool   // send-only on the active node; false: receive-only
}

// deviceJSON is the part of a device's configuration (lib/config
// .DeviceConfiguration in JSON) that Apply owns; Syncthing's defaults fill
// the rest, e.g. compression "metadata".
type deviceJSON struct {
	DeviceID          string   `json:"deviceID"`
	Name              string   `json:"name"`
	Addresses         []string `json:"addresses"`
	Introducer        bool     `json:"introducer"`
	AutoAcceptFolders bool     `json:"autoAcceptFolders"`
	Paused            bool     `json:"paused"`
}

// folderJSON is the part of a folder's configuration (lib/config
// .FolderConfiguration in JSON) that Apply owns.
type folderJSON struct {
	ID               string             `json:"id"`
	Label            string             `json:"label"`
	Path             string             `json:"path"`
	Type             string             `json:"type"`
	Devices          []folderDeviceJSON `json:"devices"`
	RescanIntervalS  int                `json:"rescanIntervalS"`
	FSWatcherEnabled bool               `json:"fsWatcherEnabled"`
	FSWatcherDelayS  float64            `json:"fsWatcherDelayS"`
	Paused           bool               `json:"paused"`
	Versioning       versioningJSON     `json:"versioning"`
	// SendOwnership and SyncOwnership carry each file's owner and group
	// from the active to the standbys: after a failover the application
	// runs on a node whose copies are its own, not Syncthing's user's.
	// Applying them needs CAP_CHOWN and CAP_FOWNER, which the unit gives.
	SendOwnership bool `json:"sendOwnership"`
	SyncOwnership bool `json:"syncOwnership"`
}

type folderDeviceJSON struct {
	DeviceID string `json:"deviceID"`
}

// versioningJSON: type "" is no versioning. A mirror keeps no old versions;
// the active node's backups do.
type versioningJSON struct {
	Type string `json:"type"`
}

// configJSON is the part of /rest/config that Apply and Configured read.
type configJSON struct {
	Devices []deviceJSON `json:"devices"`
	Folders []folderJSON `json:"folders"`
}

// decodeConfig decodes an answer of /rest/config and puts the device IDs in
// canonical form.
func decodeConfig(data []byte) (configJSON, error) {
	var cfg configJSON
	if err := decodeJSON(data, &cfg); err != nil {
		return configJSON{}, err
	}
	for i := range cfg.Devices {
		id, err := canonicalID(cfg.Devices[i].DeviceID)
		if err != nil {
			return configJSON{}, fmt.Errorf("configured device: %w", err)
		}
		cfg.Devices[i].DeviceID = id
	}
	for i, f := range cfg.Folders {
		for j, d := range f.Devices {
			id, err := canonicalID(d.DeviceID)
			if err != nil {
				return configJSON{}, fmt.Errorf("folder %q: %w", f.ID, err)
			}
			cfg.Folders[i].Devices[j].DeviceID = id
		}
	}
	return cfg, nil
}

// Apply makes Syncthing's configuration the desired state: its peers are
// exactly devices (added, updated, removed; a device with this node's own
// ID is skipped, so every member can be passed), each of folders exists with
// its path and type and is shared with all of devices, and folders not
// listed are removed (their files stay on disk). Nothing is written when the
// configuration already matches: every write restarts the folders it
// touches, which rescan.
//
// Changes are made one device or folder at a time, devices first (a folder
// can only be shared with a configured device), removals last; if one
// fails, Apply stops and running it again continues.
func (c *Client) Apply(ctx context.Context, devices []Device, folders []Folder) error {
	myID, err := c.MyID(ctx)
	if err != nil {
		return fmt.Errorf("apply syncthing configuration: %w", err)
	}
	have, err := c.config(ctx)
	if err != nil {
		return fmt.Errorf("apply syncthing configuration: %w", err)
	}
	calls, err := plan(myID, have, devices, folders)
	if err != nil {
		return fmt.Errorf("apply syncthing configuration: %w", err)
	}
	for _, r := range calls {
		if err := c.call(ctx, writeTimeout, r.method, r.path, nil, r.body, nil); err != nil {
			return fmt.Errorf("apply syncthing configuration: %w", err)
		}
	}
	return nil
}

// restCall is one change to Syncthing's configuration.
type restCall struct {
	method, path string
	body         any // nil: none
}

// plan returns the calls that turn have into the desired configuration, in
// order, or none when have already is it. It does no I/O.
//
// A device or folder that differs is replaced whole with PUT, which
// Syncthing builds on its defaults: settings someone changed by hand in
// Syncthing's GUI do not survive, as they would not survive a rebuilt node.
func plan(myID string, have configJSON, devices []Device, folders []Folder) ([]restCall, error) {
	wantDevices, err := desiredDevices(myID, devices)
	if err != nil {
		return nil, err
	}
	wantFolders, err := desiredFolders(myID, wantDevices, folders)
	if err != nil {
		return nil, err
	}
	var calls []restCall
	haveDevices := map[string]deviceJSON{}
	for _, d := range have.Devices {
		haveDevices[d.DeviceID] = d
	}
	for _, d := range wantDevices {
		if h, ok := haveDevices[d.DeviceID]; !ok || !sameDevice(h, d) {
			calls = append(calls, restCall{http.MethodPut, "/rest/config/devices/" + d.DeviceID, d})
		}
	}
	haveFolders := map[string]folderJSON{}
	for _, f := range have.Folders {
		haveFolders[f.ID] = f
	}
	for _, f := range wantFolders {
		if h, ok := haveFolders[f.ID]; !ok || !sameFolder(h, f) {
			calls = append(calls, restCall{http.MethodPut, "/rest/config/folders/" + url.PathEscape(f.ID), f})
		}
	}
	for _, f := range have.Folders {
		if !slices.ContainsFunc(wantFolders, func(w folderJSON) bool { return w.ID == f.ID }) {
			calls = append(calls, restCall{http.MethodDelete, "/rest/config/folders/" + url.PathEscape(f.ID), nil})
		}
	}
	for _, d := range have.Devices {
		if d.DeviceID != myID && !slices.ContainsFunc(wantDevices, func(w deviceJSON) bool { return w.DeviceID == d.DeviceID }) {
			calls = append(calls, restCall{http.MethodDelete, "/rest/config/devices/" + d.DeviceID, nil})
		}
	}
	return calls, nil
}

// desiredDevices validates devices and returns them as Syncthing would
// report them, without this node's own.
func desiredDevices(myID string, devices []Device) ([]deviceJSON, error) {
	var out []deviceJSON
	seen := map[string]bool{}
	for _, d := range devices {
		id, err := canonicalID(d.ID)
		if err != nil {
			return nil, fmt.Errorf("device %q: %w", d.Name, err)
		}
		if id == myID {
			continue
		}
		if seen[id] {
			return nil, fmt.Errorf("device %s (%s) is listed twice", id, d.Name)
		}
		seen[id] = true
		// Syncthing would turn no address into "dynamic", which needs
		// the discovery that Prepare turned off.
		if len(d.Addresses) == 0 {
			return nil, fmt.Errorf("device %s (%s) has no address; give its tcp://host:port, nothing is discovered", id, d.Name)
		}
		out = append(out, deviceJSON{DeviceID: id, Name: d.Name, Addresses: slices.Clone(d.Addresses)})
	}
	return out, nil
}

// desiredFolders validates folders and returns them as Syncthing would
// report them, shared with this node and every device.
func desiredFolders(myID string, devices []deviceJSON, folders []Folder) ([]folderJSON, error) {
	shared := []folderDeviceJSON{{DeviceID: myID}}
	for _, d := range devices {
		shared = append(shared, folderDeviceJSON{DeviceID: d.DeviceID})
	}
	sortFolderDevices(shared)
	var out []folderJSON
	seen := map[string]bool{}
	for _, f := range folders {
		if f.ID == "" || strings.Contains(f.ID, "/") {
			return nil, fmt.Errorf("folder ID %q: must be non-empty and contain no /", f.ID)
		}
		if seen[f.ID] {
			return nil, fmt.Errorf("folder %q is listed twice", f.ID)
		}
		seen[f.ID] = true
		if !filepath.IsAbs(f.Path) {
			return nil, fmt.Errorf("folder %q: path %q is not absolute", f.ID, f.Path)
		}
		out = append(out, folderJSON{
			ID: f.ID, Label: f.Label, Path: f.Path, Type: FolderType(f.SendOnly),
			Devices:          slices.Clone(shared),
			RescanIntervalS:  rescanIntervalS,
			FSWatcherEnabled: true,
			FSWatcherDelayS:  fsWatcherDelayS,
			SendOwnership:    true,
			SyncOwnership:    true,
		})
	}
	return out, nil
}

// FolderType is Syncthing's name of a folder's type: "sendonly" on the
// active node, "receiveonly" on a standby.
func FolderType(sendOnly bool) string {
	if sendOnly {
		return typeSendOnly
	}
	return typeReceiveOnly
}

func sortFolderDevices(ds []folderDeviceJSON) {
	slices.SortFunc(ds, func(a, b folderDeviceJSON) int { return strings.Compare(a.DeviceID, b.DeviceID) })
}

func sameDevice(a, b deviceJSON) bool {
	return a.DeviceID == b.DeviceID && a.Name == b.Name && slices.Equal(a.Addresses, b.Addresses) &&
		a.Introducer == b.Introducer && a.AutoAcceptFolders == b.AutoAcceptFolders && a.Paused == b.Paused
}

func sameFolder(a, b folderJSON) bool {
	ad, bd := slices.Clone(a.Devices), slices.Clone(b.Devices)
	sortFolderDevices(ad)
	sortFolderDevices(bd)
	return a.ID == b.ID && a.Label == b.Label && a.Path == b.Path && a.Type == b.Type &&
		slices.Equal(ad, bd) && a.RescanIntervalS == b.RescanIntervalS &&
		a.FSWatcherEnabled == b.FSWatcherEnabled && a.FSWatcherDelayS == b.FSWatcherDelayS &&
		a.Paused == b.Paused && a.Versioning == b.Versioning &&
		a.SendOwnership == b.SendOwnership && a.SyncOwnership == b.SyncOwnership
}

// SetFolderTypes makes every configured folder send-only (sendOnly, the
// active node) or receive-only, in one configuration change so that all
// folders switch together; it writes nothing when they already are.
//
// A receive-only folder's local changes (ReceiveOnlyChangedItems) are
// announced to the others the moment it turns send-only, before any
// Override: Revert them first if the new active must not spread them.
//
// The folders are written back as Syncthing reported them with only their
// type changed: PUT of the folder list replaces every folder, and a field
// Apply does not own must not fall back to its default on the way.
func (c *Client) SetFolderTypes(ctx context.Context, sendOnly bool) error {
	var folders []map[string]json.RawMessage
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/config/folders", nil, nil, &folders); err != nil {
		return fmt.Errorf("set folder types: %w", err)
	}
	want := FolderType(sendOnly)
	wantJSON, _ := json.Marshal(want)
	changed := false
	for _, f := range folders {
		var typ string
		if err := json.Unmarshal(f["type"], &typ); err != nil {
			return fmt.Errorf("set folder types: syncthing at %s: folder %s: type %s: %w", c.addr, f["id"], f["type"], err)
		}
		if typ != want {
			f["type"] = wantJSON
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.call(ctx, writeTimeout, http.MethodPut, "/rest/config/folders", nil, folders, nil); err != nil {
		return fmt.Errorf("set folder types to %s: %w", want, err)
	}
	return nil
}

// Configured returns the devices (without this node's own) and folders as
// Syncthing has them configured now. SendOnly is false for any type but
// send-only.
func (c *Client) Configured(ctx context.Context) ([]Device, []Folder, error) {
	myID, err := c.MyID(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("syncthing configuration: %w", err)
	}
	cfg, err := c.config(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("syncthing configuration: %w", err)
	}
	var devices []Device
	for _, d := range cfg.Devices {
		if d.DeviceID != myID {
			devices = append(devices, Device{ID: d.DeviceID, Name: d.Name, Addresses: d.Addresses})
		}
	}
	var folders []Folder
	for _, f := range cfg.Folders {
		folders = append(folders, Folder{ID: f.ID, Label: f.Label, Path: f.Path, SendOnly: f.Type == typeSendOnly})
	}
	return devices, folders, nil
}

// config reads the devices and folders of /rest/config.
func (c *Client) config(ctx context.Context) (configJSON, error) {
	var raw json.RawMessage
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/config", nil, nil, &raw); err != nil {
		return configJSON{}, err
	}
	cfg, err := decodeConfig(raw)
	if err != nil {
		return configJSON{}, fmt.Errorf("syncthing at %s: /rest/config: %w", c.addr, err)
	}
	return cfg, nil
}
