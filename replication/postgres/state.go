package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
)

// Client asks one PostgreSQL server about itself. It keeps one connection
// and opens a new one after any error, so a restarted server is picked up on
// the next call without restarting the daemon; a call that finds its
// connection ended by the server is tried once more on a new one (with).
type Client struct {
	cfg config.Postgres

	mu   sync.Mutex
	conn *pgx.Conn
}

// NewClient returns a client of the server cfg names. It does not connect.
func NewClient(cfg config.Postgres) *Client { return &Client{cfg: cfg} }

// Addr is host:port of the server, for messages.
func (c *Client) Addr() string { return net.JoinHostPort(c.cfg.Host, strconv.Itoa(c.cfg.Port)) }

// Dial opens a TCP connection and closes it: is anything listening?
func (c *Client) Dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Addr())
	if err != nil {
		return fmt.Errorf("connect to postgres at %s: %w", c.Addr(), err)
	}
	return conn.Close()
}

// Ping runs "select 1".
func (c *Client) Ping(ctx context.Context) error {
	return c.with(ctx, func(conn *pgx.Conn) error {
		var one int
		return conn.QueryRow(ctx, "select 1").Scan(&one)
	})
}

// State is what a server says of its role and WAL positions.
type State struct {
	InRecovery    bool
	ServerVersion string
	// Timeline is the primary's current timeline, or the timeline a standby
	// receives (0 when its WAL receiver is not running).
	Timeline   uint32
	WriteLSN   cluster.LSN // primary only
	ReceiveLSN cluster.LSN // standby only
	ReplayLSN  cluster.LSN // standby only
	// Receiver is the standby's WAL receiver; nil when none is running.
	Receiver *Receiver
}

// Receiver is a standby's row of pg_stat_wal_receiver.
type Receiver struct {
	Status     string // "streaming" when healthy
	SenderHost string
	SenderPort int
}

// stateQuery asks everything in one round trip. The primary's timeline comes
// from the name of its current WAL file, as Patroni does: pg_control_checkpoint
// lags behind a promotion until the next checkpoint. pg_walfile_name fails
// during recovery, hence the CASE. A standby's timeline is its WAL receiver's
// (receiverQuery); when no receiver runs (the primary just died: exactly when
// an election asks) it is the newest timeline history file in pg_wal, which
// a standby fetches as it follows a timeline switch, or else the last
// restartpoint's timeline. Every standby of one primary answers alike, so
// the election compares like with like.
const stateQuery = `
select pg_is_in_recovery(),
       current_setting('server_version'),
       case when pg_is_in_recovery() then ''
            else pg_current_wal_lsn()::text end,
       case when pg_is_in_recovery() then
              greatest((select timeline_id from pg_control_checkpoint()),
                       (select max(('x' || substr(name, 1, 8))::bit(32)::int) from pg_ls_waldir()
                         where name ~ '^[0-9A-F]{8}[.]history$'))
            else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end,
       coalesce(pg_last_wal_receive_lsn()::text, ''),
       coalesce(pg_last_wal_replay_lsn()::text, '')`

// lastCommitQuery fails while commit timestamps are not tracked (the
// setting off, or, on a standby, off on its primary).
const lastCommitQuery = `select (pg_last_committed_xact()).timestamp`

// receiverQuery needs a superuser or pg_read_all_stats: other roles see NULL
// sender columns.
const receiverQuery = `
select status, coalesce(received_tli, 0), coalesce(sender_host, ''), coalesce(sender_port, 0)
from pg_stat_wal_receiver`

// State asks the server for its role and positions.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	err := c.with(ctx, func(conn *pgx.Conn) error {
		var write, recv, replay string
		var tli int32
		if err := conn.QueryRow(ctx, stateQuery).Scan(&st.InRecovery, &st.ServerVersion, &write, &tli, &recv, &replay); err != nil {
			return err
		}
		st.Timeline = uint32(tli)
		var err error
		if st.WriteLSN, err = parseOptionalLSN(write); err != nil {
			return err
		}
		if st.ReceiveLSN, err = parseOptionalLSN(recv); err != nil {
			return err
		}
		if st.ReplayLSN, err = parseOptionalLSN(replay); err != nil {
			return err
		}
		if !st.InRecovery {
			return nil
		}
		var r Receiver
		var rtli int32
		err = conn.QueryRow(ctx, receiverQuery).Scan(&r.Status, &rtli, &r.SenderHost, &r.SenderPort)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		st.Receiver = &r
		if rtli > 0 {
			st.Timeline = uint32(rtli)
		}
		return nil
	})
	if err != nil {
		return State{}, fmt.Errorf("read state of postgres at %s: %w", c.Addr(), err)
	}
	return st, nil
}

// LastCommit is when the last transaction this server committed or
// replayed committed (track_commit_timestamp); zero, with no error, when it
// does not know (the setting off, or no commit since it was turned on). It
// tells which side of an active-minority partition was written last; asked
// apart from State, whose callers run every interval and need it not.
func (c *Client) LastCommit(ctx context.Context) (time.Time, error) {
	var last *time.Time
	err := c.with(ctx, func(conn *pgx.Conn) error {
		err := conn.QueryRow(ctx, lastCommitQuery).Scan(&last)
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "55000" {
			return nil // "could not get commit timestamp data": not tracked
		}
		return err
	})
	if err != nil || last == nil {
		return time.Time{}, err
	}
	return last.UTC(), nil
}

func parseOptionalLSN(s string) (cluster.LSN, error) {
	if s == "" {
		return 0, nil
	}
	return cluster.ParseLSN(s)
}

// Close closes the connection, if one is open.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
}

func (c *Client) drop() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.conn.Close(ctx)
		c.conn = nil
	}
}

// with runs f on the client's connection, opening one if needed, and drops
// the connection when f fails: after a server crash the old connection is
// dead, and the next call must not trip over it again.
func (c *Client) with(ctx context.Context, f func(*pgx.Conn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	reused := c.conn != nil && !c.conn.IsClosed()
	if !reused {
		conn, err := c.connect(ctx)
		if err != nil {
			return err
		}
		c.conn = conn
	}
	err := f(c.conn)
	if err == nil {
		return nil
	}
	c.drop()
	if !reused || !endedByServer(err) || ctx.Err() != nil {
		return err
	}
	// A connection a restart of the server ended says so only on its next
	// use, maybe after the server is back: one fresh try tells whether the
	// server is down now. Without it a check-runner reported a standby
	// restarted a second earlier as failing, and Consul ended its session
	// just as a switchover chose it.
	conn, cerr := c.connect(ctx)
	if cerr != nil {
		return cerr
	}
	c.conn = conn
	if err := f(c.conn); err != nil {
		c.drop()
		return err
	}
	return nil
}

// endedByServer says whether err is a connection's end rather than an
// answer of a running server: the server terminated it (its shutdown, a
// crash) or the connection broke.
func endedByServer(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "57P01" || pe.Code == "57P02" // admin_shutdown, crash_shutdown
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *Client) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(ConnString(c.cfg))
	if err != nil {
		if c.cfg.TLSDir != "" { // pgx reads the certificate files here
			err = fmt.Errorf("%w; understudy copies PostgreSQL's TLS files to %s whenever it starts PostgreSQL", err, c.cfg.TLSDir)
		}
		return nil, err
	}
	cc.ConnectTimeout = c.cfg.ConnectTimeout
	cc.RuntimeParams["application_name"] = "understudy"
	if c.cfg.PasswordFile != "" {
		b, err := os.ReadFile(c.cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read postgres password: %w", err)
		}
		cc.Password = strings.TrimSpace(string(b))
	}
	return pgx.ConnectConfig(ctx, cc)
}

// quoteDSN quotes a value for a libpq key=value connection string.
func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
