package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/internal/services"
)

var now = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func allPassing() map[string]string {
	return map[string]string{"postgres-listening": "passing", "postgres-query": "passing", "postgres-role": "passing",
		"services": "passing", "consul": "passing", "heartbeat": "passing"}
}

// fixture is a cluster of four: the leader, a replica with failing checks
// and lag, one whose record is stale and one that does not answer.
func fixture() clusterView {
	failing := allPassing()
	failing["postgres-role"], failing["services"] = "critical", "warning"
	stale := allPassing()
	stale["consul"] = "critical"
	return clusterView{
		status: nodeapi.ClusterStatus{Cluster: "prod", Leader: "mgr-1", Members: []cluster.Member{
			{Name: "mgr-2", Address: "10.0.0.6", APIURL: "http://10.0.0.6:8008", Role: cluster.RoleStandby, LagBytes: 1258291, Checks: failing, Heartbeat: now.Add(-4 * time.Second),
				PostgresPort: 5432, UpstreamHost: "10.0.0.5", UpstreamPort: 5432, RoleChanged: now.Add(-3*time.Hour - 5*time.Minute),
				Files: map[string]cluster.FolderState{"resources": {State: "syncing", Type: "receiveonly", OutOfSyncBytes: 3 << 20}, "plugins": {State: "idle", Type: "receiveonly", LocalChanges: 2}}},
			{Name: "mgr-1", Address: "10.0.0.5", APIURL: "http://10.0.0.5:8008", Role: cluster.RolePrimary, LagBytes: 0, Checks: allPassing(), Heartbeat: now.Add(-3 * time.Second),
				PostgresPort: 5432, RoleChanged: now.Add(-3*time.Hour - 4*time.Minute),
				Files: map[string]cluster.FolderState{"resources": {State: "idle", Type: "sendonly"}, "plugins": {State: "idle", Type: "sendonly"}}},
			{Name: "mgr-3", Address: "10.0.0.7", Role: cluster.RoleUnknown, LagBytes: -1, Checks: stale, Heartbeat: now.Add(-2 * time.Minute)},
			{Name: "mgr-4", Address: "10.0.0.8", APIURL: "http://10.0.0.8:8008", Role: cluster.RoleStandby, LagBytes: 0, Checks: allPassing(), Heartbeat: now.Add(-1 * time.Second),
				PostgresPort: 5432, UpstreamHost: "10.0.0.9", UpstreamPort: 5432, RoleChanged: now.Add(-26 * time.Hour)},
		}, Consul: &nodeapi.ServersHealth{Voters: 4, HealthyVoters: 3, FailureTolerance: 0}},
		live: map[string]nodeapi.NodeResult{
			"mgr-1": {Status: nodeapi.NodeStatus{Name: "mgr-1", Role: nodeapi.RoleActive, Since: now.Add(-3*time.Hour - 5*time.Minute)}},
			"mgr-2": {Status: nodeapi.NodeStatus{Name: "mgr-2", Role: nodeapi.RoleStandby}},
			"mgr-4": {Err: errors.New("ask http://10.0.0.8:8008 for its state: no answer within 2s")},
		},
	}
}

func TestRenderNodes(t *testing.T) {
	var b bytes.Buffer
	if err := renderNodes(&b, nodeRows(fixture(), now)); err != nil {
		t.Fatal(err)
	}
	want := `NAME   ADDRESS   STATE    CONSUL    DB ROLE  UPSTREAM       LAG      CHECKS                                    FILES                                             LAST CHANGE  HEARTBEAT
mgr-1  10.0.0.5  leader   passing   primary  -              0 B      6/6 passing                               in sync                                           3h4m ago     3s ago
mgr-2  10.0.0.6  replica  passing   standby  mgr-1          1.2 MiB  postgres-role critical, services warning  plugins 2 changed here, resources 3.0 MiB behind  3h5m ago     4s ago
mgr-3  10.0.0.7  offline  critical  unknown  -              -        consul critical                           -                                                 -            2m ago
mgr-4  10.0.0.8  offline  passing   standby  10.0.0.9:5432  0 B      6/6 passing                               -                                                 1d2h ago     1s ago
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestNodeRowsJSON(t *testing.T) {
	b, err := json.Marshal(nodeRows(fixture(), now)[1:3])
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"mgr-2","address":"10.0.0.6","api_url":"http://10.0.0.6:8008","state":"replica","consul":"passing","db_role":"standby","lag_bytes":1258291,"lag":"1.2 MiB","checks":"postgres-role critical, services warning","failing_checks":{"postgres-role":"critical","services":"warning"},` +
		`"files":{"plugins":{"state":"idle","type":"receiveonly","out_of_sync_bytes":0,"local_changes":2},"resources":{"state":"syncing","type":"receiveonly","out_of_sync_bytes":3145728}},` +
		`"files_summary":"plugins 2 changed here, resources 3.0 MiB behind","upstream":"mgr-1","role_changed":"2024-05-01T08:55:00Z","last_change":"3h5m ago","heartbeat":"2024-05-01T11:59:56Z","heartbeat_age":"4s ago"},` +
		`{"name":"mgr-3","address":"10.0.0.7","state":"offline","consul":"critical","db_role":"unknown","lag_bytes":null,"lag":"-","checks":"consul critical","failing_checks":{"consul":"critical"},"files_summary":"-","last_change":"-","heartbeat":"2024-05-01T11:58:00Z","heartbeat_age":"2m ago"}]`
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
}

func events() []cluster.Event {
	return []cluster.Event{
		{Time: now.Add(-3 * time.Hour), Node: "mgr-1", Kind: cluster.EventTransition, From: "candidate", To: "active", Reason: "chosen as next-master\nand acquired the lock"},
		{Time: now.Add(-3*time.Hour - 5*time.Minute), Node: "mgr-1", Kind: cluster.EventFailover, From: "mgr-2", To: "mgr-1", Reason: "leader key free: session invalidated", LSN: 0x3000060},
		{Time: now.Add(-26 * time.Hour), Node: "mgr-2", Kind: cluster.EventJoin, Reason: "member appeared"},
	}
}

func TestRenderStatus(t *testing.T) {
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(fixture(), events(), now), now); err != nil {
		t.Fatal(err)
	}
	want := `cluster:        prod
leader:         mgr-1, active since 2024-05-01 08:55:00Z (3h5m ago)
last failover:  2024-05-01 08:55:00Z mgr-2→mgr-1 (3h5m ago): leader key free: session invalidated
can lose:       none: 3 healthy voting Consul servers, 3 needed, 4 nodes; one more lost and no node can be active
members (4):
  mgr-1  leader   primary  lag 0 B      6/6 passing                               heartbeat 3s ago
  mgr-2  replica  standby  lag 1.2 MiB  postgres-role critical, services warning  heartbeat 4s ago
  mgr-3  offline  unknown  lag -        consul critical                           heartbeat 2m ago
  mgr-4  offline  standby  lag 0 B      6/6 passing                               heartbeat 1s ago  (ask http://10.0.0.8:8008 for its state: no answer within 2s)
partitions: unknown: no node has a consul-watcher view (is understudy-consul-watcher running?)
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestRenderStatusPartitions: status shows who reaches whom since when,
// from each node's own view, or its member record when it does not answer.
func TestRenderStatusPartitions(t *testing.T) {
	v := fixture()
	peers := func(reach map[string]cluster.Reach, since time.Time) []cluster.PeerReach {
		var out []cluster.PeerReach
		for _, n := range []string{"mgr-1", "mgr-2", "mgr-3", "mgr-4"} {
			out = append(out, cluster.PeerReach{Name: n, Server: true, Reach: reach[n], Since: since})
		}
		return out
	}
	cut := now.Add(-30 * time.Second)
	majority := cluster.Partition{Node: "mgr-1", At: now, Mode: "fence", MinorityTimeoutMS: 5000, State: cluster.PartitionMajority, Since: now.Add(-time.Hour),
		Servers: 4, ReachedServers: 3, Majority: true,
		Peers: peers(map[string]cluster.Reach{"mgr-1": cluster.Reached, "mgr-2": cluster.Reached, "mgr-3": cluster.Unreachable, "mgr-4": cluster.Reached}, cut)}
	minority := cluster.Partition{Node: "mgr-3", At: now.Add(-2 * time.Minute), Mode: "fence", MinorityTimeoutMS: 5000, State: cluster.PartitionMinority, Since: cut.Add(5 * time.Second),
		Servers: 4, ReachedServers: 1,
		Peers: peers(map[string]cluster.Reach{"mgr-1": cluster.Unreachable, "mgr-2": cluster.Unreachable, "mgr-3": cluster.Reached, "mgr-4": cluster.Unreachable}, cut)}
	v.status.Members[2].Partition = &minority
	v.partitions = map[string]nodeapi.PartitionResult{
		"mgr-1": {View: majority},
		"mgr-2": {Err: errors.New("ask http://10.0.0.6:8008 for its partition view: 503: no partition view")},
	}
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(v, events(), now), now); err != nil {
		t.Fatal(err)
	}
	want := `partitions (partition_mode fence, minority_timeout 5s):
  mgr-1  majority since 2024-05-01 11:00:00Z (1h0m ago)  reaches 3/4 servers: mgr-1, mgr-2, mgr-4; mgr-3 unreachable since 30s ago
  mgr-2  unknown                                         ask http://10.0.0.6:8008 for its partition view: 503: no partition view
  mgr-3  MINORITY since 2024-05-01 11:59:35Z (25s ago)   reaches 1/4 servers: mgr-3; mgr-1 unreachable since 30s ago; mgr-2 unreachable since 30s ago; mgr-4 unreachable since 30s ago  (from its member record, 2m ago; the node did not answer: no API URL in its member record)
  mgr-4  unknown                                         no API URL in its member record and no view in it
`
	if !strings.Contains(b.String(), want) {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestRenderStatusKeptAside: status names what a rewind kept aside, where,
// and how to read it, until an operator removes it.
func TestRenderStatusKeptAside(t *testing.T) {
	v := fixture()
	v.status.Members[2].Diverged = []cluster.Diverged{{Dir: "/var/lib/understudy/understudy-diverged-20240501T110000Z",
		Timeline: 3, From: 0x3000060, To: 0x3000148, Commits: 2, At: now.Add(-time.Hour)}}
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(v, events(), now), now); err != nil {
		t.Fatal(err)
	}
	want := "kept aside:     on mgr-3, 2 transactions a former primary committed after the fork (timeline 3, 0/3000060 to 0/3000148), in /var/lib/understudy/understudy-diverged-20240501T110000Z since 2024-05-01 11:00:00Z; read them with pg_waldump -p /var/lib/understudy/understudy-diverged-20240501T110000Z -t 3 -s 0/3000060, remove the directory when done\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("got\n%s\nwant a line\n%s", b.String(), want)
	}
}

func TestRenderStatusPaused(t *testing.T) {
	v := fixture()
	v.status.Paused = &cluster.Pause{By: "operator alice", At: now.Add(-10 * time.Minute), Reason: "kernel upgrade"}
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(v, events(), now), now); err != nil {
		t.Fatal(err)
	}
	want := "PAUSED:         by operator alice since 2024-05-01 11:50:00Z (10m ago): kernel upgrade; no election and no PostgreSQL restart until understudy cluster resume\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("got\n%s\nwant a line\n%s", b.String(), want)
	}
}

// TestCanLose: what status says the cluster can lose, from autopilot's
// view of the Consul servers (which drops a dead one within seconds) and
// the number of nodes.
func TestCanLose(t *testing.T) {
	for _, c := range []struct {
		h     *nodeapi.ServersHealth
		nodes int
		want  string
	}{
		{&nodeapi.ServersHealth{Voters: 3, HealthyVoters: 3, FailureTolerance: 1}, 3, "1 node (3 healthy voting Consul servers, 2 needed, 3 nodes)"},
		{&nodeapi.ServersHealth{Voters: 5, HealthyVoters: 5, FailureTolerance: 2}, 5, "2 nodes (5 healthy voting Consul servers, 3 needed, 5 nodes)"},
		{&nodeapi.ServersHealth{Voters: 2, HealthyVoters: 2}, 2, "none: 2 healthy voting Consul servers, 2 needed, 2 nodes; add a third node to survive the loss of one"},
		{&nodeapi.ServersHealth{Voters: 2, HealthyVoters: 2}, 3, "none: 2 healthy voting Consul servers, 2 needed, 3 nodes; one more lost and no node can be active"},
		{&nodeapi.ServersHealth{Voters: 3, HealthyVoters: 2}, 3, "none: 2 healthy voting Consul servers, 2 needed, 3 nodes; one more lost and no node can be active"},
		{nil, 3, "unknown: Consul's autopilot did not answer"},
	} {
		if got := toleranceWords(c.h, c.nodes); got != c.want {
			t.Errorf("%+v, %d nodes: %q, want %q", c.h, c.nodes, got, c.want)
		}
	}
}

func TestRenderStatusNoLeader(t *testing.T) {
	v := fixture()
	v.status.Leader = ""
	v.status.NextMaster = &cluster.NextMaster{Node: "mgr-2", By: "mgr-2", Reason: "highest LSN", At: now.Add(-2 * time.Second)}
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(v, nil, now), now); err != nil {
		t.Fatal(err)
	}
	want := `cluster:        prod
leader:         none: no node holds the lock (an election may be in progress)
next master:    mgr-2, chosen by mgr-2 2s ago: highest LSN
last failover:  none recorded
can lose:       none: 3 healthy voting Consul servers, 3 needed, 4 nodes; one more lost and no node can be active
members (4):
`
	if !strings.HasPrefix(b.String(), want) {
		t.Fatalf("got\n%s\nwant it to start\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), "leader ") {
		t.Fatalf("no member may be shown as leader:\n%s", b.String())
	}
}

func TestRenderHistory(t *testing.T) {
	var b bytes.Buffer
	if err := renderHistory(&b, events()); err != nil {
		t.Fatal(err)
	}
	want := `TIME                  NODE   KIND        CHANGE            REASON
2024-05-01 09:00:00Z  mgr-1  transition  candidate→active  chosen as next-master and acquired the lock
2024-05-01 08:55:00Z  mgr-1  failover    mgr-2→mgr-1       leader key free: session invalidated [lsn 0/3000060]
2024-04-30 10:00:00Z  mgr-2  join        -                 member appeared
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestRenderNode(t *testing.T) {
	v := fixture()
	st := v.live["mgr-1"].Status
	st.Reason, st.HasSession, st.Serving = "chosen as next-master", true, true
	st.Postgres = nodeapi.PGStatus{Running: true, Timeline: 3, WriteLSN: 0x3000060}
	m := v.status.Members[1]
	m.Timeline, m.PostgresPort, m.WriteLSN, m.Priority = 3, 5432, 0x3000060, 100
	m.Versions = cluster.Versions{Understudy: "1.0.0", Postgres: "15.4", Consul: "1.17.0"}
	var b bytes.Buffer
	if err := renderNode(&b, nodeReport{Member: m, State: "leader", Status: &st}, now); err != nil {
		t.Fatal(err)
	}
	want := `name:             mgr-1
state:            leader
address:          10.0.0.5 (api http://10.0.0.5:8008)
db role:          primary, timeline 3, port 5432
role changed:     2024-05-01 08:56:00Z (3h4m ago)
lsn:              write 0/3000060, receive 0/0, replay 0/0
lag:              0 B
priority:         100, nofailover no
versions:         understudy 1.0.0, postgres 15.4, consul 1.17.0
checks:           consul passing, heartbeat passing, postgres-listening passing, postgres-query passing, postgres-role passing, services passing
heartbeat:        2024-05-01 11:59:57Z (3s ago)
files plugins:    sendonly idle, 0 B out of sync, 0 changed here
files resources:  sendonly idle, 0 B out of sync, 0 changed here
live role:        active since 2024-05-01 08:55:00Z (3h5m ago): chosen as next-master
live session:     yes, serving yes, leader -
live postgres:    running yes, in recovery no, streaming no, timeline 3, position 0/3000060
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[int64]string{-1: "-", 0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1258291: "1.2 MiB", 1<<20 - 1: "1.0 MiB", 16 << 30: "16.0 GiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFmtAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "just now", 3 * time.Second: "3s ago", 59 * time.Second: "59s ago",
		4*time.Minute + 12*time.Second: "4m ago", 2*time.Hour + 5*time.Minute: "2h5m ago", 76 * time.Hour: "3d4h ago"} {
		if got := fmtAgo(now.Add(-d), now); got != want {
			t.Errorf("fmtAgo(%v) = %q, want %q", d, got, want)
		}
	}
	if got := fmtAgo(time.Time{}, now); got != "never" {
		t.Errorf("zero time: %q", got)
	}
}

// fakeAPI is one node of our own API, active, with the fixture's records:
// enough for the commands' wiring; the API itself is tested in
// handlerrunner and end to end.
func fakeAPI(t *testing.T) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		switch r.URL.Path {
		case "/status":
			_ = enc.Encode(map[string]string{"node": "mgr-1", "role": "active"})
		case "/v1/status/cluster":
			_ = enc.Encode(nodeapi.ClusterStatus{Cluster: "prod", Leader: "mgr-1", Members: []cluster.Member{
				{Name: "mgr-1", Address: "127.0.0.1", APIURL: srv.URL, Role: cluster.RolePrimary, Checks: allPassing(), Heartbeat: time.Now()},
			}})
		case "/v1/status/node":
			_ = enc.Encode(nodeapi.NodeStatus{Name: "mgr-1", Role: nodeapi.RoleActive, Since: time.Now().Add(-time.Hour)})
		case "/v1/events":
			_ = enc.Encode(map[string]any{"events": events()})
		case "/v1/cluster/switchover":
			var req nodeapi.SwitchoverRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			if req.Target == "mgr-9" {
				w.WriteHeader(http.StatusNotFound)
				_ = enc.Encode(map[string]string{"error": `no member named "mgr-9"; see GET /v1/status/cluster for the members`})
				return
			}
			_ = enc.Encode(map[string]string{"active": req.Target, "took": "2.5s"})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newClusterCmd()
	if args[0] == "profile" {
		cmd, args = newProfileCmd(), args[1:]
	}
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestClusterCommands(t *testing.T) {
	t.Setenv(nodeapi.EnvProfiles, t.TempDir()+"/profiles.json")
	t.Setenv(nodeapi.EnvProfile, "")
	srv := fakeAPI(t)
	if _, err := run(t, "profile", "add", "prod", "--nodes", strings.TrimPrefix(srv.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []string // substrings of the output
	}{
		{[]string{"status", "--profile", "prod"}, []string{"cluster:        prod", "leader:         mgr-1, active since", "(1h0m ago)", "last failover:  2024-05-01 08:55:00Z mgr-2→mgr-1"}},
		{[]string{"nodes", "list", "--profile", "prod"}, []string{"NAME", "mgr-1  127.0.0.1  leader  passing  primary  -         0 B  6/6 passing  -      -            just now"}},
		{[]string{"nodes", "list", "--profile", "prod", "-o", "json"}, []string{`"state": "leader"`, `"checks": "6/6 passing"`}},
		{[]string{"nodes", "get", "mgr-1", "--profile", "prod"}, []string{"live role:      active since"}},
		{[]string{"--profile", "prod", "history", "--limit", "2"}, []string{"candidate→active"}},
		{[]string{"--profile", "prod", "history", "-o", "json"}, []string{`"kind": "failover"`}},
		{[]string{"--profile", "prod", "set-active", "mgr-2", "--timeout", "30s"}, []string{"mgr-2 is the active node; the switchover took 2.5s"}},
	}
	for _, tc := range tests {
		out, err := run(t, tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output\n%s\ndoes not hold %q", tc.args, out, w)
			}
		}
	}

	errs := []struct {
		args []string
		want string
	}{
		{[]string{"status", "--profile", "nope"}, "understudy profile add nope"},
		{[]string{"nodes", "list", "--profile", "prod", "-o", "yaml"}, `--output "yaml": write table or json`},
		{[]string{"nodes", "get", "mgr-7", "--profile", "prod"}, `no member named "mgr-7" in cluster prod; the members are: mgr-1`},
		{[]string{"set-active", "mgr-9", "--profile", "prod"}, `for a switchover to mgr-9: no member named "mgr-9"`},
		{[]string{"set-active", "mgr-2", "--profile", "prod", "--timeout", "2h"}, "--timeout 2h0m0s: write a duration up to 1h"},
		{[]string{"history", "--profile", "prod", "--limit", "0"}, "--limit 0"},
	}
	for _, tc := range errs {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: err = %v, want one line with %q", tc.args, err, tc.want)
		}
	}
}

// TestProcessesFlag: --processes takes auto, systemd or supervised; another
// value, or systemd on a host whose init is not systemd, is refused before
// anything is done, with the way out in the message.
func TestProcessesFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "none.hcl") // never read: the flag is checked first
	_, err := run(t, "start", "--config", cfg, "--processes", "docker")
	if err == nil || !strings.Contains(err.Error(), "want auto, systemd or supervised") {
		t.Fatalf("--processes docker: %v", err)
	}
	if services.SystemdBooted() {
		t.Skip("systemd is this host's init") // the refusal below cannot happen here
	}
	_, err = run(t, "join", "127.0.0.1:1", "--config", cfg, "--processes", "systemd")
	if err == nil || !strings.Contains(err.Error(), "use --processes supervised") {
		t.Fatalf("--processes systemd without systemd: %v", err)
	}
}

func TestReadJoinToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("ust1.fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, flag, file, stdin string
		want                    string // "" for an error
	}{
		{"the flag", "ust1.flag", "", "", "ust1.flag"},
		{"a file, its newline trimmed", "", file, "", "ust1.fromfile"},
		{"standard input", "-", "", "  ust1.stdin\n", "ust1.stdin"},
		{"both", "ust1.flag", file, "", ""},
		{"a missing file", "", filepath.Join(t.TempDir(), "none"), "", ""},
		{"empty standard input", "-", "", "", ""},
		{"two tokens", "-", "", "ust1.a\nust1.b\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readJoinToken(tc.flag, tc.file, strings.NewReader(tc.stdin))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestRenderStatusFailsafe: in a Consul outage the status is read from one
// node's server (stale) and says so, and the active says how it keeps its
// lease.
func TestRenderStatusFailsafe(t *testing.T) {
	v := fixture()
	v.status.Stale = true
	st := v.live["mgr-1"]
	st.Status.LeaseCarried = &nodeapi.LeaseCarry{Rule: nodeapi.CarryFailsafe, Since: now.Add(-90 * time.Second), GrantedBy: []string{"mgr-2", "mgr-4"}}
	v.live["mgr-1"] = st
	var b bytes.Buffer
	if err := renderStatus(&b, newStatusReport(v, nil, now), now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CONSUL:         no leader: the leader and members here are one node's Consul server's last knowledge and may be old",
		`FAILSAFE:       mgr-1 keeps taking writes without a Consul leader since 2024-05-01 11:58:30Z (1m ago): every other member confirms it (mgr-2, mgr-4); consul.outage = "failsafe"`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("got\n%s\nwant a line with\n%s", b.String(), want)
		}
	}
}

// TestRenderActiveMinority: in an active-minority partition nodes list
// calls the minority's active so, whichever side answered the list, and
// status shows its side and, once the partition heals, the decision.
func TestRenderActiveMinority(t *testing.T) {
	v := fixture()
	side := &cluster.Minority{At: now.Add(-time.Minute), Side: []string{"mgr-2"}, Servers: []string{"mgr-1", "mgr-2", "mgr-3", "mgr-4"}, Cluster: "0a1b2c3d4e5f"}
	v.live["mgr-2"] = nodeapi.NodeResult{Status: nodeapi.NodeStatus{Name: "mgr-2", Role: nodeapi.RoleActive, Serving: true, Minority: side}}
	var b bytes.Buffer
	if err := renderNodes(&b, nodeRows(v, now)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "mgr-2  10.0.0.6  MINORITY ACTIVE") {
		t.Fatalf("nodes list does not call mgr-2 the minority's active:\n%s", b.String())
	}
	view := cluster.Partition{Node: "mgr-2", At: now, Mode: "active-minority", MinorityTimeoutMS: 5000, State: cluster.PartitionMinority, Since: now.Add(-70 * time.Second),
		Servers: 4, ReachedServers: 1, Cluster: side.Cluster, Minority: side,
		Heal: &cluster.Heal{At: now.Add(-2 * time.Second), Decider: "mgr-1", Winner: side.Cluster, Reason: "side 0a1b2c3d4e5f: mgr-2 (active mgr-2) was written last"}}
	v.partitions = map[string]nodeapi.PartitionResult{"mgr-2": {View: view}}
	b.Reset()
	if err := renderStatus(&b, newStatusReport(v, events(), now), now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"MINORITY SIDE mgr-2: a consul quorum of its own since 2024-05-01 11:59:00Z (1m ago), consul cluster 0a1b2c3d4e5f; its writes may be thrown away when the partition heals",
		"heal decided by mgr-1 2s ago: side 0a1b2c3d4e5f: mgr-2 (active mgr-2) was written last",
	} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("status does not say %q:\n%s", want, b.String())
		}
	}
}
