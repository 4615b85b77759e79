package handlerrunner_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestChecksAnswerEveryMethod: the load balancer's checks of a real cluster
// answer HEAD and OPTIONS with GET's status and no body, / answers as
// /status, and a real HAProxy with a bare "option httpchk" (which sends
// OPTIONS /) marks the active up and the standbys down.
func TestChecksAnswerEveryMethod(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	act := c.waitHealthy(startTimeout)

	for _, n := range c.nodes {
		want := map[string]int{"/status": http.StatusBadRequest, "/": http.StatusBadRequest, "/replica": http.StatusOK, "/health": http.StatusOK}
		if n == act {
			want["/status"], want["/"], want["/replica"] = http.StatusOK, http.StatusOK, http.StatusServiceUnavailable
		}
		for path, code := range want {
			for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
				// A standby's /replica depends on its lag at the moment:
				// each method is asked until it answers as the node is.
				testenv.Eventually(t, 5*time.Second, func() error {
					got, body, err := callURL(m, n.apiURL()+path)
					if err != nil {
						return err
					}
					if got != code || (m != http.MethodGet) != (len(body) == 0) {
						return fmt.Errorf("%s %s on %s: %d with %d bytes, want %d (a body for GET only)", m, path, n.name, got, len(body), code)
					}
					return nil
				})
			}
		}
	}

	// HAProxy, with nothing but "option httpchk": OPTIONS / HTTP/1.0.
	dir := t.TempDir()
	sock := filepath.Join(dir, "haproxy.sock")
	var servers strings.Builder
	for _, n := range c.nodes {
		u, err := url.Parse(n.apiURL())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&servers, "    server %s %s check port %s\n", n.name, net.JoinHostPort(n.addr, strconv.Itoa(n.cfg.Postgres.Port)), u.Port())
	}
	text := fmt.Sprintf(`global
    stats socket %s mode 600 level user
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    default-server inter 300ms fall 2 rise 1
listen postgres
    bind 127.0.0.1:%d
    option httpchk
%s`, sock, testenv.FreePort(t), servers.String())
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, "haproxy", exec.Command(testenv.HAProxyBinary(t), "-db", "-f", file))
	testenv.Eventually(t, 10*time.Second, func() error {
		st, err := serverStates(sock)
		if err != nil {
			return err
		}
		for _, n := range c.nodes {
			want := "DOWN"
			if n == act {
				want = "UP"
			}
			if st[n.name] != want {
				return fmt.Errorf("HAProxy has %s %s, want %s (all: %v)", n.name, st[n.name], want, st)
			}
		}
		return nil
	})
}

// callURL makes one request and returns its status and body.
func callURL(method, u string) (int, []byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// serverStates asks HAProxy's stats socket for each server's status (UP,
// DOWN, ...) in the postgres proxy.
func serverStates(sock string) (map[string]string, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	col := -1
	out := map[string]string{}
	for sc.Scan() {
		f := strings.Split(strings.TrimPrefix(sc.Text(), "# "), ",")
		if col < 0 {
			for i, name := range f {
				if name == "status" {
					col = i
				}
			}
			continue
		}
		if len(f) > col && f[0] == "postgres" && f[1] != "FRONTEND" && f[1] != "BACKEND" {
			// "DOWN 1/2" while a state is changing: the word is enough.
			out[f[1]] = strings.Fields(f[col])[0]
		}
	}
	if col < 0 {
		return nil, fmt.Errorf("no header in HAProxy's show stat: %v", sc.Err())
	}
	return out, nil
}

// TestNodesListAndClusterLogFollowASwitchover: nodes list's LAST CHANGE is
// the node's last role change, not its heartbeat: after a switchover the
// two nodes that swapped roles show a change after it, the third standby
// keeps its own; every standby names the active as its upstream; and each
// node's cluster.log has a line for each of its role transitions.
func TestNodesListAndClusterLogFollowASwitchover(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	old := c.waitHealthy(startTimeout)
	type row struct {
		Name        string     `json:"name"`
		Upstream    string     `json:"upstream"`
		RoleChanged *time.Time `json:"role_changed"`
		LastChange  string     `json:"last_change"`
		Heartbeat   time.Time  `json:"heartbeat"`
	}
	// list waits until every standby names act as its upstream and every
	// node shows a role change.
	list := func(act *tnode) map[string]row {
		var rows map[string]row
		testenv.Eventually(t, 20*time.Second, func() error {
			out, err := c.cli(t, "cluster", "nodes", "list", "-o", "json")
			if err != nil {
				return fmt.Errorf("nodes list: %v\n%s", err, out)
			}
			var list []row
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				return fmt.Errorf("nodes list -o json: %v\n%s", err, out)
			}
			rows = map[string]row{}
			for _, r := range list {
				rows[r.Name] = r
			}
			for _, n := range c.nodes {
				r := rows[n.name]
				want := act.name
				if n == act {
					want = ""
				}
				if r.Upstream != want || r.RoleChanged == nil || r.LastChange == "-" {
					return fmt.Errorf("%s: upstream %q, role changed %v (%q), want upstream %q and a role change; all: %+v", n.name, r.Upstream, r.RoleChanged, r.LastChange, want, rows)
				}
			}
			return nil
		})
		return rows
	}
	before := list(old)
	var target, third *tnode
	for _, n := range c.nodes {
		switch {
		case n == old:
		case target == nil:
			target = n
		default:
			third = n
		}
	}
	start := time.Now()
	switchover(t, old, target.name, http.StatusOK)
	c.waitHealthy(rejoinTimeout)
	after := list(target)
	for _, n := range []*tnode{old, target} {
		if r := after[n.name]; !r.RoleChanged.After(start) {
			t.Errorf("%s changed role in the switchover at %v, but nodes list says it last changed at %v", n.name, start, r.RoleChanged)
		}
	}
	if b, a := before[third.name], after[third.name]; !a.RoleChanged.Equal(*b.RoleChanged) || !a.Heartbeat.After(b.Heartbeat) {
		t.Errorf("%s stayed a standby: role changed %v then %v (want the same), heartbeat %v then %v (want newer)", third.name, b.RoleChanged, a.RoleChanged, b.Heartbeat, a.Heartbeat)
	}

	// cluster.log (logging.dir) of each node: its daemon's start and its
	// role transitions, a line each, with the time, the node and the kind.
	for n, want := range map[*tnode][]string{
		old:    {" " + old.name + " transition - -> rejoining: handler-runner starting", " " + old.name + " transition candidate -> active: ", " " + old.name + " transition active -> demoting: ", " " + old.name + " transition demoting -> "},
		target: {" " + target.name + " transition - -> rejoining: ", " " + target.name + " transition standby -> candidate: ", " " + target.name + " transition candidate -> active: "},
		third:  {" " + third.name + " transition rejoining -> standby: "},
	} {
		testenv.Eventually(t, 10*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(n.cfg.Logging.Dir, "cluster.log"))
			if err != nil {
				return err
			}
			for _, w := range want {
				if !strings.Contains(string(b), w) {
					return fmt.Errorf("cluster.log of %s has no line with %q:\n%s", n.name, w, b)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", strings.Fields(line)[0]); err != nil {
					return fmt.Errorf("cluster.log of %s: line %q does not start with the time: %v", n.name, line, err)
				}
			}
			return nil
		})
	}
}

// TestProfileUpdate: profile update asks the profile's nodes for the
// cluster's members and stores their API addresses, keeping the profile's
// credentials: a stale address goes, the members it lacked are added, and a
// second run changes nothing.
func TestProfileUpdate(t *testing.T) {
	parallelSafe(t)
	c := newCluster(t, nil)
	c.waitHealthy(startTimeout)
	dir := t.TempDir()
	profiles := filepath.Join(dir, "profiles.json")
	auth := filepath.Join(dir, "auth")
	if err := os.WriteFile(auth, []byte("ops:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(c.bin, args...)
		cmd.Env = append(os.Environ(), "UNDERSTUDY_PROFILES="+profiles)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("understudy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	const stale = "http://127.0.0.1:1"
	run("profile", "add", "t", "--nodes", stale+","+c.nodes[0].apiURL(), "--basic-auth-file", auth)
	out := run("profile", "update", "t")
	t.Logf("profile update t:\n%s", out)
	want := []string{"profile t updated:", "  - " + stale}
	for _, n := range c.nodes[1:] {
		want = append(want, "  + "+n.apiURL())
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("profile update says\n%s\nwithout %q", out, w)
		}
	}
	var list []struct {
		Name          string   `json:"name"`
		Nodes         []string `json:"nodes"`
		BasicAuthFile string   `json:"basic_auth_file"`
	}
	if err := json.Unmarshal([]byte(run("profile", "list", "-o", "json")), &list); err != nil || len(list) != 1 {
		t.Fatalf("profile list: %v %+v", err, list)
	}
	wantNodes := []string{c.nodes[0].apiURL(), c.nodes[1].apiURL(), c.nodes[2].apiURL()}
	if p := list[0]; strings.Join(p.Nodes, " ") != strings.Join(wantNodes, " ") || p.BasicAuthFile != auth {
		t.Fatalf("profile after update: %+v, want nodes %v and the basic auth file kept", p, wantNodes)
	}
	if out := run("profile", "update", "t"); !strings.HasPrefix(out, "profile t unchanged: ") {
		t.Fatalf("second update: %s", out)
	}
}
