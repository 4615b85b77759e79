package lifecycle_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/understudy-ha/understudy/internal/testenv"
	"github.com/understudy-ha/understudy/lifecycle"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// TestJoinKilledDuringTheCloneRunsAgain: `understudy cluster join` killed in
// the middle of pg_basebackup (with pg_basebackup) leaves a node that can run
// the same join again and succeed.
func TestJoinKilledDuringTheCloneRunsAgain(t *testing.T) {
	t.Parallel() // see "Parallel lifecycle tests" in start_test.go
	testenv.RequireIntegration(t)
	ctx := context.Background()
	acfg, ao := freshNode(t, "a", "127.0.0.48")
	res, err := lifecycle.Start(ctx, acfg, ao)
	if err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	conn, err := pgx.Connect(ctx, postgres.ConnString(acfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	// About 60 MB to copy at 4 MB/s: a clone of some 15 s to interrupt.
	if _, err := conn.Exec(ctx, "create table big as select g, repeat('x', 160) as pad from generate_series(1, 300000) g"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	bcfg, bo := freshNode(t, "b", "127.0.0.49", `clone_max_rate = "4MB"`)
	active := strings.TrimPrefix(acfg.APIURL(), "https://")
	// The token on standard input, as an operator keeps it out of ps.
	cmd := exec.Command(bo.Understudy, "cluster", "join", active, "--token", "-", "--ca-fingerprint", res.CAFingerprint,
		"--config", bcfg.Path, "--consul", bo.Consul, "--processes", "supervised",
		"--consul-serf-port", strconv.Itoa(bo.SerfPort), "--consul-server-port", strconv.Itoa(bo.ServerPort))
	cmd.Stdin = strings.NewReader(res.Token + "\n")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	// Kill it, with its pg_basebackup, once the copy is under way.
	progress := regexp.MustCompile(`\] +([0-9]+)%`)
	killed := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Split(scanLinesOrCR)
		for sc.Scan() {
			if m := progress.FindStringSubmatch(sc.Text()); m != nil {
				if pct, _ := strconv.Atoi(m[1]); pct >= 10 && pct < 90 {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
					killed <- pct
					return
				}
			}
		}
		close(killed)
	}()
	select {
	case pct, ok := <-killed:
		if !ok {
			t.Fatal("cluster join ended before the clone could be interrupted")
		}
		t.Logf("cluster join killed with the clone at %d%%", pct)
	case <-time.After(2 * time.Minute):
		t.Fatal("the clone did not start within 2 minutes")
	}
	_ = cmd.Wait()
	if _, found, _ := lifecycle.ReadIdentity(bcfg.Node.DataDir); found {
		t.Fatal("an interrupted join wrote the node's identity")
	}

	// The same join again, to the end (at full speed now).
	bcfg.Postgres.CloneMaxRate = 0
	if err := lifecycle.Join(ctx, bcfg, bo, lifecycle.JoinOptions{Active: active, Token: res.Token, CAFingerprint: res.CAFingerprint}); err != nil {
		t.Fatalf("cluster join again: %v", err)
	}
	if _, err := os.Stat(bcfg.Postgres.DataDir + ".clone"); !os.IsNotExist(err) {
		t.Errorf("the interrupted clone's directory is still there: %v", err)
	}
	bconn, err := pgx.Connect(ctx, postgres.ConnString(bcfg.Postgres))
	if err != nil {
		t.Fatal(err)
	}
	defer bconn.Close(ctx)
	var n int
	if err := bconn.QueryRow(ctx, "select count(*) from big").Scan(&n); err != nil || n != 300000 {
		t.Fatalf("rows on b after the join: %d, %v", n, err)
	}
}

// scanLinesOrCR splits on \n and \r: the progress bar redraws its line.
func scanLinesOrCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, c := range data {
		if c == '\n' || c == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
