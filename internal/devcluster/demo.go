package devcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/wait"
)

// Demo shows a failover on a running dev cluster: rows written through
// HAProxy, the active node killed whole (SIGKILL of its Consul server,
// daemons and PostgreSQL), writes through HAProxy again once another node
// took over, every row still there; then the killed node is started again
// and rejoins as a standby. A file written in the active's shared directory
// before the kill is on every standby; one written on the new active after
// it reaches the others, the old active once it is back.
func Demo(ctx context.Context, s *State, o Options, out io.Writer) error {
	const rows = 100
	var conn *pgx.Conn
	if err := wait.Until(ctx, 10*time.Second, func() (err error) {
		conn, err = connect(ctx, s)
		return err
	}); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "create table if not exists demo (id bigint primary key, at timestamptz default now())"); err != nil {
		return fmt.Errorf("create table through haproxy: %w", err)
	}
	var start int64
	if err := conn.QueryRow(ctx, "select coalesce(max(id), 0) from demo").Scan(&start); err != nil {
		return err
	}
	for i := start + 1; i <= start+rows; i++ {
		if _, err := conn.Exec(ctx, "insert into demo (id) values ($1)", i); err != nil {
			return fmt.Errorf("insert through haproxy: %w", err)
		}
	}
	conn.Close(ctx)
	fmt.Fprintf(out, "wrote %d rows through haproxy (%s)\n", rows, s.HAProxy.Frontend)

	a, err := Active(ctx, s)
	if err != nil {
		return err
	}
	if err := demoFile(ctx, s, a, nil, "before-failover.txt", out); err != nil {
		return err
	}
	s.refresh()
	old := s.Nodes[a]
	fmt.Fprintf(out, "killing the active node %s: consul %d, postgres %d, check-runner %d, handler-runner %d, consul-watcher %d, syncthing %d (SIGKILL)\n",
		old.Name, old.PIDs.Consul, old.PIDs.Postgres, old.PIDs.CheckRunner, old.PIDs.HandlerRunner, old.PIDs.ConsulWatcher, old.PIDs.Syncthing)
	killed := time.Now()
	for _, pid := range []int{old.PIDs.Consul, old.PIDs.HandlerRunner, old.PIDs.CheckRunner, old.PIDs.ConsulWatcher, old.PIDs.Syncthing, old.PIDs.Postgres} {
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	id := start + rows + 1
	var took time.Duration
	err = wait.Until(ctx, 60*time.Second, func() error {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := connect(wctx, s)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		if _, err := c.Exec(wctx, "insert into demo (id) values ($1)", id); err != nil {
			return err
		}
		took = time.Since(killed)
		return nil
	})
	if err != nil {
		return fmt.Errorf("no write through haproxy after the kill: %w", err)
	}
	b, err := Active(ctx, s)
	if err != nil {
		return err
	}
	var count int64
	c, err := connect(ctx, s)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, "select count(*) from demo where id > $1 and id <= $2", start, id).Scan(&count); err != nil {
		return err
	}
	fmt.Fprintf(out, "failover: %s took over from %s; first write through haproxy %.1f s after the kill\n",
		s.Nodes[b].Name, old.Name, took.Seconds())
	if count != rows+1 {
		return fmt.Errorf("rows lost: %d of the %d written are there", count, rows+1)
	}
	fmt.Fprintf(out, "rows intact: all %d rows written before the kill and the one after are there\n", rows)
	if err := demoFile(ctx, s, b, &a, "after-failover.txt", out); err != nil {
		return err
	}

	fmt.Fprintf(out, "starting %s again: it rejoins as a standby of %s\n", old.Name, s.Nodes[b].Name)
	if err := StartNode(ctx, s, a, o); err != nil {
		return err
	}
	if err := WaitHealthy(ctx, s, clusterTimeout); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s is back, streaming from %s\n", old.Name, s.Nodes[b].Name)
	if dir := old.Files["shared"]; dir != "" {
		if err := waitFile(ctx, filepath.Join(dir, "after-failover.txt"), "after-failover.txt"); err != nil {
			return fmt.Errorf("%s, back as a standby, did not receive the file the new active wrote: %w", old.Name, err)
		}
		fmt.Fprintf(out, "%s has the file written on %s while it was down\n", old.Name, s.Nodes[b].Name)
	}
	return nil
}

// demoFile writes name in the shared directory of node a and waits until
// every other running node (all but skip) has it: the files block that
// Syncthing mirrors from the active node.
func demoFile(ctx context.Context, s *State, a int, skip *int, name string, out io.Writer) error {
	src := s.Nodes[a].Files["shared"]
	if src == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(src, name), []byte(name), 0o644); err != nil {
		return err
	}
	start := time.Now()
	for i, n := range s.Nodes {
		if i == a || (skip != nil && i == *skip) {
			continue
		}
		if err := waitFile(ctx, filepath.Join(n.Files["shared"], name), name); err != nil {
			return fmt.Errorf("the file %s written on the active %s did not reach %s: %w", name, s.Nodes[a].Name, n.Name, err)
		}
	}
	fmt.Fprintf(out, "wrote %s in %s on %s: on every standby after %.1f s\n", name, src, s.Nodes[a].Name, time.Since(start).Seconds())
	return nil
}

// waitFile waits until path holds content. The first file waits for the
// nodes' Syncthing to have found each other, hence the minute.
func waitFile(ctx context.Context, path, content string) error {
	return wait.Until(ctx, time.Minute, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(b) != content {
			return fmt.Errorf("%s holds %q", path, b)
		}
		return nil
	})
}

func connect(ctx context.Context, s *State) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=2", s.HAProxy.Frontend))
	if err != nil {
		return nil, fmt.Errorf("connect to postgres through haproxy %s: %w", s.HAProxy.Frontend, err)
	}
	return conn, nil
}
