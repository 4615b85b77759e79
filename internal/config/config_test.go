package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file; bad inputs below are appended to it,
// so their first line is line 6.
const minimal = `cluster { name = "prod" }
node {
  name    = "mgr-1"
  address = "10.0.0.5"
}
`

// full is the example of DESIGN.md, written as valid HCL (one field per
// line) and with the "..." filled in.
const full = `cluster {
  name           = "prod"
  kv_prefix      = "understudy"
  partition_mode = "fence"
}
node {
  name     = "mgr-1"
  address  = "10.0.0.5"
  data_dir = "/var/lib/understudy"
  priority = 100
  tags     = ["rack-1"]
}
consul {
  address     = "127.0.0.1:8500"
  session_ttl = "10s"
  lock_delay  = "1s"
}
postgres {
  bin_dir                 = "/usr/lib/postgresql/15/bin"
  data_dir                = "/srv/pg"
  port                    = 5432
  synchronous             = false
  maximum_lag_on_failover = "16MB"
  pg_hba                  = ["hostssl app app 10.0.0.0/24 scram-sha-256"]
}
checks {
  interval           = "1s"
  heartbeat_interval = "15s"
  ttl_multiplier     = 1
  fail_fast          = true
}
api {
  listen          = ":8008"
  basic_auth_file = "/etc/understudy/api-users"
}
service "rabbitmq" {
  systemd_unit = "rabbitmq-server.service"
  active_only  = true
}
service "mgmtworker" {
  start       = ["/opt/mgmtworker/bin/ctl", "start"]
  stop        = ["/opt/mgmtworker/bin/ctl", "stop"]
  status      = ["/opt/mgmtworker/bin/ctl", "status"]
  active_only = true
}
service "restservice" { systemd_unit = "restservice.service" } # every node
service "stage" {
  command     = ["/opt/manager/bin/stage", "--config", "/etc/stage.conf"]
  active_only = true
}
files "resources" { path = "/opt/manager/resources" }
`

// badInputs are files that Parse must reject, each with the line and a piece
// of one of the problems.
var badInputs = []struct {
	name  string
	src   string
	line  int
	msg   string // a piece of the problem on that line
	count int    // number of problems, when it matters; 0 = any
}{
	{"unknown block", minimal + `servce "x" { systemd_unit = "x.service" }`, 6, `unknown block "servce"; did you mean "service"?`, 1},
	{"unknown block, no near name", minimal + "foo {\n}\n", 6, `unknown block "foo"; the blocks are cluster, node,`, 1},
	{"unknown field", "cluster { name = \"prod\" }\nnode {\n  name = \"a\"\n  address = \"10.0.0.5\"\n  prioriy = 1\n}\n",
		5, `unknown field "prioriy" in block node; did you mean "priority"?`, 1},
	{"field of another block", minimal + "checks {\n  session_ttl = \"10s\"\n}\n", 7,
		`unknown field "session_ttl" in block checks; session_ttl belongs in the consul block`, 1},
	{"unknown field, no near name", minimal + "api {\n  colour = \"red\"\n}\n", 7, `the fields of api are listen, basic_auth_file`, 1},
	{"field outside any block", minimal + `kv_prefix = "x"`, 6, `field "kv_prefix" outside any block; move it into the cluster block`, 1},
	{"string for a number", minimal + "postgres {\n  port = \"5432\"\n}\n", 7,
		`postgres.port = "5432" is a string, not a number; write port = 5432 without quotes`, 1},
	{"number for a string", "cluster { name = 5 }\nnode {\n  name = \"a\"\n  address = \"10.0.0.5\"\n}\n", 1,
		`cluster.name = 5 is a number, not a string; write name = "5"`, 1},
	{"string for a bool", minimal + "checks {\n  fail_fast = \"yes\"\n}\n", 7, `checks.fail_fast = "yes" is a string, not true or false`, 1},
	{"fraction for an int", minimal + "checks {\n  ttl_multiplier = 1.5\n}\n", 7, `checks.ttl_multiplier = 1.5 is not a whole number`, 1},
	{"duration with a space", minimal + "checks {\n  interval = \"5 s\"\n}\n", 7,
		`checks.interval = "5 s" is not a duration; write a number with a unit, like "5s" or "500ms"`, 1},
	{"duration as a number", minimal + "checks {\n  interval = 5\n}\n", 7,
		`checks.interval = 5 is a number, not a duration; write it with a unit in quotes, like interval = "5s"`, 1},
	{"negative multiplier", minimal + "checks {\n  ttl_multiplier = -1\n}\n", 7, `checks.ttl_multiplier = -1 is less than 1; write 1 or more`, 1},
	{"check TTL too long", minimal + "checks {\n  interval = \"10m\"\n  ttl_multiplier = 7\n  heartbeat_interval = \"10m\"\n}\n", 8, `longer than 1h`, 1},
	{"port 0", minimal + "postgres {\n  port = 0\n}\n", 7, `postgres.port = 0 is not a port; write a number from 1 to 65535, like 5432`, 1},
	{"port 70000", minimal + "postgres {\n  port = 70000\n}\n", 7, `postgres.port = 70000 is not a port`, 1},
	{"listen port 70000", minimal + "api {\n  listen = \":70000\"\n}\n", 7, `api.listen = ":70000" has port 70000, outside 1..65535`, 1},
	{"listen on the postgres port", minimal + "api {\n  listen = \":5432\"\n}\n", 7, `uses postgres.port 5432; write another port`, 1},
	{"listen not host:port", minimal + "api {\n  listen = \"8008\"\n}\n", 7, `api.listen = "8008" is not host:port; write ":8008"`, 1},
	{"missing field", "cluster { name = \"prod\" }\nnode {\n  name = \"mgr-1\"\n}\n", 2,
		`missing required field node.address; add address = "10.0.0.5" to the node block`, 1},
	{"missing block", `cluster { name = "prod" }`, 1, `missing required field node.name; add name = "mgr-1" to the node block`, 2},
	{"empty file", ``, 1, `missing required field cluster.name; add name = "prod" to the cluster block`, 3},
	{"not HCL: YAML", "cluster:\n  name: prod\n", 1, `Argument or block definition required`, 0},
	{"not HCL: JSON", `{"cluster": {"name": "prod"}}`, 1, `the file is HCL`, 0},
	{"several fields on one line", `cluster { name = "prod"  kv_prefix = "u" }`, 1, `one field per line`, 1},
	{"unclosed block", "node {\n  name = \"a\"\n", 1, `Unclosed configuration block`, 1},
	{"not UTF-8", "cluster { name = \"\xff\" }\n", 1, `save the file as UTF-8`, 0},
	{"duplicate singleton", minimal + "node {\n  priority = 1\n}\n", 6,
		`duplicate node block (the first is on line 2); move its fields into the first node block`, 1},
	{"label on a singleton", minimal + "checks \"x\" {\n}\n", 6, `block checks takes no name; write checks { ... }`, 1},
	{"service without a name", minimal + "service {\n  systemd_unit = \"x.service\"\n}\n", 6, `block service needs one name; write service "NAME"`, 1},
	{"nested block", minimal + "consul {\n  postgres {\n  }\n}\n", 7, `block postgres inside block consul; blocks do not nest`, 1},
	{"service with unit and commands", minimal + "service \"x\" {\n  systemd_unit = \"x.service\"\n  start = [\"/bin/x\"]\n}\n", 6,
		`service "x" has both systemd_unit and start/stop/status; keep systemd_unit or the commands, not both`, 1},
	{"service with neither", minimal + "service \"x\" {\n  active_only = true\n}\n", 6,
		`service "x" has no command, systemd_unit or start/stop/status; add command = ["/path/to/program", "arg"] for a program understudy supervises, systemd_unit = "x.service"`, 1},
	{"service with command and unit", minimal + "service \"x\" {\n  command = [\"/bin/x\"]\n  systemd_unit = \"x.service\"\n}\n", 6,
		`service "x" has both command and systemd_unit; keep command for a program understudy supervises, or systemd_unit`, 1},
	{"service with command and start", minimal + "service \"x\" {\n  command = [\"/bin/x\"]\n  start = [\"/bin/x\"]\n}\n", 6,
		`service "x" has both command and start/stop/status; keep command for a program understudy supervises, or the three commands`, 1},
	{"service with command and status", minimal + "service \"x\" {\n  status = [\"/bin/x\"]\n  command = [\"/bin/x\"]\n}\n", 6,
		`service "x" has both command and start/stop/status`, 1},
	{"empty command", minimal + "service \"x\" {\n  command = []\n}\n", 7,
		`service.x.command = [] is empty; write the program and its arguments, like command = ["/opt/manager/bin/mgmtworker"`, 1},
	{"empty command beside a unit", minimal + "service \"x\" {\n  systemd_unit = \"x.service\"\n  command = []\n}\n", 6,
		`service "x" has both command and systemd_unit`, 1},
	{"command with an empty program", minimal + "service \"x\" {\n  command = [\"\", \"run\"]\n}\n", 7,
		`service "x": command starts with an empty program; write the program first`, 1},
	{"command with a relative program", minimal + "service \"x\" {\n  command = [\"bin/x\"]\n}\n", 7,
		`service.x.command starts with "bin/x", a relative path; write the program's absolute path`, 1},
	{"command as one string", minimal + "service \"x\" {\n  command = \"/bin/x --run\"\n}\n", 7,
		`service.x.command = "/bin/x --run" is a string, not a list; write command = ["/bin/x", "--run"]`, 1},
	{"exec service without status", minimal + "service \"x\" {\n  start = [\"/bin/x\"]\n  stop = [\"/bin/y\"]\n}\n", 6,
		`service "x" has no status; add status = [`, 1},
	{"command as a string", minimal + "service \"x\" {\n  start = \"/bin/x run\"\n}\n", 7,
		`service.x.start = "/bin/x run" is a string, not a list; write start = ["/bin/x", "run"]`, 0},
	{"duplicate service", minimal + "service \"x\" { systemd_unit = \"x.service\" }\nservice \"x\" { systemd_unit = \"y.service\" }\n", 7,
		`duplicate service "x" (the first is on line 6)`, 1},
	{"duplicate files path", minimal + "files \"a\" { path = \"/srv/a\" }\nfiles \"b\" { path = \"/srv/a/\" }\n", 7,
		`files.b.path = "/srv/a/" is the path of files "a" (the first is on line 6); mirror each directory once`, 1},
	{"files inside files", minimal + "files \"a\" { path = \"/srv/a\" }\nfiles \"b\" { path = \"/srv/a/b\" }\n", 7,
		`files.b.path = "/srv/a/b" is inside files "a" (the first is on line 6)`, 1},
	{"files around files", minimal + "files \"a\" { path = \"/srv/a/b\" }\nfiles \"b\" { path = \"/srv\" }\n", 7,
		`files.b.path = "/srv" contains files "a"`, 1},
	{"files in the data dir", minimal + "files \"a\" { path = \"/var/lib/understudy/files\" }\n", 6,
		`overlaps node.data_dir = "/var/lib/understudy"; mirror a directory outside`, 1},
	{"files around postgres", minimal + "postgres {\n  data_dir = \"/srv/pg/data\"\n}\nfiles \"a\" { path = \"/srv/pg\" }\n", 9,
		`overlaps postgres.data_dir = "/srv/pg/data"`, 1},
	{"files negative settle", minimal + "files \"a\" {\n  path = \"/srv/a\"\n  settle = \"-1s\"\n}\n", 8, `files.a.settle = "-1s" is negative`, 1},
	{"syncthing port clash", minimal + "syncthing {\n  api_port = 5432\n}\nfiles \"a\" { path = \"/srv/a\" }\n", 7,
		`syncthing.api_port = 5432 is postgres.port too`, 1},
	{"size with a space", minimal + "postgres {\n  maximum_lag_on_failover = \"16 MB\"\n}\n", 7,
		`postgres.maximum_lag_on_failover = "16 MB" is not a size; write a whole number with a unit, like "16MB"`, 1},
	{"size in lower case", minimal + "postgres {\n  maximum_lag_on_failover = \"16mb\"\n}\n", 7, `is not a size`, 1},
	{"hook without a command", minimal + "promote_hook \"n\" {\n  timeout = \"5s\"\n}\n", 6, `promote_hook "n" has no command; add command = [`, 1},
	{"hook timeout out of range", minimal + "promote_hook \"n\" {\n  command = [\"/bin/true\"]\n  timeout = \"2h\"\n}\n", 8, `promote_hook.n.timeout = 2h0m0s is out of range`, 1},
	{"negative size", minimal + "postgres {\n  maximum_lag_on_failover = -1\n}\n", 7, `maximum_lag_on_failover = -1 is negative`, 1},
	{"empty pg_hba line", minimal + "postgres {\n  pg_hba = [\"host all app 10.0.0.0/8 scram-sha-256\", \" \"]\n}\n", 7,
		`postgres.pg_hba has an empty line at position 2; remove it, or write a pg_hba.conf line like`, 1},
	{"pg_hba line with a line break", minimal + "postgres {\n  pg_hba = [\"host all app 10.0.0.0/8 trust\\nhost all all all trust\"]\n}\n", 7,
		`postgres.pg_hba = "host all app 10.0.0.0/8 trust\nhost all all all trust" at position 1 holds a line break; write each pg_hba.conf line as a string of its own`, 1},
	{"pg_hba not a list", minimal + "postgres {\n  pg_hba = \"host all all all trust\"\n}\n", 7, `postgres.pg_hba = "host all all all trust" is a string, not a list`, 1},
	{"session_ttl too short", minimal + "consul {\n  session_ttl = \"5s\"\n}\n", 7,
		`consul.session_ttl = "5s" is outside Consul's bounds; write a value from "10s" to "24h"`, 1},
	{"lock_delay too long", minimal + "consul {\n  lock_delay = \"2m\"\n}\n", 7, `consul.lock_delay = "2m" is outside`, 1},
	{"outage mode misspelt", minimal + "consul {\n  outage = \"failover\"\n}\n", 7,
		`consul.outage = "failover" is not an outage mode; write "failsafe"`, 1},
	{"lease shorter than an election", minimal + "consul {\n  leader_lease = \"1s\"\n}\n", 7,
		`consul.leader_lease = "1s" is shorter than a Consul leader election takes (up to 2 s x raft_multiplier 1)`, 1},
	{"lease shorter than an election at a raft multiplier", minimal + "consul {\n  raft_multiplier = 3\n  session_ttl = \"20s\"\n  leader_lease = \"5s\"\n}\n", 9,
		`consul.leader_lease = "5s" is shorter than a Consul leader election takes (up to 2 s x raft_multiplier 3)`, 1},
	{"gossip probe timeout not under the interval", minimal + "consul {\n  gossip_probe_interval = \"1s\"\n  gossip_probe_timeout = \"1s\"\n}\n", 8,
		`consul.gossip_probe_timeout = "1s" must be above 0 and under consul.gossip_probe_interval = "1s"`, 1},
	{"lease not under the session TTL", minimal + "consul {\n  session_ttl = \"10s\"\n  leader_lease = \"12s\"\n}\n", 8,
		`consul.leader_lease = "12s" must be shorter than consul.session_ttl = "10s"`, 1},
	{"lock delay too short to learn of a lost session", minimal + "consul {\n  lock_delay = \"100ms\"\n}\n", 7,
		`consul.lock_delay = "100ms" is shorter than an active needs`, 1},
	{"lock delay longer than the lease wait", minimal + "consul {\n  lock_delay = \"10s\"\n}\n", 7,
		`consul.lock_delay = "10s" is longer than the wait the lease already imposes`, 1},
	{"heartbeat shorter than interval", minimal + "checks {\n  interval = \"20s\"\n}\n", 7,
		`checks.heartbeat_interval = "15s" is shorter than checks.interval = "20s"; write heartbeat_interval = "20s" or more`, 1},
	{"interval too short", minimal + "checks {\n  interval = \"10ms\"\n}\n", 7, `checks.interval = "10ms" is shorter than 100ms`, 1},
	{"unknown scheme", minimal + "consul {\n  scheme = \"tcp\"\n}\n", 7, `consul.scheme = "tcp" is not http or https`, 1},
	{"TLS files with http", minimal + "consul {\n  ca_file = \"/ca.pem\"\n}\n", 7, `consul.ca_file is set but consul.scheme is "http"`, 1},
	{"token and token file", minimal + "consul {\n  token = \"x\"\n  token_file = \"/t\"\n}\n", 7, `consul.token and consul.token_file are both set; keep one`, 1},
	{"relative token file", minimal + "consul {\n  token_file = \"acl/t\"\n}\n", 7, `consul.token_file = "acl/t" is not an absolute path`, 1},
	{"bad node name", "cluster { name = \"prod\" }\nnode {\n  name = \"Mgr_1\"\n  address = \"10.0.0.5\"\n}\n", 3,
		`node.name = "Mgr_1" is not a valid name; use 1 to 63 lowercase letters, digits and '-'`, 1},
	{"bad partition mode", "cluster {\n  name = \"prod\"\n  partition_mode = \"fenced\"\n}\n" + minimal[26:], 3,
		`cluster.partition_mode = "fenced" is not a partition mode; write "fence"`, 1},
	{"active-minority with synchronous mode", "cluster {\n  name = \"prod\"\n  partition_mode = \"active-minority\"\n}\n" + minimal[26:] + "postgres {\n  synchronous = true\n}\n", 3,
		`cluster.partition_mode = "active-minority" with postgres.synchronous = true: synchronous mode promises that no acknowledged write is lost`, 1},
	{"minority timeout under the takeover", "cluster {\n  name = \"prod\"\n  minority_timeout = \"2s\"\n}\n" + minimal[26:], 3,
		`cluster.minority_timeout = "2s" is shorter than an active cut off needs to stop taking writes (3.475s`, 1},
	{"minority timeout under two rounds", "cluster {\n  name = \"prod\"\n  minority_timeout = \"5s\"\n}\n" + minimal[26:] + "checks {\n  interval = \"3s\"\n}\n", 3,
		`cluster.minority_timeout = "5s" is shorter than two checks.interval = "3s"`, 1},
	{"minority timeout negative", "cluster {\n  name = \"prod\"\n  minority_timeout = \"-1s\"\n}\n" + minimal[26:], 3,
		`cluster.minority_timeout = "-1s" is out of range; write a duration from "3.6s" to "10m"`, 1},
	{"relative data_dir", "cluster { name = \"prod\" }\nnode {\n  name = \"a\"\n  address = \"10.0.0.5\"\n  data_dir = \"data\"\n}\n", 5,
		`node.data_dir = "data" is not an absolute path; write a path from "/", like "/var/lib/understudy"`, 1},
	{"relative path", minimal + "files \"r\" {\n  path = \"opt/r\"\n}\n", 7, `is not an absolute path`, 1},
	{"address with a port", "cluster { name = \"prod\" }\nnode {\n  name = \"a\"\n  address = \"10.0.0.5:8008\"\n}\n", 4,
		`write the host without a port: "10.0.0.5"`, 1},
	{"variable", minimal + "api {\n  listen = var.listen\n}\n", 7, `api.listen = var.listen cannot be evaluated (Variables not allowed)`, 1},
	{"null", minimal + "api {\n  listen = null\n}\n", 7, `api.listen = null is null; remove the line to use the default`, 1},
	{"list element not a string", minimal + "service \"x\" {\n  systemd_unit = \"x.service\"\n  stop = [1]\n}\n", 8,
		`has a number at position 1 where a string belongs`, 0},
}

func TestParseBad(t *testing.T) {
	for _, tc := range badInputs {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.src), "x.hcl")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse returned %v, %v; want an *Error", cfg, err)
			}
			if cfg != nil {
				t.Errorf("Parse returned a Config along with an error")
			}
			assertProblem(t, e, "x.hcl", tc.line, tc.msg)
			if tc.count > 0 && len(e.Problems) != tc.count {
				t.Errorf("got %d problems, want %d:\n%v", len(e.Problems), tc.count, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "x.hcl:") || !strings.Contains(line, "; ") {
					t.Errorf("problem %q is not FILE:LINE: what; fix", line)
				}
			}
		})
	}
}

func assertProblem(t *testing.T, e *Error, file string, line int, msg string) {
	t.Helper()
	want := Problem{File: file, Line: line}.String()
	for _, p := range e.Problems {
		if s := p.String(); strings.HasPrefix(s, want) && strings.Contains(s, msg) {
			return
		}
	}
	t.Errorf("no problem %q...%q in:\n%v", want, msg, e)
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := "cluster {\n  name = \"Prod\"\n}\nnode {\n  prioriy = 1\n}\nchecks {\n  interval = \"5 s\"\n}\n"
	_, err := Parse([]byte(src), "/etc/understudy/understudy.hcl")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{
		`/etc/understudy/understudy.hcl:2: cluster.name = "Prod" is not a valid name`,
		`/etc/understudy/understudy.hcl:4: missing required field node.name`,
		`/etc/understudy/understudy.hcl:4: missing required field node.address`,
		`/etc/understudy/understudy.hcl:5: unknown field "prioriy" in block node; did you mean "priority"?`,
		`/etc/understudy/understudy.hcl:8: checks.interval = "5 s" is not a duration; write a number with a unit, like "5s" or "500ms"`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s...", i, lines[i], want[i])
		}
	}
}

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = "full.hcl"
	want.Cluster.Name = "prod"
	want.Node.Name, want.Node.Address, want.Node.Tags = "mgr-1", "10.0.0.5", []string{"rack-1"}
	want.Postgres.DataDir, want.Postgres.Host = "/srv/pg", "10.0.0.5"
	want.Postgres.PgHBA = []string{"hostssl app app 10.0.0.0/24 scram-sha-256"}
	want.API.BasicAuthFile = "/etc/understudy/api-users"
	ctl := "/opt/mgmtworker/bin/ctl"
	want.Services = []Service{
		{Name: "rabbitmq", SystemdUnit: "rabbitmq-server.service", ActiveOnly: true},
		{Name: "mgmtworker", Start: []string{ctl, "start"}, Stop: []string{ctl, "stop"}, Status: []string{ctl, "status"}, ActiveOnly: true},
		{Name: "restservice", SystemdUnit: "restservice.service"},
		{Name: "stage", Command: []string{"/opt/manager/bin/stage", "--config", "/etc/stage.conf"}, ActiveOnly: true},
	}
	want.Files = []Files{{Name: "resources", Path: "/opt/manager/resources", Settle: time.Minute}}
	assertEqual(t, cfg, want)
	roundTrip(t, cfg)
}

func TestParseMinimalHasDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "min.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:    "min.hcl",
		Cluster: Cluster{Name: "prod", KVPrefix: "understudy", PartitionMode: "fence", MinorityTimeout: 5 * time.Second},
		Node:    Node{Name: "mgr-1", Address: "10.0.0.5", DataDir: "/var/lib/understudy", Priority: 100},
		Consul: Consul{Address: "127.0.0.1:8500", Scheme: "http", SessionTTL: 10 * time.Second,
			LockDelay: time.Second, LeaderLease: 3 * time.Second, RaftMultiplier: 1,
			GossipProbeInterval: 500 * time.Millisecond, GossipProbeTimeout: 250 * time.Millisecond, GossipSuspicionMult: 3, Outage: OutageFailsafe},
		Postgres: Postgres{BinDir: "/usr/lib/postgresql/15/bin", DataDir: "/var/lib/understudy/postgres",
			Host: "10.0.0.5", Port: 5432, User: "postgres", Database: "postgres", OSUser: "postgres",
			MaximumLagOnFailover: 16 << 20, ConnectTimeout: 2 * time.Second},
		Checks:    Checks{Interval: time.Second, HeartbeatInterval: 15 * time.Second, TTLMultiplier: 1, FailFast: true},
		API:       API{Listen: ":8008", Open: DefaultOpen()},
		Syncthing: Syncthing{Port: 22000, APIPort: 8384},
		Logging:   Logging{Dir: DefaultLogDir},
	}
	assertEqual(t, cfg, want)
	roundTrip(t, cfg)
}

// TestLoggingDir: logging.dir defaults to /var/log/understudy, "" turns
// cluster.log off (and survives a round trip), a relative path is refused.
func TestLoggingDir(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"logging {\n  dir = \"\"\n}\n"), "f.hcl")
	if err != nil || cfg.ClusterLogPath() != "" {
		t.Fatalf("dir = \"\": %v, cluster.log at %q", err, cfg.ClusterLogPath())
	}
	roundTrip(t, cfg)
	if cfg, _ := Parse([]byte(minimal), "f.hcl"); cfg.ClusterLogPath() != "/var/log/understudy/cluster.log" {
		t.Fatalf("default cluster.log at %q", cfg.ClusterLogPath())
	}
	_, err = Parse([]byte(minimal+"logging {\n  dir = \"log\"\n}\n"), "f.hcl")
	if err == nil || !strings.Contains(err.Error(), "f.hcl:7: logging.dir = \"log\" is not an absolute path") {
		t.Fatalf("relative dir: %v", err)
	}
}

func TestDerivedDefaultsFollowNode(t *testing.T) {
	src := "cluster { name = \"prod\" }\nnode {\n  name = \"a\"\n  address = \"db-a.example.com\"\n  data_dir = \"/srv/u\"\n}\n"
	cfg, err := Parse([]byte(src), "d.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Postgres.DataDir != "/srv/u/postgres" || cfg.Postgres.Host != "db-a.example.com" {
		t.Errorf("postgres data_dir %q host %q; want them to follow node", cfg.Postgres.DataDir, cfg.Postgres.Host)
	}
}

// With scheme "https" the address and the TLS files follow node.data_dir,
// where `cluster start` and `cluster join` write them.
func TestHTTPSDefaultsFollowDataDir(t *testing.T) {
	src := "cluster { name = \"prod\" }\nnode {\n  name = \"a\"\n  address = \"10.0.0.5\"\n  data_dir = \"/srv/u\"\n}\nconsul {\n  scheme = \"https\"\n}\n"
	cfg, err := Parse([]byte(src), "d.hcl")
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Consul
	if c.Address != "127.0.0.1:8501" || c.CAFile != "/srv/u/tls/ca.pem" || c.CertFile != "/srv/u/tls/node.pem" || c.KeyFile != "/srv/u/tls/node-key.pem" {
		t.Errorf("consul %+v; want 127.0.0.1:8501 and the files under /srv/u/tls", c)
	}
	if c.TokenFile != "/srv/u/acl/daemons.token" || cfg.ManagementTokenFile() != "/srv/u/acl/management.token" {
		t.Errorf("consul token_file %q, management token %q; want them under /srv/u/acl", c.TokenFile, cfg.ManagementTokenFile())
	}
	// PostgreSQL authenticates with files of its own, through copies.
	p := cfg.Postgres
	if p.CAFile != "/srv/u/tls/postgres-ca.pem" || p.CertFile != "/srv/u/tls/postgres.pem" || p.KeyFile != "/srv/u/tls/postgres-key.pem" || p.TLSDir != "/srv/u/postgres-tls" {
		t.Errorf("postgres TLS files %q %q %q in %q; want the PostgreSQL ones under /srv/u/tls, copied to /srv/u/postgres-tls", p.CAFile, p.CertFile, p.KeyFile, p.TLSDir)
	}
	roundTrip(t, cfg)
}

func TestRendering(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Postgres.MaximumLagOnFailover = 1000
	cfg.Consul.SessionTTL = 90 * time.Second
	cfg.Checks.HeartbeatInterval = time.Hour
	out := cfg.HCL()
	for _, want := range []string{
		"maximum_lag_on_failover = 1000\n",
		`session_ttl           = "1m30s"`,
		`leader_lease          = "3s"`,
		`raft_multiplier       = 1`,
		`heartbeat_interval = "1h"`,
		`interval           = "1s"`,
		`service "mgmtworker" {`,
		`start       = ["/opt/mgmtworker/bin/ctl", "start"]`,
		"service \"stage\" {\n  command     = [\"/opt/manager/bin/stage\", \"--config\", \"/etc/stage.conf\"]\n  active_only = true\n}",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	roundTrip(t, cfg)
}

func TestValidateCodeBuiltConfig(t *testing.T) {
	c := Default()
	err := c.Validate()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Default() without names validated: %v", err)
	}
	if got := e.Problems[0].String(); got != `missing required field cluster.name; add name = "prod" to the cluster block` {
		t.Errorf("first problem %q", got)
	}
	c.Cluster.Name, c.Node.Name, c.Node.Address, c.Postgres.Host = "test", "n1", "127.0.0.1", "127.0.0.1"
	if err := c.Validate(); err != nil {
		t.Errorf("valid Config built in code: %v", err)
	}
}

func TestValidateAfterParseKeepsLines(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Checks.Interval = time.Millisecond
	var e *Error
	if !errors.As(cfg.Validate(), &e) {
		t.Fatal("want an *Error")
	}
	assertProblem(t, e, "full.hcl", 27, `checks.interval = "1ms" is shorter than 100ms`)
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "understudy.hcl")
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v; want fs.ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Node.Name != "mgr-1" {
		t.Errorf("Load: Path %q node %q", cfg.Path, cfg.Node.Name)
	}
}

func TestSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		out  string
	}{
		{"0", 0, "0"}, {"1024", 1024, `"1kB"`}, {"1000", 1000, "1000"}, {"1B", 1, "1"},
		{"512kB", 512 << 10, `"512kB"`}, {"16MB", 16 << 20, `"16MB"`}, {"1GB", 1 << 30, `"1GB"`},
		{"2TB", 2 << 40, `"2TB"`}, {"1536MB", 1536 << 20, `"1536MB"`},
	} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if out := formatSize(got); out != tc.out {
			t.Errorf("formatSize(%d) = %s; want %s", got, out, tc.out)
		}
	}
	for _, bad := range []string{"", "MB", "16 MB", "16mb", "1.5GB", "-1", "16MiB", "9999999999TB", "99999999999999999999"} {
		if n, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d; want an error", bad, n)
		}
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{"a.hcl", 3, "m"}, "a.hcl:3: m"},
		{Problem{"a.hcl", 0, "m"}, "a.hcl: m"},
		{Problem{"", 3, "m"}, "line 3: m"},
		{Problem{"", 0, "m"}, "m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v.String() = %q; want %q", tc.p, got, tc.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Consul.Token = "secret"
	if r := c.Redacted(); strings.Contains(r.HCL(), "secret") || c.Consul.Token != "secret" {
		t.Errorf("Redacted leaked the token or changed the original")
	}
}

// roundTrip asserts that the rendering of cfg parses back to cfg.
func roundTrip(t testing.TB, cfg *Config) {
	t.Helper()
	out := cfg.HCL()
	again, err := Parse([]byte(out), cfg.Path)
	if err != nil {
		t.Fatalf("rendering does not parse: %v\n%s", err, out)
	}
	assertEqual(t, again, cfg)
}

func assertEqual(t testing.TB, got, want *Config) {
	t.Helper()
	g, w := *got, *want
	g.src, w.src = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("configs differ:\n got %+v\nwant %+v", g, w)
	}
}

// A Config built in code says "command" with a non-nil slice, as the file
// does by writing the field.
func TestValidateCodeBuiltCommand(t *testing.T) {
	c := Default()
	c.Cluster.Name, c.Node.Name, c.Node.Address, c.Postgres.Host = "test", "n1", "127.0.0.1", "127.0.0.1"
	c.Services = []Service{{Name: "w", Command: []string{"/bin/sleep", "100"}}}
	if err := c.Validate(); err != nil {
		t.Errorf("valid supervised service: %v", err)
	}
	c.Services = []Service{{Name: "w", Command: []string{}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "service.w.command = [] is empty") {
		t.Errorf("empty command: %v; want it reported as empty", err)
	}
}

func TestCheckPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src := minimal + "files \"ok\" { path = \"" + dir + "\" }\n" +
		"files \"gone\" { path = \"/nonexistent/understudy-files\" }\n" +
		"files \"plain\" { path = \"" + file + "\" }\n"
	// The file itself is "ok"'s path's child: overlap is Validate's, not
	// CheckPaths', so parse without it.
	cfg, err := Parse([]byte(strings.Replace(src, "files \"plain\" { path = \""+file+"\" }\n", "", 1)), "x.hcl")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Files = append(cfg.Files, Files{Name: "plain", Path: file, Settle: time.Minute})
	err = cfg.CheckPaths()
	if err == nil {
		t.Fatal("CheckPaths accepted a missing path and a plain file")
	}
	for _, want := range []string{
		`x.hcl:7: files.gone.path = "/nonexistent/understudy-files" does not exist; create the directory (mkdir -p /nonexistent/understudy-files)`,
		`files.plain.path = "` + file + `" is not a directory`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "files.ok") {
		t.Errorf("an existing directory was refused:\n%v", err)
	}
}

// TestMinorityTimeoutFollowsTheLease: unwritten, cluster.minority_timeout is
// 5 s, or more when a longer lease or interval needs more, so raising the
// lease alone never makes the file invalid.
func TestMinorityTimeoutFollowsTheLease(t *testing.T) {
	for _, tc := range []struct {
		extra string
		want  time.Duration
	}{
		{"", 5 * time.Second},
		{"consul {\n  leader_lease = \"6s\"\n  session_ttl = \"20s\"\n  lock_delay = \"5s\"\n}\n", 8 * time.Second},
		{"checks {\n  interval = \"4s\"\n}\n", 8 * time.Second},
	} {
		cfg, err := Parse([]byte(minimal+tc.extra), "m.hcl")
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := cfg.Cluster.MinorityTimeout; got != tc.want {
			t.Errorf("%q: minority_timeout %v, want %v", tc.extra, got, tc.want)
		}
	}
}

// TestActiveMinorityWarns: the mode is valid (asynchronous) and config
// check's warning says it can lose acknowledged writes; fence warns of
// nothing.
func TestActiveMinorityWarns(t *testing.T) {
	c, err := Parse([]byte("cluster {\n  name = \"prod\"\n  partition_mode = \"active-minority\"\n}\n"+minimal[26:]), "x.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "can lose acknowledged writes") {
		t.Fatalf("warnings %q", w)
	}
	c, err = Parse([]byte(minimal), "x.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("fence warns %q", w)
	}
}
