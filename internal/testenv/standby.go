package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// StartStandby clones primary with pg_basebackup into a new instance, starts
// it as a hot standby and returns when it streams from primary.
// opts.Settings are added to the postgresql.conf it copied from primary.
func StartStandby(t testing.TB, primary *Postgres, opts PostgresOptions) *Postgres {
	t.Helper()
	p := newPostgres(t, opts)
	// -R writes standby.signal (and a primary_conninfo, which follow
	// replaces with one that names this standby); -X stream fetches the WAL of
	// the backup over a second connection, so the clone is consistent even
	// if the primary recycles WAL meanwhile; -c fast starts at once rather
	// than after the primary's next spread checkpoint.
	p.run(t, "pg_basebackup", "-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", p.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-w")
	if len(opts.Settings) > 0 {
		p.appendFile(t, "postgresql.conf", "\n# testenv standby\n"+settingsConf(opts.Settings))
	}
	p.follow(t, primary)
	return p
}

// FollowFrom makes the instance a standby of primary: it rewrites
// primary_conninfo in postgresql.auto.conf, makes sure standby.signal
// exists, restarts it and returns when it streams from primary. The two
// must share history: primary was promoted from a sibling, or the instance
// was rewound. A running instance is stopped first.
func (p *Postgres) FollowFrom(t testing.TB, primary *Postgres) {
	t.Helper()
	if p.Process != nil && p.Process.running() {
		p.Stop(t)
	}
	p.follow(t, primary)
}

func (p *Postgres) follow(t testing.TB, primary *Postgres) {
	t.Helper()
	// application_name is how the primary tells its standbys apart: they
	// all connect from 127.0.0.1, whatever address they listen on.
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s", primary.Host, primary.Port, p.Name)
	auto := filepath.Join(p.DataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(auto)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if l != "" && !strings.HasPrefix(strings.TrimSpace(l), "primary_conninfo") {
			lines = append(lines, l)
		}
	}
	lines = append(lines, "primary_conninfo = '"+conninfo+"'")
	p.writeFile(t, auto, strings.Join(lines, "\n")+"\n")
	if _, err := os.Stat(filepath.Join(p.DataDir, "standby.signal")); err != nil {
		p.writeFile(t, filepath.Join(p.DataDir, "standby.signal"), "")
	}
	p.Start(t)
	waitRunning(t, pgStartTimeout, []*Process{p.Process}, func() error { return p.streamingFrom(primary) })
}

// streamingFrom returns nil when the instance is in recovery and its WAL
// receiver streams from primary.
func (p *Postgres) streamingFrom(primary *Postgres) error {
	var recovery bool
	if err := p.queryRow("select pg_is_in_recovery()", &recovery); err != nil {
		return err
	}
	if !recovery {
		return fmt.Errorf("%s: not in recovery", p.Name)
	}
	var status, host string
	var port int
	err := p.queryRow("select status, coalesce(sender_host, ''), coalesce(sender_port, 0) from pg_stat_wal_receiver",
		&status, &host, &port)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: no WAL receiver running", p.Name)
	}
	if err != nil {
		return err
	}
	if status != "streaming" || host != primary.Host || port != primary.Port {
		return fmt.Errorf("%s: WAL receiver %q from %s:%d, want streaming from %s", p.Name, status, host, port, primary.Addr())
	}
	return nil
}

// Promote promotes a standby and returns when it accepts writes.
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	var ok bool
	if err := p.queryRow("select pg_promote(true, 60)", &ok); err != nil || !ok {
		t.Fatalf("%s: promote: %v (done: %v)", p.Name, err, ok)
	}
	waitRunning(t, pgStartTimeout, []*Process{p.Process}, func() error {
		var recovery bool
		if err := p.queryRow("select pg_is_in_recovery()", &recovery); err != nil {
			return err
		}
		if recovery {
			return fmt.Errorf("%s: still in recovery", p.Name)
		}
		return nil
	})
}

// writeFile writes a file of the data directory, owned by PostgreSQL's user.
func (p *Postgres) writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p.user.own(t, path)
}
