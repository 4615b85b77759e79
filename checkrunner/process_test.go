package checkrunner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// writeConfig writes the HCL file an operator would write for n.
func writeConfig(t testing.TB, n *node) string {
	t.Helper()
	c := n.cfg
	hcl := fmt.Sprintf(`
cluster { name = %q }
node {
  name     = %q
  address  = %q
  data_dir = %q
}
consul   { address = %q }
postgres {
  host     = %q
  port     = %d
  data_dir = %q
}
checks { interval = %q }
api    { listen = %q }
logging { dir = %q }
`, c.Cluster.Name, c.Node.Name, c.Node.Address, c.Node.DataDir, c.Consul.Address,
		c.Postgres.Host, c.Postgres.Port, c.Postgres.DataDir, c.Checks.Interval.String(), c.API.Listen, c.Logging.Dir)
	path := filepath.Join(c.Node.DataDir, "understudy.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// notifySocket listens where a systemd unit's NOTIFY_SOCKET would point and
// collects what the daemon sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	ns := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.mu.Lock()
			ns.msgs = append(ns.msgs, string(buf[:n]))
			ns.mu.Unlock()
		}
	}()
	return ns
}

func (ns *notifySocket) saw(s string) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, m := range ns.msgs {
		if strings.Contains(m, s) {
			return nil
		}
	}
	return fmt.Errorf("no %q among %d notifications %q", s, len(ns.msgs), ns.msgs)
}

func TestSIGTERMMarksChecksCriticalBeforeExit(t *testing.T) {
	testenv.RequireIntegration(t)
	bin := testenv.Understudy(t)
	c := testenv.StartConsulDev(t)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	a := newNode(t, "a", c, pg)
	setLeader(t, a.cc, "a")
	ns := listenNotify(t)

	cmd := exec.Command(bin, "check-runner", "--config", writeConfig(t, a))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("check-runner stderr:\n%s", stderr.String())
		}
	})
	ctx := context.Background()
	testenv.Eventually(t, 10*time.Second, func() error {
		return errors.Join(a.expect(ctx, consul.Passing), ns.saw("READY=1"), ns.saw("STATUS=active; all checks passing"))
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("check-runner exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("check-runner did not exit within 10s of SIGTERM")
	}
	// The TTL (2s) has not run out yet, and the output is the daemon's own
	// words: it marked the checks itself, before it exited.
	got, err := a.checks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"postgres-listening", "postgres-query", "postgres-role", "services", "consul", "heartbeat"} {
		if c := got[name]; c.Status != consul.Critical || !strings.Contains(c.Output, "shutting down") {
			t.Errorf("%s after SIGTERM: %s %q, want critical, shutting down", name, c.Status, c.Output)
		}
	}
	if err := ns.saw("STOPPING=1"); err != nil {
		t.Error(err)
	}
}

// BenchmarkCheckRunner runs the real check-runner at interval 1s against a
// real Consul and PostgreSQL for UNDERSTUDY_BENCH_SECONDS (default 60) and
// reports its peak RSS and its CPU time extrapolated to one hour.
func BenchmarkCheckRunner(b *testing.B) {
	seconds := 60
	if s, err := strconv.Atoi(os.Getenv("UNDERSTUDY_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	bin := testenv.Understudy(b)
	c := testenv.StartConsulDev(b)
	pg := testenv.StartPostgres(b, testenv.PostgresOptions{})
	a := newNode(b, "a", c, pg)
	setLeader(b, a.cc, "a")
	cmd := exec.Command(bin, "check-runner", "--config", writeConfig(b, a))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	b.ResetTimer()
	time.Sleep(time.Duration(seconds) * time.Second) // the measurement window itself
	b.StopTimer()
	rssKB, cpu, err := procStats(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := a.expect(ctx, consul.Passing); err != nil {
		b.Fatalf("checks not passing at the end of the run: %v", err)
	}
	b.ReportMetric(float64(rssKB)/1024, "MB-peak-RSS")
	b.ReportMetric(cpu.Seconds()*3600/float64(seconds), "cpu-s/hour")
	b.Logf("check-runner over %ds at interval 1s: peak RSS %.1f MB, CPU %v (%.1f s per hour)",
		seconds, float64(rssKB)/1024, cpu, cpu.Seconds()*3600/float64(seconds))
}

// procStats reads a process's peak RSS (VmHWM) and its user+system CPU time.
func procStats(pid int) (peakRSSKB int, cpu time.Duration, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			peakRSSKB, _ = strconv.Atoi(f[1])
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	const clockTicks = 100 // USER_HZ on Linux
	return peakRSSKB, time.Duration(utime+stime) * time.Second / clockTicks, nil
}
