package haproxycfg_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/haproxycfg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func threeNodes() []haproxycfg.Node {
	return []haproxycfg.Node{
		{Name: "mgr-1", Address: "10.0.0.5", PostgresPort: 5432, APIPort: 8008},
		{Name: "mgr-2", Address: "10.0.0.6", PostgresPort: 5432, APIPort: 8008},
		{Name: "mgr-3", Address: "10.0.0.7", PostgresPort: 5432, APIPort: 8008},
	}
}

// goldenCases are rendered by TestRenderGolden and checked by HAProxy
// itself in TestHAProxyAcceptsRendered.
func goldenCases() []struct {
	name string
	cfg  haproxycfg.Config
} {
	return []struct {
		name string
		cfg  haproxycfg.Config
	}{
		{"postgres", haproxycfg.Config{
			Cluster: "prod", Source: "profile prod", PostgresBind: ":5432",
			CAFile: "/etc/haproxy/understudy-ca.pem", Nodes: threeNodes(), Checks: haproxycfg.DefaultChecks(),
		}},
		{"with-app", haproxycfg.Config{
			Cluster: "prod", PostgresBind: "10.0.0.2:5432", App: &haproxycfg.App{Bind: "10.0.0.2:443", Port: 8443},
			CAFile: "/etc/haproxy/understudy-ca.pem", MaxConn: 200,
			Nodes: []haproxycfg.Node{
				{Name: "a", Address: "10.0.0.5", PostgresPort: 5433, APIAddress: "10.1.0.5", APIPort: 9008},
				{Name: "b", Address: "fd00::6", PostgresPort: 5432, APIPort: 8008},
			},
			Checks: haproxycfg.DefaultChecks(),
		}},
		{"plain-http", haproxycfg.Config{
			PostgresBind: "127.0.0.1:6432", Nodes: threeNodes()[:1], Checks: haproxycfg.DefaultChecks(),
		}},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := haproxycfg.Render(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join("testdata", tc.name+".cfg")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v; write it with: go test ./internal/haproxycfg -run TestRenderGolden -update", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (rewrite it with -update if the change is meant):\n%s", file, got)
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	good := func() haproxycfg.Config {
		return haproxycfg.Config{PostgresBind: ":5432", CAFile: "/ca.pem", Nodes: threeNodes(), Checks: haproxycfg.DefaultChecks()}
	}
	tests := []struct {
		name   string
		change func(*haproxycfg.Config)
		want   string
	}{
		{"no nodes", func(c *haproxycfg.Config) { c.Nodes = nil }, "no nodes"},
		{"bind without port", func(c *haproxycfg.Config) { c.PostgresBind = "10.0.0.2" }, "write ADDR:PORT"},
		{"bind port out of range", func(c *haproxycfg.Config) { c.PostgresBind = ":70000" }, "not from 1 to 65535"},
		{"app without port", func(c *haproxycfg.Config) { c.App = &haproxycfg.App{Bind: ":443"} }, "application's port"},
		{"app without bind", func(c *haproxycfg.Config) { c.App = &haproxycfg.App{Port: 443} }, "application frontend's address"},
		{"CA path with a space", func(c *haproxycfg.Config) { c.CAFile = "/my ca.pem" }, "plain path"},
		{"node named twice", func(c *haproxycfg.Config) { c.Nodes[1].Name = c.Nodes[0].Name }, "named twice"},
		{"node name with a space", func(c *haproxycfg.Config) { c.Nodes[0].Name = "mgr 1" }, "server name"},
		{"node without address", func(c *haproxycfg.Config) { c.Nodes[0].Address = "" }, "not a host name"},
		{"node without API port", func(c *haproxycfg.Config) { c.Nodes[0].APIPort = 0 }, "API port 0"},
		{"no check timings", func(c *haproxycfg.Config) { c.Checks = haproxycfg.Checks{} }, "start from ChecksFor"},
		{"microseconds", func(c *haproxycfg.Config) { c.Checks.Inter = 1500 * time.Microsecond }, "finer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.change(&c)
			_, err := haproxycfg.Render(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestChecksFor holds the derivation to what the README promises, for the
// default timing and the extremes config.Validate allows.
func TestChecksFor(t *testing.T) {
	def := haproxycfg.DefaultChecks()
	want := haproxycfg.Checks{Inter: 500 * time.Millisecond, FastInter: 250 * time.Millisecond, DownInter: 500 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 1}
	if def != want {
		t.Errorf("DefaultChecks = %+v, want %+v (the README's HAProxy section states these)", def, want)
	}
	if def.MarkedDown() != 750*time.Millisecond || def.Silent() != 2750*time.Millisecond || def.MarkedUp() != 500*time.Millisecond {
		t.Errorf("default bounds: down %s, silent %s, up %s; the README states 750ms, 2.75s, 500ms", def.MarkedDown(), def.Silent(), def.MarkedUp())
	}
	fencings := map[string]func(*config.Config){
		"default":             func(*config.Config) {},
		"shortest lock delay": func(c *config.Config) { c.Consul.LockDelay = 800 * time.Millisecond },
		"shortest lease":      func(c *config.Config) { c.Consul.LeaderLease = config.MinLeaderLease },
		"long lease and lock delay": func(c *config.Config) {
			c.Consul.LeaderLease, c.Consul.LockDelay, c.Consul.SessionTTL = 8*time.Second, 5*time.Second, 15*time.Second
		},
	}
	for name, change := range fencings {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			change(cfg)
			f := cfg.Fencing()
			c := haproxycfg.ChecksFor(f)
			if c.Fall < 2 {
				t.Errorf("fall %d: one lost check would cut every session of a healthy active", c.Fall)
			}
			// A demoted node answers 400 at once; it must be down, with an
			// answer's time (a FastInter) to spare, before the lock delay.
			if c.MarkedDown()+c.FastInter > f.LockDelay && c.Inter > 100*time.Millisecond {
				t.Errorf("a demoted node is down in HAProxy %s after its first 400; lock delay %s", c.MarkedDown(), f.LockDelay)
			}
			// A node that stops answering must be down before another may
			// promote without its word.
			if c.Silent()+f.Margin > f.Takeover() {
				t.Errorf("a silent node is down in HAProxy %s after its last answer; a new active may promote after %s", c.Silent(), f.Takeover())
			}
			if c.MarkedUp() > time.Second {
				t.Errorf("a new active waits %s to be up in HAProxy", c.MarkedUp())
			}
		})
	}
}
