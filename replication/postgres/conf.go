package postgres

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	hbaBegin    = "# BEGIN understudy"
	hbaEnd      = "# END understudy"
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
	PassFile       string
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
	w("listen_addresses = %s", quoteConf(p.Host))
	w("port = %d", p.Port)
	w("# No Unix socket: socket paths under deep data directories exceed the 107")
	w("# bytes Linux allows, and understudy and its tools connect over TCP.")
	w("unix_socket_directories = ''")
	w("# Names the instance in ps and in the server log.")
	w("cluster_name = %s", quoteConf(p.Node))
	w("wal_level = replica")
	w("hot_standby = on")
	w("# pg_rewind copies only the pages changed since the timelines diverged; it")
	w("# can tell which only when the first change of a page after a checkpoint is")
	w("# WAL-logged in full, hint bits included (or with data checksums, which Init")
	w("# turns on). Without it a failed primary could only come back by a clone.")
	w("wal_log_hints = on")
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
	if p.PassFile != "" {
		kv = append(kv, [2]string{"passfile", p.PassFile})
	}
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

// hbaSection is understudy's part of pg_hba.conf.
//
// It trusts loopback only: understudy's own connections and replication
// between instances on one machine (tests, a dev cluster). This is a
// documented default, not a production setting: hardening (scram-sha-256 for
// the peers, client certificates) comes later, and until then connections
// from other hosts need lines an operator adds after this section.
const hbaSection = hbaBegin + ` (managed by understudy; rewritten by Init, Clone and Rewind)
# Loopback only, with trust, until peer authentication (scram-sha-256 or
# certificates) is configured; lines for other hosts go below this section.
host    all          all  127.0.0.0/8  trust
host    replication  all  127.0.0.0/8  trust
host    all          all  ::1/128      trust
host    replication  all  ::1/128      trust
` + hbaEnd + "\n"

// withHBASection returns pg_hba.conf with understudy's section first (the
// first matching line wins, and initdb's own lines ask loopback for a
// password), replacing any earlier copy of it; ok is false when nothing
// changed.
func withHBASection(hba string) (string, bool) {
	rest := hba
	if b := strings.Index(hba, hbaBegin); b >= 0 {
		if e := strings.Index(hba[b:], hbaEnd); e >= 0 {
			end := b + e + len(hbaEnd)
			if end < len(hba) && hba[end] == '\n' {
				end++
			}
			rest = hba[:b] + hba[end:]
		}
	}
	out := hbaSection + strings.TrimLeft(rest, "\n")
	return out, out != hba
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
		User: i.cfg.User, PassFile: pf, ConnectTimeout: i.cfg.ConnectTimeout, Extra: i.extraConf})
	return writeFileAtomic(filepath.Join(dir, confFile), []byte(conf), 0o600, u)
}

// ensureConfig makes dir's configuration understudy's: understudy.conf, the
// include line in postgresql.conf and the pg_hba section. A clone or a rewind
// brings the source's copies of all three, which name the source's address.
func (i *Instance) ensureConfig(u osUser, dir string, up *Upstream) error {
	if err := i.writeSettings(u, dir, up); err != nil {
		return err
	}
	if err := editFile(filepath.Join(dir, "postgresql.conf"), u, withInclude); err != nil {
		return err
	}
	return editFile(filepath.Join(dir, "pg_hba.conf"), u, withHBASection)
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
