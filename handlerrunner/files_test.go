package handlerrunner_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/replication/files"
)

// syncWithin is the bound the issue sets for a change on the active to be
// on every standby.
const syncWithin = 10 * time.Second

// filesCluster is a test cluster whose nodes mirror one files block,
// "shared", each in a directory of its own.
func filesCluster(t *testing.T) (*tcluster, map[*tnode]string) {
	t.Helper()
	var dirs []string
	c := newCluster(t, func(i int) extraHCL {
		dir := testenv.TempDir(t, fmt.Sprintf("shared%d", i+1))
		dirs = append(dirs, dir)
		return extraHCL{blocks: fmt.Sprintf(`syncthing {
  port     = %d
  api_port = %d
}
files "shared" { path = %q }`, testenv.FreePort(t), testenv.FreePort(t), dir)}
	})
	shared := map[*tnode]string{}
	for i, n := range c.nodes {
		shared[n] = dirs[i]
	}
	return c, shared
}

// tree is every regular file under dir by its path, with a hash of its
// content; Syncthing's own marker and temporary files are left out.
func tree(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if strings.HasPrefix(name, ".st") || strings.HasPrefix(name, ".syncthing.") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, path)
		out[rel] = hex.EncodeToString(sum[:8])
		return nil
	})
	return out, err
}

// sameTrees waits until each of the others holds exactly what src holds.
func sameTrees(t *testing.T, what string, within time.Duration, src string, others ...string) {
	t.Helper()
	start := time.Now()
	testenv.Eventually(t, within, func() error {
		want, err := tree(src)
		if err != nil {
			return err
		}
		for _, dir := range others {
			got, err := tree(dir)
			if err != nil {
				return err
			}
			if !maps.Equal(got, want) {
				return fmt.Errorf("%s: %s holds %v, the active's %s holds %v", what, dir, got, src, want)
			}
		}
		return nil
	})
	t.Logf("%s: on every standby after %v", what, time.Since(start).Round(10*time.Millisecond))
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *tcluster) others(n *tnode) []*tnode {
	var out []*tnode
	for _, m := range c.nodes {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

func dirsOf(shared map[*tnode]string, ns []*tnode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, shared[n])
	}
	return out
}

// TestFilesMirrorTheActive: what the active writes is on every standby
// within 10 s (created, changed, renamed, deleted); a file written on a
// standby is put back to the active's version and recorded; after a
// failover the new active's files reach the others, the old active too once
// it is back; a removed node's device leaves the others' Syncthing.
func TestFilesMirrorTheActive(t *testing.T) {
	c, shared := filesCluster(t)
	c.sample()
	act := c.waitHealthy(startTimeout)
	act.exec(t, "create table rows (id int primary key)") // waitWritable writes there
	standbys := dirsOf(shared, c.others(act))

	// The devices find each other once the member records carry their IDs.
	write(t, filepath.Join(shared[act], "hello.txt"), "hello from "+act.name)
	sameTrees(t, "first file", 90*time.Second, shared[act], standbys...)

	write(t, filepath.Join(shared[act], "docs", "a.txt"), "version 1")
	sameTrees(t, "created", syncWithin, shared[act], standbys...)
	write(t, filepath.Join(shared[act], "docs", "a.txt"), "version 2, longer than the first")
	sameTrees(t, "changed", syncWithin, shared[act], standbys...)
	if err := os.Rename(filepath.Join(shared[act], "docs", "a.txt"), filepath.Join(shared[act], "docs", "b.txt")); err != nil {
		t.Fatal(err)
	}
	sameTrees(t, "renamed", syncWithin, shared[act], standbys...)
	if err := os.Remove(filepath.Join(shared[act], "hello.txt")); err != nil {
		t.Fatal(err)
	}
	sameTrees(t, "deleted", syncWithin, shared[act], standbys...)

	// A standby's own writes do not spread: they are reverted, and the
	// history says so.
	sb := c.others(act)[0]
	write(t, filepath.Join(shared[sb], "docs", "b.txt"), "written on the standby")
	write(t, filepath.Join(shared[sb], "stray.txt"), "only on the standby")
	sameTrees(t, "standby's change reverted", 30*time.Second, shared[act], shared[sb])
	if got, _ := tree(shared[act]); got["stray.txt"] != "" {
		t.Fatalf("a file written on standby %s reached the active: %v", sb.name, got)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		evs := act.events(t)
		for _, e := range evs {
			if e.Kind == cluster.EventFiles && e.Node == sb.name {
				return nil
			}
		}
		return fmt.Errorf("no %q event from %s in %d events", cluster.EventFiles, sb.name, len(evs))
	})

	// Failover: the new active's files reach the other standby, and the
	// old active once it is back.
	old := act
	c.killNode(old)
	act, _ = c.waitWritable(old, time.Now(), nodeKillBound)
	write(t, filepath.Join(shared[act], "after-failover.txt"), "written on "+act.name)
	var rest []*tnode
	for _, n := range c.others(act) {
		if n != old {
			rest = append(rest, n)
		}
	}
	sameTrees(t, "written on the new active", syncWithin, shared[act], dirsOf(shared, rest)...)
	old.consul.Start(t)
	c.startDaemons(old)
	c.waitHealthy(rejoinTimeout)
	sameTrees(t, "on the old active, back as a standby", 60*time.Second, shared[act], shared[old])

	// Removing a node removes its device from the others' Syncthing. The
	// node that came back must vote in Consul again (autopilot promotes it
	// after about 10 s) before a second node goes, or the quorum goes too.
	testenv.Eventually(t, 60*time.Second, func() error {
		rc, err := act.consul.Client(t).Operator().RaftGetConfiguration(nil)
		if err != nil {
			return err
		}
		for _, s := range rc.Servers {
			if !s.Voter {
				return fmt.Errorf("consul server %s is not a voter yet", s.Node)
			}
		}
		if len(rc.Servers) != 3 {
			return fmt.Errorf("%d consul servers, want 3", len(rc.Servers))
		}
		return nil
	})
	gone := rest[0]
	goneID, err := files.HomeDeviceID(gone.cfg.SyncthingHome())
	if err != nil {
		t.Fatal(err)
	}
	c.killNode(gone)
	c.waitHealthy(30*time.Second, gone)
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := c.cli(t, "cluster", "nodes", "remove", gone.name)
		if err != nil {
			return fmt.Errorf("nodes remove %s: %v: %s", gone.name, err, out)
		}
		return nil
	})
	for _, n := range []*tnode{act, old} {
		testenv.Eventually(t, 30*time.Second, func() error {
			st, err := files.Open(n.cfg.SyncthingHome(), n.cfg.SyncthingAPI())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			devs, _, err := st.Configured(ctx)
			if err != nil {
				return err
			}
			ids := make([]string, 0, len(devs))
			for _, d := range devs {
				ids = append(ids, d.ID)
			}
			if slices.Contains(ids, goneID) {
				return fmt.Errorf("%s's syncthing still has the device of removed %s (%s): %v", n.name, gone.name, goneID, ids)
			}
			return nil
		})
	}
	write(t, filepath.Join(shared[act], "after-remove.txt"), "two nodes")
	sameTrees(t, "with two nodes", syncWithin, shared[act], shared[old])
}
