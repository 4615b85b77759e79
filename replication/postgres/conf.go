package postgres

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// confFile holds every setting understudy owns, in the data directory
	// so that it moves with it (a clone, a rewind) and is rewritten after.
	confFile = "understudy.conf"
	// includeLine pulls confFile into postgresql.conf. include_if_exists
	// rather than include: a data directory whose understudy.conf was lost
	// still starts, with PostgreSQL's defaults, instead of not at all.
	includeLine = "include_if_exists = 'understudy.conf'"
	// hbaBegin and hbaEnd mark understudy's sections of pg_hba.conf and
	// pg_ident.conf.
	hbaBegin = "# BEGIN understudy"
	hbaEnd   = "# END understudy"
	// identMap is the pg_ident.conf map of the certificate lines.
	identMap = "understudy"
	// pgpassFile is the libpq password file written next to the data
	// directory when postgres.password_file is set.
	pgpassFile = "understudy.pgpass"
)

// confParams is what understudy.conf is rendered from.
type confParams struct {
	Node string
	Host string
	Port int
	// Upstream is the primary to stream from; nil on a primary, or on a
	// standby that waits for an election with no upstream.
	Upstream *Upstream
	User     string
	// PassFile is the libpq password file primary_conninfo names; "" for none.
	PassFile string
	// TLS are the server's certificate files and the ones primary_conninfo
	// logs in with; zero without TLS.
	TLS            tlsFiles
	ConnectTimeout time.Duration
	// Extra is appended as it is (tests: fsync = off).
	Extra string
}

// renderConf writes understudy.conf. Every setting is there in every role,
// an empty primary_conninfo on a primary included: an explicit value also
// overrides one left earlier in postgresql.conf by hand, and the file reads
// the same on every node.
func renderConf(p confParams) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by understudy for node %s. It is rewritten at every role change:", p.Node)
	w("# change understudy's configuration, not this file. Settings in")
	w("# postgresql.auto.conf (ALTER SYSTEM) still win over these.")
	w("# The cluster-wide parameters (understudy cluster config set) come first, so")
	w("# that the settings below, which understudy needs, win over them.")
	w("include_if_exists = %s", quoteConf(paramsFile))
	w("listen_addresses = %s", quoteConf(p.Host))
	w("port = %d", p.Port)
	w("# No Unix socket: socket paths under deep data directories exceed the 107")
	w("# bytes Linux allows, and understudy and its tools connect over TCP.")
	w("unix_socket_directories = ''")
	w("# Names the instance in ps and in the server log.")
	w("cluster_name = %s", quoteConf(p.Node))
	if p.TLS.Cert != "" {
		w("# TLS with the node's PostgreSQL certificate. The CA file makes the server")
		w("# ask every client for a certificate and accept only one the cluster's")
		w("# PostgreSQL CA signed;")
		w("# pg_hba.conf requires one of understudy's user.")
		w("ssl = on")
		w("ssl_cert_file = %s", quoteConf(p.TLS.Cert))
		w("ssl_key_file = %s", quoteConf(p.TLS.Key))
		w("ssl_ca_file = %s", quoteConf(p.TLS.CA))
	}
	w("wal_level = replica")
	w("hot_standby = on")
	w("# pg_rewind copies only the pages changed since the timelines diverged; it")
	w("# can tell which only when the first change of a page after a checkpoint is")
	w("# WAL-logged in full, hint bits included (or with data checksums, which Init")
	w("# turns on). Without it a failed primary could only come back by a clone.")
	w("wal_log_hints = on")
	w("# When each transaction committed: after a partition in which both sides")
	w("# took writes (partition_mode active-minority), the side written last stays.")
	w("track_commit_timestamp = on")
	w("max_wal_senders = 10")
	w("max_replication_slots = 10")
	w("# Lets a standby that was stopped for a moment catch up without its slot.")
	w("wal_keep_size = '128MB'")
	w("# A slot holds WAL for its member however long the member is gone; past this")
	w("# the slot is given up (the member must be cloned again) rather than the")
	w("# primary's disk filling up and taking the active node down.")
	w("max_slot_wal_keep_size = '4GB'")
	w("# The primary keeps rows a standby's queries still read, instead of the")
	w("# standby cancelling those queries.")
	w("hot_standby_feedback = on")
	w("# After a failover, follow the new primary onto its timeline.")
	w("recovery_target_timeline = 'latest'")
	if p.Upstream == nil {
		w("primary_conninfo = ''")
		w("primary_slot_name = ''")
	} else {
		w("primary_conninfo = %s", quoteConf(primaryConninfo(p)))
		w("primary_slot_name = %s", quoteConf(SlotName(p.Node)))
	}
	if p.Extra != "" {
		b.WriteString(p.Extra)
		if !strings.HasSuffix(p.Extra, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// primaryConninfo is the libpq connection string a standby streams with.
// application_name is the member name: it is how the primary tells standbys
// apart (pg_stat_replication, synchronous_standby_names), since several may
// connect from one address.
func primaryConninfo(p confParams) string {
	kv := [][2]string{
		{"host", p.Upstream.Host},
		{"port", strconv.Itoa(p.Upstream.Port)},
		{"user", p.User},
		{"application_name", p.Node},
	}
	kv = append(kv, authParams(p.PassFile, p.TLS)...)
	kv = append(kv, [2]string{"connect_timeout", strconv.Itoa(connectTimeoutSeconds(p.ConnectTimeout))})
	return conninfo(kv)
}

// conninfo joins key/value pairs into a libpq connection string, quoting
// values that need it.
func conninfo(kv [][2]string) string {
	parts := make([]string, len(kv))
	for j, p := range kv {
		v := p[1]
		if v == "" || strings.ContainsAny(v, " '\\\t\n") {
			v = quoteDSN(v)
		}
		parts[j] = p[0] + "=" + v
	}
	return strings.Join(parts, " ")
}

// connectTimeoutSeconds is libpq's connect_timeout: whole seconds, and libpq
// treats 1 as 2 anyway.
func connectTimeoutSeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 2)
}

// quoteConf quotes a string value for postgresql.conf, where a backslash
// starts an escape and a quote is doubled.
func quoteConf(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// withInclude returns postgresql.conf with the include line appended, or
// unchanged (ok false) when the line is already there.
func withInclude(conf string) (string, bool) {
	for _, l := range strings.Split(conf, "\n") {
		if strings.TrimSpace(l) == includeLine {
			return conf, false
		}
	}
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	// Last in the file, so that understudy's settings win over earlier ones.
	return conf + "\n# understudy's settings (see understudy.conf); keep this line last.\n" + includeLine + "\n", true
}

// hbaSection is understudy's part of pg_hba.conf, followed by the
// operator's postgres.pg_hba lines (inside the section, so that they are
// rewritten with it).
//
// On a TLS node understudy's user logs in with a client certificate the
// cluster's PostgreSQL CA signed, over TLS, from anywhere, and in no other way: the
// daemons, the standbys' walreceivers, pg_basebackup and pg_rewind all do.
// Elsewhere (a node not set up by `cluster start` or `cluster join`: tests)
// it trusts loopback only, which is no setting for real hosts.
func hbaSection(user string, tls bool, extra []string) string {
	var b strings.Builder
	b.WriteString(hbaBegin + " (managed by understudy; rewritten by Init, Clone, Rewind and every start)\n")
	if tls {
		u := hbaName(user)
		b.WriteString("# understudy's user, replication included: a certificate the PostgreSQL CA\n")
		b.WriteString("# signed (pg_ident.conf maps it to the user), over TLS, and nothing else.\n")
		fmt.Fprintf(&b, "hostssl  all          %s  all  cert  map=%s\n", u, identMap)
		fmt.Fprintf(&b, "hostssl  replication  %s  all  cert  map=%s\n", u, identMap)
	} else {
		b.WriteString(`# Loopback only, with trust: this node has no TLS files (it was not set up
# by cluster start or cluster join), so it is fit for one machine only.
host    all          all  127.0.0.0/8  trust
host    replication  all  127.0.0.0/8  trust
host    all          all  ::1/128      trust
host    replication  all  ::1/128      trust
`)
	}
	if len(extra) > 0 {
		b.WriteString("# postgres.pg_hba of understudy's configuration:\n")
		for _, l := range extra {
			b.WriteString(strings.TrimSpace(l) + "\n")
		}
	}
	return b.String() + hbaEnd + "\n"
}

// identSection is understudy's part of pg_ident.conf: every certificate the
// cluster's PostgreSQL CA signed, whatever its CN (a node's name), is understudy's user.
// All nodes are equal peers: any of them may be the active one tomorrow and
// then needs all the user may do, so no node's certificate is worth less
// than another's and a mapping per node would protect nothing. A certificate
// of another CA never gets here: the TLS handshake refuses it (ssl_ca_file).
func identSection(user string) string {
	return hbaBegin + " (managed by understudy; rewritten by Init, Clone, Rewind and every start)\n" +
		"# Any certificate of the PostgreSQL CA (pg_hba.conf's cert lines) logs in as understudy's user.\n" +
		identMap + "  /^.*$  " + hbaName(user) + "\n" + hbaEnd + "\n"
}

// hbaName writes a user name for pg_hba.conf and pg_ident.conf: as it is
// when it is a plain word, else in double quotes, so that a name like "all"
// or "+admins" is not read as a keyword or a group.
func hbaName(s string) string {
	plain := s != "" && !slices.Contains([]string{"all", "sameuser", "samerole", "samegroup", "replication"}, s)
	for j, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || j > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.')) {
			plain = false
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// withSection returns an edit that puts section first in a file (the first
// matching line of pg_hba.conf wins, and initdb's own lines ask loopback for
// a password), replacing any earlier copy of it; the edit's ok is false when
// nothing changed.
func withSection(section string) func(string) (string, bool) {
	return func(file string) (string, bool) {
		rest := file
		if b := strings.Index(file, hbaBegin); b >= 0 {
			if e := strings.Index(file[b:], hbaEnd); e >= 0 {
				end := b + e + len(hbaEnd)
				if end < len(file) && file[end] == '\n' {
					end++
				}
				rest = file[:b] + file[end:]
			}
		}
		out := section + strings.TrimLeft(rest, "\n")
		return out, out != file
	}
}

// pgpass renders a libpq password file line for every host, port and
// database: the file is understudy's own, for this one user.
func pgpass(user, password string) string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return "*:*:*:" + esc.Replace(user) + ":" + esc.Replace(password) + "\n"
}

// readPassword reads postgres.password_file the way Client does: the whole
// file, trimmed.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read postgres password: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// passfile is the libpq password file the tools and primary_conninfo use, or
// "" when no password is configured. postgres.password_file holds the bare
// password (as Client reads it), which libpq's passfile format does not
// accept, and it is root's; so a pgpass copy owned by the OS user is written
// next to the data directory, outside it so that neither a clone nor a
// rewind carries it around or removes it.
func (i *Instance) passfile(u osUser) (string, error) {
	if i.cfg.PasswordFile == "" {
		return "", nil
	}
	pw, err := readPassword(i.cfg.PasswordFile)
	if err != nil {
		return "", err
	}
	path := filepath.Join(filepath.Dir(i.dataDir), pgpassFile)
	// libpq ignores a password file that group or others can read.
	if err := writeFileAtomic(path, []byte(pgpass(i.cfg.User, pw)), 0o600, u); err != nil {
		return "", err
	}
	return path, nil
}

// writeSettings writes understudy.conf in dir for the given upstream.
func (i *Instance) writeSettings(u osUser, dir string, up *Upstream) error {
	pf, err := i.passfile(u)
	if err != nil {
		return err
	}
	conf := renderConf(confParams{Node: i.node, Host: i.cfg.Host, Port: i.cfg.Port, Upstream: up,
		User: i.cfg.User, PassFile: pf, TLS: tlsCopies(i.cfg), ConnectTimeout: i.cfg.ConnectTimeout, Extra: i.extraConf})
	return writeFileAtomic(filepath.Join(dir, confFile), []byte(conf), 0o600, u)
}

// ensureConfig makes dir's configuration understudy's: understudy.conf, the
// include line in postgresql.conf, the pg_hba section and, on a TLS node,
// the pg_ident section. A clone or a rewind brings the source's copies of
// them, which name the source's address. The TLS copies that understudy.conf
// names must be there already (copyTLS).
func (i *Instance) ensureConfig(u osUser, dir string, up *Upstream) error {
	if err := i.writeSettings(u, dir, up); err != nil {
		return err
	}
	if err := editFile(filepath.Join(dir, "postgresql.conf"), u, withInclude); err != nil {
		return err
	}
	tls := i.cfg.CertFile != ""
	if err := editFile(filepath.Join(dir, "pg_hba.conf"), u, withSection(hbaSection(i.cfg.User, tls, i.cfg.PgHBA))); err != nil {
		return err
	}
	if !tls {
		return nil
	}
	return editFile(filepath.Join(dir, "pg_ident.conf"), u, withSection(identSection(i.cfg.User)))
}

// editFile rewrites path through edit when edit changes it, keeping its mode.
func editFile(path string, u osUser, edit func(string) (string, bool)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	out, changed := edit(string(b))
	if !changed {
		return nil
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	return writeFileAtomic(path, []byte(out), mode, u)
}

// setStandbySignal creates standby.signal in dir (standby) or removes it and
// recovery.signal (primary). The signal files are what decides the role at
// the next start, whatever the configuration says.
func setStandbySignal(u osUser, dir string, standby bool) error {
	path := filepath.Join(dir, "standby.signal")
	if standby {
		return writeFileAtomic(path, nil, 0o600, u)
	}
	for _, name := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	return nil
}
