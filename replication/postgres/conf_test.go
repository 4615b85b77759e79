package postgres

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
)

func TestRenderConfPrimary(t *testing.T) {
	conf := renderConf(confParams{Node: "mgr-1", Host: "10.0.0.5", Port: 5433, User: "postgres"})
	for _, want := range []string{
		"listen_addresses = '10.0.0.5'\n",
		"port = 5433\n",
		"unix_socket_directories = ''\n",
		"cluster_name = 'mgr-1'\n",
		"wal_level = replica\n",
		"hot_standby = on\n",
		"wal_log_hints = on\n",
		"max_wal_senders = 10\n",
		"max_replication_slots = 10\n",
		"wal_keep_size = '128MB'\n",
		"hot_standby_feedback = on\n",
		"recovery_target_timeline = 'latest'\n",
		"primary_conninfo = ''\n",
		"primary_slot_name = ''\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "ssl") {
		t.Errorf("TLS settings on a node without TLS:\n%s", conf)
	}
}

func TestRenderConfStandby(t *testing.T) {
	tests := []struct {
		name string
		p    confParams
		want []string
	}{
		{"plain",
			confParams{Node: "mgr-2", Host: "10.0.0.6", Port: 5432, User: "postgres",
				Upstream: &Upstream{Host: "10.0.0.5", Port: 5432}},
			[]string{
				"primary_conninfo = 'host=10.0.0.5 port=5432 user=postgres application_name=mgr-2 connect_timeout=2'\n",
				"primary_slot_name = 'understudy_mgr_2'\n",
			}},
		{"passfile and timeout",
			confParams{Node: "b", Host: "h", Port: 1, User: "repl", PassFile: "/var/lib/understudy/understudy.pgpass",
				ConnectTimeout: 4500 * time.Millisecond, Upstream: &Upstream{Host: "a.example", Port: 6000}},
			[]string{
				"primary_conninfo = 'host=a.example port=6000 user=repl application_name=b passfile=/var/lib/understudy/understudy.pgpass connect_timeout=5'\n",
			}},
		{"quotes in values are escaped twice: conninfo, then conf",
			confParams{Node: "b", Host: "h", Port: 1, User: "o'brien", Upstream: &Upstream{Host: "a", Port: 1}},
			[]string{`primary_conninfo = 'host=a port=1 user=''o\\''brien'' application_name=b connect_timeout=2'` + "\n"}},
		{"certificate",
			confParams{Node: "b", Host: "h", Port: 1, User: "postgres", Upstream: &Upstream{Host: "a", Port: 5432},
				TLS: tlsFiles{CA: "/u/postgres-tls/ca.pem", Cert: "/u/postgres-tls/postgres.pem", Key: "/u/postgres-tls/postgres-key.pem"}},
			[]string{
				"ssl = on\nssl_cert_file = '/u/postgres-tls/postgres.pem'\nssl_key_file = '/u/postgres-tls/postgres-key.pem'\nssl_ca_file = '/u/postgres-tls/ca.pem'\n",
				"primary_conninfo = 'host=a port=5432 user=postgres application_name=b sslmode=verify-ca sslrootcert=/u/postgres-tls/ca.pem sslcert=/u/postgres-tls/postgres.pem sslkey=/u/postgres-tls/postgres-key.pem connect_timeout=2'\n",
			}},
		{"extra settings come last",
			confParams{Node: "b", Host: "h", Port: 1, User: "u", Extra: "fsync = off"},
			[]string{"primary_slot_name = ''\nfsync = off\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conf := renderConf(tc.p)
			for _, want := range tc.want {
				if !strings.Contains(conf, want) {
					t.Errorf("conf lacks %q:\n%s", want, conf)
				}
			}
		})
	}
}

func TestQuoteConf(t *testing.T) {
	for in, want := range map[string]string{
		"":        "''",
		"a b":     "'a b'",
		"it's":    "'it''s'",
		`C:\x`:    `'C:\\x'`,
		"FIRST 1": "'FIRST 1'",
	} {
		if got := quoteConf(in); got != want {
			t.Errorf("quoteConf(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSlotName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct{ node, want string }{
		{"mgr-1", "understudy_mgr_1"},
		{"a", "understudy_a"},
		{"Node.One", "understudy_node_one"},
		{"x_y", "understudy_x_y"},
		{long, SlotName(long)}, // stable
	}
	for _, tc := range tests {
		if got := SlotName(tc.node); got != tc.want {
			t.Errorf("SlotName(%q) = %q, want %q", tc.node, got, tc.want)
		}
	}
	for _, node := range []string{long, long + "b", strings.Repeat("é", 40)} {
		got := SlotName(node)
		if len(got) > 63 {
			t.Errorf("SlotName(%q) = %q: %d bytes, PostgreSQL allows 63", node, got, len(got))
		}
		for _, r := range got {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
				t.Errorf("SlotName(%q) = %q has %q", node, got, r)
			}
		}
	}
	if SlotName(long) == SlotName(long[:62]+"b") {
		t.Errorf("two long names that differ at the end share slot %q", SlotName(long))
	}
}

func TestWithInclude(t *testing.T) {
	in := "max_connections = 100\n#port = 5432"
	out, changed := withInclude(in)
	if !changed || !strings.HasPrefix(out, in+"\n") || !strings.HasSuffix(out, "\n"+includeLine+"\n") {
		t.Fatalf("withInclude(%q) = %q, %v", in, out, changed)
	}
	again, changed := withInclude(out)
	if changed || again != out {
		t.Fatalf("second withInclude changed the file: %q", again)
	}
}

func TestWithHBASection(t *testing.T) {
	withHBASection := withSection(hbaSection("postgres", false, nil))
	initdb := "# TYPE  DATABASE        USER            ADDRESS                 METHOD\nlocal all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
	out, changed := withHBASection(initdb)
	if !changed || !strings.HasPrefix(out, hbaBegin) || !strings.HasSuffix(out, initdb) {
		t.Fatalf("withHBASection: %v\n%s", changed, out)
	}
	if !strings.Contains(out, "host    replication  all  127.0.0.0/8  trust\n") {
		t.Errorf("no loopback replication line:\n%s", out)
	}
	again, changed := withHBASection(out)
	if changed || again != out {
		t.Fatalf("second withHBASection changed the file:\n%s", again)
	}
	// A section that moved (an operator's edit) or is stale is replaced in
	// place of the old one, and put first.
	stale := initdb + hbaBegin + "\nhost all all 0.0.0.0/0 trust\n" + hbaEnd + "\nhost all all 10.0.0.0/8 scram-sha-256\n"
	out, _ = withHBASection(stale)
	if strings.Contains(out, "0.0.0.0/0") || strings.Count(out, hbaBegin) != 1 || !strings.HasSuffix(out, "10.0.0.0/8 scram-sha-256\n") {
		t.Fatalf("stale section not replaced:\n%s", out)
	}
}

// settingLines are the lines of a pg_hba.conf or pg_ident.conf that are
// not comments.
func settingLines(file string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(file, "\n"), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestHBASection(t *testing.T) {
	app := []string{"hostssl app app 10.0.0.0/24 scram-sha-256", " host all all 127.0.0.0/8 trust "}
	tests := []struct {
		name  string
		tls   bool
		extra []string
		want  []string
	}{
		{"certificates only, and nothing weaker, on a TLS node", true, nil, []string{
			"hostssl  all          postgres  all  cert  map=understudy",
			"hostssl  replication  postgres  all  cert  map=understudy",
		}},
		{"the operator's lines after understudy's", true, app, []string{
			"hostssl  all          postgres  all  cert  map=understudy",
			"hostssl  replication  postgres  all  cert  map=understudy",
			"hostssl app app 10.0.0.0/24 scram-sha-256",
			"host all all 127.0.0.0/8 trust",
		}},
		{"loopback trust without TLS, then the operator's lines", false, app[:1], []string{
			"host    all          all  127.0.0.0/8  trust",
			"host    replication  all  127.0.0.0/8  trust",
			"host    all          all  ::1/128      trust",
			"host    replication  all  ::1/128      trust",
			"hostssl app app 10.0.0.0/24 scram-sha-256",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sec := hbaSection("postgres", tc.tls, tc.extra)
			if !strings.HasPrefix(sec, hbaBegin+" ") || !strings.HasSuffix(sec, "\n"+hbaEnd+"\n") {
				t.Fatalf("section not between the markers:\n%s", sec)
			}
			if got := settingLines(sec); !slices.Equal(got, tc.want) {
				t.Errorf("section lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	// A node that gets TLS (a data directory made without it, then
	// adopted): the trust section is replaced, initdb's lines stay after.
	initdb := "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
	plain, _ := withSection(hbaSection("postgres", false, nil))(initdb)
	out, changed := withSection(hbaSection("postgres", true, nil))(plain)
	if !changed || strings.Contains(out, "trust") || !strings.HasSuffix(out, hbaEnd+"\n"+initdb) {
		t.Errorf("TLS section over the trust section:\n%s", out)
	}
}

func TestIdentSection(t *testing.T) {
	initdb := "# PostgreSQL User Name Maps\n# MAPNAME       SYSTEM-USERNAME         PG-USERNAME\n"
	out, changed := withSection(identSection("postgres"))(initdb)
	if !changed || !strings.HasPrefix(out, hbaBegin) || !strings.HasSuffix(out, hbaEnd+"\n"+initdb) {
		t.Fatalf("ident section:\n%s", out)
	}
	if got, want := settingLines(out), []string{"understudy  /^.*$  postgres"}; !slices.Equal(got, want) {
		t.Errorf("ident lines %q, want %q", got, want)
	}
	if again, changed := withSection(identSection("postgres"))(out); changed || again != out {
		t.Errorf("second edit changed the file:\n%s", again)
	}
	if got, want := settingLines(identSection("all")), []string{`understudy  /^.*$  "all"`}; !slices.Equal(got, want) {
		t.Errorf("ident lines %q, want %q", got, want)
	}
}

func TestHBAName(t *testing.T) {
	for in, want := range map[string]string{
		"postgres":    "postgres",
		"Repl_user-2": "Repl_user-2",
		"all":         `"all"`,
		"replication": `"replication"`,
		"+admins":     `"+admins"`,
		"@file":       `"@file"`,
		"1st":         `"1st"`,
		"two words":   `"two words"`,
		`o"x`:         `"o""x"`,
	} {
		if got := hbaName(in); got != want {
			t.Errorf("hbaName(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestConnString(t *testing.T) {
	cfg := config.Postgres{Host: "10.0.0.5", Port: 5432, User: "postgres", Database: "postgres"}
	if got, want := ConnString(cfg), "host=10.0.0.5 port=5432 user=postgres dbname=postgres sslmode=prefer"; got != want {
		t.Errorf("ConnString without TLS = %q, want %q", got, want)
	}
	cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.TLSDir = "/u/tls/ca.pem", "/u/tls/node.pem", "/u/tls/node-key.pem", "/u/postgres-tls"
	want := "host=10.0.0.5 port=5432 user=postgres dbname=postgres sslmode=verify-ca sslrootcert=/u/postgres-tls/ca.pem " +
		"sslcert=/u/postgres-tls/postgres.pem sslkey=/u/postgres-tls/postgres-key.pem"
	if got := ConnString(cfg); got != want {
		t.Errorf("ConnString with TLS = %q, want %q (the copies, which postgres.os_user reads too)", got, want)
	}
}

func TestPgpass(t *testing.T) {
	if got, want := pgpass("post:gres", `pa\ss:w`), `*:*:*:post\:gres:pa\\ss\:w`+"\n"; got != want {
		t.Errorf("pgpass = %q, want %q", got, want)
	}
}

func TestSynchronousStandbyNames(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{nil, ""},
		{[]string{"b"}, `FIRST 1 ("b")`},
		{[]string{"mgr-2", "mgr-3", "mgr-2"}, `FIRST 1 ("mgr-2", "mgr-3")`},
		{[]string{`we"ird`}, `FIRST 1 ("we""ird")`},
	}
	for _, tc := range tests {
		got, err := synchronousStandbyNames(tc.names)
		if err != nil || got != tc.want {
			t.Errorf("synchronousStandbyNames(%q) = %q, %v; want %q", tc.names, got, err, tc.want)
		}
	}
	for _, bad := range [][]string{{""}, {"a\nb"}} {
		if _, err := synchronousStandbyNames(bad); err == nil {
			t.Errorf("synchronousStandbyNames(%q) accepted", bad)
		}
	}
	if got := quoteLiteral(`FIRST 1 ("it's")`); got != `'FIRST 1 ("it''s")'` {
		t.Errorf("quoteLiteral = %s", got)
	}
}

func TestParseProgress(t *testing.T) {
	var calls [][2]int64
	w := &progressWriter{progress: func(done, total int64) { calls = append(calls, [2]int64{done, total}) }}
	out := "    0/22530 kB (0%), 0/1 tablespace\r 2048/22530 kB (9%), 0/1 tablespace\n" +
		"pg_basebackup: error: something\n22538/22538 kB (100%), 1/1 tablespace\n"
	// Written in awkward pieces, as a pipe may deliver it.
	for len(out) > 0 {
		n := min(7, len(out))
		if _, err := w.Write([]byte(out[:n])); err != nil {
			t.Fatal(err)
		}
		out = out[n:]
	}
	w.flush()
	want := [][2]int64{{0, 22530 << 10}, {2048 << 10, 22530 << 10}, {22538 << 10, 22538 << 10}}
	if len(calls) != len(want) {
		t.Fatalf("progress calls %v, want %v", calls, want)
	}
	for j := range want {
		if calls[j] != want[j] {
			t.Errorf("call %d: %v, want %v", j, calls[j], want[j])
		}
	}
	if len(w.tail) != 1 || w.tail[0] != "pg_basebackup: error: something" {
		t.Errorf("tail %q", w.tail)
	}
}

func TestOutputTail(t *testing.T) {
	out := "a\n\nb\r\nc\n"
	if got := outputTail(out, 2); got != " (output: b | c)" {
		t.Errorf("outputTail = %q", got)
	}
	if got := outputTail("\n \n", 2); got != "" {
		t.Errorf("outputTail of blank output = %q", got)
	}
}
