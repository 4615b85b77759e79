package checkrunner

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/replication/files"
	"github.com/understudy-ha/understudy/replication/postgres"
)

func primaryState() postgres.State {
	return postgres.State{ServerVersion: "15.18", Timeline: 2, WriteLSN: 0x3000000}
}

func standbyState(host string, port int, status string) postgres.State {
	return postgres.State{InRecovery: true, ServerVersion: "15.18", Timeline: 2, ReplayLSN: 0x2000000,
		Receiver: &postgres.Receiver{Status: status, SenderHost: host, SenderPort: port}}
}

func leaderIs(node string) *cluster.Leader { return &cluster.Leader{Node: node} }

var leaderA = &cluster.Member{Name: "a", Address: "127.0.0.11", PostgresPort: 5432, WriteLSN: 0x3000000}

func TestCheckRole(t *testing.T) {
	tests := []struct {
		name       string
		o          observation
		wantStatus string
		wantOutput string
	}{
		{"active primary passes",
			observation{self: "a", state: primaryState(), leader: leaderIs("a")},
			consul.Passing, "primary on timeline 2"},
		{"active in recovery fails",
			observation{self: "a", state: standbyState("x", 1, "streaming"), leader: leaderIs("a")},
			consul.Critical, "should be the primary"},
		{"standby streaming from the active passes with lag",
			observation{self: "b", state: standbyState("127.0.0.11", 5432, "streaming"), leader: leaderIs("a"), leaderMember: leaderA},
			consul.Passing, "lag 16777216 bytes"},
		{"standby streaming from another node fails",
			observation{self: "b", state: standbyState("127.0.0.13", 5432, "streaming"), leader: leaderIs("a"), leaderMember: leaderA},
			consul.Critical, "streams from 127.0.0.13:5432, but the active node a is at 127.0.0.11:5432"},
		{"standby on the right host but another port fails",
			observation{self: "b", state: standbyState("127.0.0.11", 5433, "streaming"), leader: leaderIs("a"), leaderMember: leaderA},
			consul.Critical, "must follow the active node"},
		{"standby not streaming fails",
			observation{self: "b", state: standbyState("127.0.0.11", 5432, "waiting"), leader: leaderIs("a"), leaderMember: leaderA},
			consul.Critical, `"waiting"`},
		{"standby without a WAL receiver fails",
			observation{self: "b", state: postgres.State{InRecovery: true}, leader: leaderIs("a"), leaderMember: leaderA},
			consul.Critical, "not receiving WAL"},
		{"a second primary fails",
			observation{self: "b", state: primaryState(), leader: leaderIs("a"), leaderMember: leaderA},
			consul.Critical, "a is the active node"},
		{"no leader warns",
			observation{self: "b", state: primaryState()},
			consul.Warning, "no node holds the leader key"},
		{"leader key unreadable warns",
			observation{self: "b", state: primaryState(), leaderErr: errors.New("no cluster leader")},
			consul.Warning, "no cluster leader"},
		{"leader without member record warns",
			observation{self: "b", state: standbyState("127.0.0.11", 5432, "streaming"), leader: leaderIs("a")},
			consul.Warning, "no member record"},
		{"postgres down fails",
			observation{self: "a", pingErr: errors.New("connection refused"), leader: leaderIs("a")},
			consul.Critical, "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkRole(&tc.o)
			if got.Status != tc.wantStatus || !strings.Contains(got.Output, tc.wantOutput) {
				t.Fatalf("checkRole = %s %q, want %s containing %q", got.Status, got.Output, tc.wantStatus, tc.wantOutput)
			}
		})
	}
}

func TestCheckServices(t *testing.T) {
	web := serviceState{name: "web", running: true, detail: "unit active"}
	worker := func(running bool) serviceState {
		return serviceState{name: "worker", activeOnly: true, running: running, detail: "status command exited 3"}
	}
	tests := []struct {
		name       string
		o          observation
		wantStatus string
		wantOutput string
	}{
		{"nothing configured", observation{self: "a"}, consul.Passing, "no services configured"},
		{"active runs all", observation{self: "a", leader: leaderIs("a"), services: []serviceState{web, worker(true)}}, consul.Passing, "web, worker"},
		{"active missing an active-only service", observation{self: "a", leader: leaderIs("a"), services: []serviceState{web, worker(false)}}, consul.Critical, "worker (status command exited 3)"},
		{"standby need not run active-only", observation{self: "b", leader: leaderIs("a"), services: []serviceState{web, worker(false)}}, consul.Passing, "standby node should: web"},
		{"standby running an active-only service warns", observation{self: "b", leader: leaderIs("a"), services: []serviceState{web, worker(true)}}, consul.Warning, "worker"},
		{"a status error fails", observation{self: "b", services: []serviceState{{name: "web", err: errors.New("no D-Bus")}}}, consul.Critical, "no D-Bus"},
		{"role unknown warns", observation{self: "b", servicesErr: errors.New("consul down")}, consul.Warning, "consul down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkServices(&tc.o)
			if got.Status != tc.wantStatus || !strings.Contains(got.Output, tc.wantOutput) {
				t.Fatalf("checkServices = %s %q, want %s containing %q", got.Status, got.Output, tc.wantStatus, tc.wantOutput)
			}
		})
	}
}

func TestCheckConsulAndPostgres(t *testing.T) {
	o := observation{pgAddr: "127.0.0.1:5432", dialErr: errors.New("refused"), pingErr: errors.New("refused")}
	if r := checkListening(&o); r.Status != consul.Critical || !strings.Contains(r.Output, "127.0.0.1:5432") {
		t.Errorf("listening with postgres down = %+v", r)
	}
	if r := checkQuery(&o); r.Status != consul.Critical {
		t.Errorf("query with postgres down = %+v", r)
	}
	if r := checkConsul(&observation{agent: consul.AgentInfo{NodeName: "n"}}); r.Status != consul.Critical || !strings.Contains(r.Output, "no leader") {
		t.Errorf("consul without a leader = %+v", r)
	}
	if r := checkConsul(&observation{agent: consul.AgentInfo{NodeName: "n", Leader: "127.0.0.1:8300"}}); r.Status != consul.Passing {
		t.Errorf("healthy consul = %+v", r)
	}
}

func TestTTLCoversAProbeThatTakesItsWholeTimeout(t *testing.T) {
	for _, interval := range []time.Duration{100 * time.Millisecond, time.Second, 10 * time.Second} {
		for _, mult := range []int{1, 3} {
			ttl := TTL(interval, mult, interval)
			// Worst case between two updates: a round that ended at once,
			// then the next tick, then a probe that used all its time.
			worst := interval*time.Duration(mult) + ProbeTimeout(interval)
			if ttl <= worst {
				t.Errorf("interval %v x%d: TTL %v does not cover %v", interval, mult, ttl, worst)
			}
		}
	}
}

func TestCheckCertificates(t *testing.T) {
	day := 24 * time.Hour
	cert := func(name string, in time.Duration, err error) certState {
		return certState{name: name, path: "/x/" + name, expiresIn: in, err: err}
	}
	tests := []struct {
		name   string
		certs  []certState
		status string
		says   string
	}{
		{"no TLS", nil, consul.Passing, "not set up by cluster start or join"},
		{"both valid", []certState{cert("node certificate", 700*day, nil), cert("cluster CA", 3000*day, nil)}, consul.Passing, "node certificate valid for 700 days"},
		{"node certificate in 10 days", []certState{cert("node certificate", 10*day, nil), cert("cluster CA", 3000*day, nil)}, consul.Warning, "expires in 10 days; renew it"},
		{"CA expired", []certState{cert("node certificate", 10*day, nil), cert("cluster CA", -time.Hour, nil)}, consul.Critical, "cluster CA /x/cluster CA has expired"},
		{"unreadable", []certState{cert("node certificate", 0, errors.New("permission denied"))}, consul.Critical, "cannot be read: permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := checkCertificates(&observation{certs: tc.certs})
			if r.Status != tc.status || !strings.Contains(r.Output, tc.says) {
				t.Fatalf("checkCertificates = %s %q, want %s saying %q", r.Status, r.Output, tc.status, tc.says)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	shared := config.Files{Name: "shared", Path: "/srv/shared", MaxOutOfSync: 1000, Settle: time.Minute}
	folder := func(st files.FolderStatus, behindFor time.Duration) []folderObs {
		return []folderObs{{cfg: shared, st: st, behindFor: behindFor}}
	}
	tests := []struct {
		name       string
		o          observation
		wantStatus string
		wantOutput string
	}{
		{"no files blocks pass",
			observation{self: "b"}, consul.Passing, "nothing mirrored"},
		{"syncthing down fails",
			observation{self: "b", filesErr: errors.New("syncthing does not answer at 127.0.0.1:8384")}, consul.Critical, "does not answer"},
		{"standby in sync passes",
			observation{self: "b", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "idle"}, 0)}, consul.Passing, "shared idle, in sync"},
		{"standby a little behind passes",
			observation{self: "b", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "syncing", NeedBytes: 5000}, 0)}, consul.Passing, "5000 bytes to receive"},
		{"standby behind within settle passes",
			observation{self: "b", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "syncing", NeedBytes: 5000, NeedItems: 2}, 30*time.Second)}, consul.Passing, "shared syncing"},
		{"standby behind past settle warns",
			observation{self: "b", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "syncing", NeedBytes: 5000, NeedItems: 2}, 90*time.Second)},
			consul.Warning, "shared: 5000 bytes (2 files) behind the active for 1m30s, more than max_out_of_sync 1000"},
		{"standby with local changes warns",
			observation{self: "b", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "idle", ReceiveOnlyChangedItems: 3}, 0)},
			consul.Warning, "3 files changed here"},
		{"folder errors warn",
			observation{self: "a", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "error", Error: "folder path missing"}, 0)},
			consul.Warning, "folder path missing"},
		{"the active is never behind",
			observation{self: "a", leader: leaderIs("a"), folders: folder(files.FolderStatus{State: "idle", NeedBytes: 5000}, time.Hour)}, consul.Passing, "shared idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkFiles(&tt.o)
			if got.Status != tt.wantStatus || !strings.Contains(got.Output, tt.wantOutput) {
				t.Fatalf("got %s %q, want %s containing %q", got.Status, got.Output, tt.wantStatus, tt.wantOutput)
			}
		})
	}
}

func TestFolderStates(t *testing.T) {
	shared := config.Files{Name: "shared"}
	o := observation{self: "b", leader: leaderIs("a"), folders: []folderObs{
		{cfg: shared, st: files.FolderStatus{State: "syncing", NeedBytes: 42, ReceiveOnlyChangedItems: 1}},
		{cfg: config.Files{Name: "broken"}, err: errors.New("unknown folder")},
	}}
	got := o.folderStates()
	want := map[string]cluster.FolderState{
		"shared": {State: "syncing", Type: "receiveonly", OutOfSyncBytes: 42, LocalChanges: 1},
		"broken": {State: "unknown", Type: "receiveonly"},
	}
	if len(got) != len(want) || got["shared"] != want["shared"] || got["broken"] != want["broken"] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if (&observation{}).folderStates() != nil {
		t.Fatal("a node without files blocks publishes folder states")
	}
}

// TestQuietMarksOnlyFailingChecks: on a node in maintenance the checks that
// do not pass say so in their output, and keep their status.
func TestQuietMarksOnlyFailingChecks(t *testing.T) {
	results := map[string]Result{
		CheckQuery: {consul.Critical, "no answer"},
		CheckRole:  {consul.Warning, "no leader"},
		CheckFiles: {consul.Passing, "in sync"},
	}
	quiet(results)
	want := map[string]Result{
		CheckQuery: {consul.Critical, "[maintenance] no answer"},
		CheckRole:  {consul.Warning, "[maintenance] no leader"},
		CheckFiles: {consul.Passing, "in sync"},
	}
	for name, w := range want {
		if results[name] != w {
			t.Errorf("%s: %+v, want %+v", name, results[name], w)
		}
	}
}
