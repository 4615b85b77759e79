package files

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

const (
	// syncDeadline is the promise: a change on the active node is on the
	// standbys within 10 s.
	syncDeadline = 10 * time.Second
	// startDeadline bounds a Syncthing start until its API answers.
	startDeadline = 30 * time.Second
	folderID      = "resources"
)

// stNode is one real Syncthing, laid out by Prepare and started with Command.
type stNode struct {
	name   string
	setup  Setup
	dir    string // the path of the shared folder
	proc   *testenv.Process
	client *Client
	id     string
}

// startNode prepares and starts a Syncthing on 127.0.0.1 with free ports,
// with the node certificate in certFile and keyFile ("" generates one).
func startNode(t testing.TB, name, certFile, keyFile string) *stNode {
	t.Helper()
	ports := testenv.FreePortsOn(t, "127.0.0.1", 2)
	root := t.TempDir()
	n := &stNode{name: name, dir: filepath.Join(root, "data"), setup: Setup{
		Home:       filepath.Join(root, "syncthing"),
		NodeName:   name,
		Listen:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		APIAddress: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		CertFile:   certFile, KeyFile: keyFile,
	}}
	if err := Prepare(n.setup); err != nil {
		t.Fatal(err)
	}
	n.start(t)
	return n
}

// start runs Syncthing from the node's home and waits until its API
// answers; it gives up at once when the process exits.
func (n *stNode) start(t testing.TB) {
	t.Helper()
	argv := Command(testenv.SyncthingBinary(t), n.setup.Home)
	cmd := exec.Command(argv[0], argv[1:]...)
	// Nothing of the test's environment (STGUIADDRESS, STHOMEDIR, a proxy).
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + n.setup.Home}
	p := testenv.StartProcess(t, "syncthing "+n.name, cmd)
	n.proc = p
	c, err := Open(n.setup.Home, n.setup.APIAddress)
	if err != nil {
		t.Fatal(err)
	}
	n.client = c
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		select {
		case <-p.Exited():
			cancel(fmt.Errorf("[%s] exited", p.Name()))
		case <-ctx.Done():
		}
	}()
	if err := testenv.WaitFor(ctx, startDeadline, func() error { return c.Ping(ctx) }); err != nil {
		t.Fatal(err)
	}
	if n.id, err = c.MyID(ctx); err != nil {
		t.Fatal(err)
	}
}

func (n *stNode) device() Device {
	return Device{ID: n.id, Name: n.name, Addresses: []string{"tcp://" + n.setup.Listen}}
}

func (n *stNode) folder(sendOnly bool) Folder {
	return Folder{ID: folderID, Label: "Resources", Path: n.dir, SendOnly: sendOnly}
}

func (n *stNode) apply(t testing.TB, devices []Device, sendOnly bool) {
	t.Helper()
	if err := n.client.Apply(context.Background(), devices, []Folder{n.folder(sendOnly)}); err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
}

func (n *stNode) write(t testing.TB, rel, content string) {
	t.Helper()
	p := filepath.Join(n.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// get decodes a GET of the node's REST API into out.
func (n *stNode) get(t *testing.T, path string, out any) {
	t.Helper()
	if err := n.client.call(context.Background(), readTimeout, http.MethodGet, path, nil, nil, out); err != nil {
		t.Fatal(err)
	}
}

// configMTime is when Syncthing last saved its configuration, which it does
// on every change made through the API.
func (n *stNode) configMTime(t *testing.T) time.Time {
	t.Helper()
	fi, err := os.Stat(filepath.Join(n.setup.Home, configName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// tree is every regular file under dir with its content, without
// Syncthing's own (.stfolder, .stignore, .syncthing.*.tmp).
func tree(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Name() == ".stfolder" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && d.Name() != ".stignore" && !strings.HasPrefix(d.Name(), ".syncthing.") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = string(data)
		}
		return nil
	})
	return files, err
}

// waitSame waits until every node's folder holds exactly want, and
// returns how long that took. On timeout it says what each node had and
// what Syncthing reported.
func waitSame(t testing.TB, deadline time.Duration, want map[string]string, nodes ...*stNode) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.Eventually(t, deadline, func() error {
		var errs []error
		for _, n := range nodes {
			got, err := tree(n.dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
				continue
			}
			if !maps.Equal(got, want) {
				st, err := n.client.FolderStatus(context.Background(), folderID)
				errs = append(errs, fmt.Errorf("%s has %q, want %q (status %+v %v)", n.name, got, want, st, err))
			}
		}
		return errors.Join(errs...)
	})
	return time.Since(start)
}

// TestSyncthingRunsPrepared: the home Prepare lays out is what Syncthing
// runs with, and the process Command starts is the one that serves.
func TestSyncthingRunsPrepared(t *testing.T) {
	testenv.RequireIntegration(t)
	certFile, keyFile := nodeCert(t, "node-a")
	n := startNode(t, "node-a", certFile, keyFile)
	ctx := context.Background()

	want, _ := DeviceID(certFile, keyFile)
	if home, err := HomeDeviceID(n.setup.Home); err != nil || home != n.id || n.id != want {
		t.Fatalf("HomeDeviceID %q (%v), running MyID %q, node certificate %q: want all equal", home, err, n.id, want)
	}

	var cfg struct {
		Version int `json:"version"`
		Options struct {
			ListenAddresses       []string `json:"listenAddresses"`
			GlobalAnnounceEnabled bool     `json:"globalAnnounceEnabled"`
			LocalAnnounceEnabled  bool     `json:"localAnnounceEnabled"`
			RelaysEnabled         bool     `json:"relaysEnabled"`
			NATEnabled            bool     `json:"natEnabled"`
			StartBrowser          bool     `json:"startBrowser"`
			URAccepted            int      `json:"urAccepted"`
			AutoUpgradeIntervalH  int      `json:"autoUpgradeIntervalH"`
			CrashReportingEnabled bool     `json:"crashReportingEnabled"`
			ReconnectionIntervalS int      `json:"reconnectionIntervalS"`
		} `json:"options"`
		GUI struct {
			Address string `json:"address"`
			UseTLS  bool   `json:"useTLS"`
		} `json:"gui"`
		Folders []any `json:"folders"`
	}
	n.get(t, "/rest/config", &cfg)
	o := cfg.Options
	if !slices.Equal(o.ListenAddresses, []string{"tcp://" + n.setup.Listen}) {
		t.Errorf("listen addresses %q, want only tcp://%s", o.ListenAddresses, n.setup.Listen)
	}
	if o.GlobalAnnounceEnabled || o.LocalAnnounceEnabled || o.RelaysEnabled || o.NATEnabled || o.StartBrowser || o.CrashReportingEnabled {
		t.Errorf("discovery, relays, NAT, browser or crash reports on: %+v", o)
	}
	if o.URAccepted != -1 || o.AutoUpgradeIntervalH != 0 || o.ReconnectionIntervalS != reconnectIntervalS {
		t.Errorf("urAccepted %d autoUpgradeIntervalH %d reconnectionIntervalS %d, want -1 0 %d",
			o.URAccepted, o.AutoUpgradeIntervalH, o.ReconnectionIntervalS, reconnectIntervalS)
	}
	if cfg.GUI.Address != n.setup.APIAddress || cfg.GUI.UseTLS || len(cfg.Folders) != 0 {
		t.Errorf("gui %+v, folders %v; want plain HTTP on %s and no folder", cfg.GUI, cfg.Folders, n.setup.APIAddress)
	}
	// Syncthing archives a config.xml of another version as config.xml.vN
	// and saves it again migrated.
	if cfg.Version != configVersion {
		t.Errorf("syncthing runs config version %d, Prepare writes %d", cfg.Version, configVersion)
	}
	if archived, _ := filepath.Glob(filepath.Join(n.setup.Home, configName+".v*")); len(archived) > 0 {
		t.Errorf("syncthing migrated config.xml: %v", archived)
	}
	if _, err := n.client.FolderStatus(ctx, "nonexistent"); !errors.Is(err, ErrUnknownFolder) {
		t.Errorf("FolderStatus of an unknown folder = %v, want ErrUnknownFolder", err)
	}
	if err := n.client.Override(ctx, "nonexistent"); !errors.Is(err, ErrUnknownFolder) {
		t.Errorf("Override of an unknown folder = %v, want ErrUnknownFolder", err)
	}
	if err := NewClient(n.setup.APIAddress, "wrong").Ping(ctx); err == nil || !strings.Contains(err.Error(), "API key") {
		t.Errorf("Ping with a wrong key = %v, want an error about the API key", err)
	}

	// Devices and folders that Syncthing saved survive Prepare's rewrite
	// of config.xml and a restart.
	peer := Device{ID: idB, Name: "peer", Addresses: []string{"tcp://127.0.0.1:1"}}
	n.apply(t, []Device{peer}, true)

	// The PID the supervisor holds is Syncthing itself: once it is killed
	// the API is gone, and a new start from the same home (same ports, the
	// database lock) succeeds with the same key and identity.
	if err := n.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if err := n.client.Ping(ctx); err == nil {
			return errors.New("API still answers after the started process was killed: a child survived")
		}
		return nil
	})
	before := snapshot(t, n.setup.Home)
	if err := Prepare(n.setup); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, n.setup.Home)
	for _, name := range []string{certName, keyName, apiKeyName} {
		if before[name] != after[name] {
			t.Errorf("%s changed on Prepare of a used home", name)
		}
	}
	oldID := n.id
	n.start(t)
	if n.id != oldID {
		t.Errorf("device ID after restart %s, want %s", n.id, oldID)
	}
	devices, folders, err := n.client.Configured(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 1 || devices[0].ID != peer.ID || !slices.Equal(devices[0].Addresses, peer.Addresses) ||
		len(folders) != 1 || folders[0] != n.folder(true) {
		t.Errorf("after Prepare and a restart: devices %+v folders %+v, want the peer and the send-only folder", devices, folders)
	}
	saved := n.configMTime(t)
	n.apply(t, []Device{peer}, true)
	if !n.configMTime(t).Equal(saved) {
		t.Error("Apply after a restart saved the configuration again")
	}
}

// TestReplication: a folder send-only on A and receive-only on B follows
// every change on A; B's own changes are reverted; flipped roles sync the
// other way.
func TestReplication(t *testing.T) {
	testenv.RequireIntegration(t)
	certFile, keyFile := nodeCert(t, "node-a")
	a := startNode(t, "node-a", certFile, keyFile) // CN node-a, SAN syncthing
	b := startNode(t, "node-b", "", "")            // generated, CN syncthing
	ctx := context.Background()
	members := []Device{a.device(), b.device()} // each skips itself
	a.apply(t, members, true)
	b.apply(t, members, false)

	// Nothing is written when the configuration already matches.
	aSaved, bSaved := a.configMTime(t), b.configMTime(t)
	a.apply(t, members, true)
	b.apply(t, members, false)
	if !a.configMTime(t).Equal(aSaved) || !b.configMTime(t).Equal(bSaved) {
		t.Errorf("a second Apply with the same state saved the configuration")
	}
	devices, folders, err := b.client.Configured(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 1 || devices[0].ID != a.id || !slices.Equal(devices[0].Addresses, a.device().Addresses) ||
		len(folders) != 1 || folders[0] != b.folder(false) {
		t.Errorf("B configured %+v %+v, want A and the receive-only folder", devices, folders)
	}

	want := map[string]string{"hello.txt": "one", "sub/nested.txt": "nested"}
	a.write(t, "hello.txt", "one")
	a.write(t, "sub/nested.txt", "nested")
	t.Logf("created: on B after %v", waitSame(t, 30*time.Second, want, a, b)) // includes connecting

	// Owners travel with the files: the application that owns them on the
	// active owns the copies after a failover.
	if err := os.Lchown(filepath.Join(a.dir, "sub/nested.txt"), 4242, 4343); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testenv.Eventually(t, syncDeadline, func() error {
		fi, err := os.Stat(filepath.Join(b.dir, "sub/nested.txt"))
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 4242 || st.Gid != 4343 {
			return fmt.Errorf("B's copy is owned by %d:%d, want 4242:4343 as on A", st.Uid, st.Gid)
		}
		return nil
	})
	t.Logf("owner: on B after %v", time.Since(start))

	a.write(t, "hello.txt", "two, longer")
	want["hello.txt"] = "two, longer"
	t.Logf("changed: on B after %v", waitSame(t, syncDeadline, want, a, b))

	if err := os.Rename(filepath.Join(a.dir, "hello.txt"), filepath.Join(a.dir, "renamed.txt")); err != nil {
		t.Fatal(err)
	}
	want["renamed.txt"] = want["hello.txt"]
	delete(want, "hello.txt")
	t.Logf("renamed: on B after %v", waitSame(t, syncDeadline, want, a, b))

	if err := os.Remove(filepath.Join(a.dir, "renamed.txt")); err != nil {
		t.Fatal(err)
	}
	delete(want, "renamed.txt")
	t.Logf("deleted: on B after %v", waitSame(t, syncDeadline, want, a, b))

	// A standby's own writes are local changes, and Revert undoes them.
	b.write(t, "local.txt", "written on the standby")
	b.write(t, "sub/nested.txt", "changed on the standby")
	start = time.Now()
	testenv.Eventually(t, syncDeadline, func() error {
		st, err := b.client.FolderStatus(ctx, folderID)
		if err != nil || st.ReceiveOnlyChangedItems < 2 {
			return fmt.Errorf("B status %+v %v, want 2 receive-only changed items", st, err)
		}
		return nil
	})
	t.Logf("local changes on B seen after %v", time.Since(start))
	if err := b.client.Override(ctx, folderID); err == nil {
		t.Error("Override of a receive-only folder succeeded")
	}
	if err := b.client.Revert(ctx, folderID); err != nil {
		t.Fatal(err)
	}
	t.Logf("reverted: B as A after %v", waitSame(t, syncDeadline, want, a, b))
	// Syncthing reverts only what it has scanned; Revert scans first, so a
	// file written just before goes too.
	b.write(t, "late.txt", "written just before the revert")
	if err := b.client.Revert(ctx, folderID); err != nil {
		t.Fatal(err)
	}
	t.Logf("reverted a file written just before: after %v", waitSame(t, syncDeadline, want, a, b))
	testenv.Eventually(t, syncDeadline, func() error {
		st, err := b.client.FolderStatus(ctx, folderID)
		if err != nil || st.ReceiveOnlyChangedItems != 0 || st.NeedItems != 0 || st.State != "idle" {
			return fmt.Errorf("B status %+v %v, want idle with nothing changed or needed", st, err)
		}
		return nil
	})

	// Role change: A becomes the standby, B the active.
	if err := a.client.SetFolderTypes(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := b.client.SetFolderTypes(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Override(ctx, folderID); err != nil {
		t.Fatal(err)
	}
	bSaved = b.configMTime(t)
	if err := b.client.SetFolderTypes(ctx, true); err != nil {
		t.Fatal(err)
	}
	if !b.configMTime(t).Equal(bSaved) {
		t.Error("SetFolderTypes to the types the folders have saved the configuration")
	}
	if err := a.client.Revert(ctx, folderID); err != nil {
		t.Fatalf("Revert on the new standby: %v", err)
	}
	b.write(t, "from-b.txt", "written on the new active")
	want["from-b.txt"] = "written on the new active"
	t.Logf("flipped: B's file on A after %v", waitSame(t, syncDeadline, want, a, b))
	if _, folders, err := a.client.Configured(ctx); err != nil || len(folders) != 1 || folders[0].SendOnly {
		t.Errorf("A configured folders %+v %v, want the one receive-only", folders, err)
	}
}

// TestApplyRemovesDevice: a device left out of Apply is removed from
// Syncthing's devices and from every folder, and is refused from then on.
// Every remaining member leaves it out, as when a node is removed from the
// cluster: Syncthing is a mesh, and a standby that still shared with it
// would pass the active's files on.
func TestApplyRemovesDevice(t *testing.T) {
	testenv.RequireIntegration(t)
	a := startNode(t, "node-a", "", "")
	b := startNode(t, "node-b", "", "")
	c := startNode(t, "node-c", "", "")
	all := []Device{a.device(), b.device(), c.device()}
	a.apply(t, all, true)
	b.apply(t, all, false)
	c.apply(t, all, false)
	a.write(t, "one.txt", "1")
	want := map[string]string{"one.txt": "1"}
	t.Logf("on B and C after %v", waitSame(t, 30*time.Second, want, a, b, c))

	remaining := []Device{a.device(), b.device()}
	a.apply(t, remaining, true)
	b.apply(t, remaining, false)
	devices, _, err := a.client.Configured(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 1 || devices[0].ID != b.id {
		t.Errorf("A's devices after removing C: %+v, want B only", devices)
	}
	var raw []struct {
		DeviceID string `json:"deviceID"`
	}
	a.get(t, "/rest/config/devices", &raw)
	var ids []string
	for _, d := range raw {
		ids = append(ids, d.DeviceID)
	}
	if slices.Sort(ids); !slices.Equal(ids, sorted(a.id, b.id)) {
		t.Errorf("/rest/config/devices on A: %v, want A and B", ids)
	}
	var folder folderJSON
	a.get(t, "/rest/config/folders/"+folderID, &folder)
	var shared []string
	for _, d := range folder.Devices {
		shared = append(shared, d.DeviceID)
	}
	if slices.Sort(shared); !slices.Equal(shared, sorted(a.id, b.id)) {
		t.Errorf("folder on A shared with %v, want A and B", shared)
	}

	start := time.Now()
	testenv.Eventually(t, syncDeadline, func() error {
		var conns struct {
			Connections map[string]struct {
				Connected bool `json:"connected"`
			} `json:"connections"`
		}
		c.get(t, "/rest/system/connections", &conns)
		for _, n := range []*stNode{a, b} {
			if conns.Connections[n.id].Connected {
				return fmt.Errorf("C is still connected to %s", n.name)
			}
		}
		return nil
	})
	t.Logf("C disconnected after %v", time.Since(start))
	a.write(t, "two.txt", "2")
	want["two.txt"] = "2"
	t.Logf("on B after %v", waitSame(t, syncDeadline, want, a, b))
	if got, _ := tree(c.dir); got["two.txt"] != "" {
		t.Errorf("C, removed from A and B, still got A's new file: %q", got)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
