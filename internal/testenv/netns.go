package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a network of test hosts: each Host is a network namespace of its
// own with one veth pair into a bridge in the test's namespace, so the test
// reaches every host (as HAProxy and an operator would) and the hosts reach
// each other through the bridge, each with its own ports, loopback and
// routes. Partitions are nftables rules inside the hosts' namespaces, which
// leave the test's own access alone.
type Net struct {
	t      testing.TB
	bridge string
	prefix string // "10.213.N."
	Gate   string // the bridge's address: where the test's traffic comes from
	Hosts  []*Host
}

// Host is one network namespace of a Net.
type Host struct {
	Name string
	NS   string // the namespace, for `ip netns exec`
	IP   string
	net  *Net
}

var netSeq atomic.Int32

// RequireNetns skips a test on a machine where it cannot make network
// namespaces (not root, or no iproute2 or nftables).
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireIntegration(t)
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, p := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("network namespaces need %s (make deps installs it)", p)
		}
	}
}

// NewNet makes n hosts named names[i] (each "h<i>" when names is short).
// Everything is removed when the test ends, after the processes the test
// started in them (cleanups run last-in, first-out).
func NewNet(t testing.TB, names ...string) *Net {
	t.Helper()
	RequireNetns(t)
	seq := int(netSeq.Add(1))
	// One /24 per Net, from the process and a counter, so parallel test
	// binaries and Nets do not collide; IFNAMSIZ allows 15 characters.
	id := (os.Getpid()*7 + seq) % 200
	n := &Net{t: t, bridge: fmt.Sprintf("usbr%d-%d", os.Getpid()%100000, seq), prefix: fmt.Sprintf("10.213.%d.", id+20)}
	n.Gate = n.prefix + "1"
	if len(n.bridge) > 15 {
		n.bridge = n.bridge[:15]
	}
	t.Cleanup(n.remove)
	n.run("ip", "link", "add", n.bridge, "type", "bridge")
	n.run("ip", "addr", "add", n.Gate+"/24", "dev", n.bridge)
	n.run("ip", "link", "set", n.bridge, "up")
	for i, name := range names {
		h := &Host{Name: name, NS: fmt.Sprintf("us%d-%d-%s", os.Getpid()%100000, seq, name), IP: fmt.Sprintf("%s%d", n.prefix, 10+i), net: n}
		outer, inner := fmt.Sprintf("usv%d-%d-%d", os.Getpid()%10000, seq, i), "eth0"
		if len(outer) > 15 {
			outer = outer[:15]
		}
		n.run("ip", "netns", "add", h.NS)
		n.Hosts = append(n.Hosts, h)
		n.run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", h.NS)
		n.run("ip", "link", "set", outer, "master", n.bridge, "up")
		h.run("ip", "addr", "add", h.IP+"/24", "dev", inner)
		h.run("ip", "link", "set", inner, "up")
		h.run("ip", "link", "set", "lo", "up")
		h.run("ip", "route", "add", "default", "via", n.Gate)
		h.run("nft", "add", "table", "inet", "partition")
		h.run("nft", "add", "chain", "inet", "partition", "in", "{ type filter hook input priority 0 ; }")
		h.run("nft", "add", "chain", "inet", "partition", "out", "{ type filter hook output priority 0 ; }")
	}
	return n
}

func (n *Net) run(name string, args ...string) {
	n.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (h *Host) run(name string, args ...string) {
	h.net.t.Helper()
	if out, err := h.Command(context.Background(), name, args...).CombinedOutput(); err != nil {
		h.net.t.Fatalf("on %s: %s %s: %v: %s", h.Name, name, strings.Join(args, " "), err, out)
	}
}

// Command runs name inside the host's namespace. `ip netns exec` execs the
// program, so the PID is the program's own.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Partition cuts every host of a from every host of b, both ways (neither
// side receives anything from the other); the test still reaches both.
func (n *Net) Partition(a, b []*Host) {
	n.t.Helper()
	for _, x := range a {
		for _, y := range b {
			x.drop(y, true, true)
			y.drop(x, true, true)
		}
	}
}

// Isolate cuts h from every other host, both ways.
func (n *Net) Isolate(h *Host) {
	n.t.Helper()
	n.Partition([]*Host{h}, n.others(h))
}

// Deafen makes h receive nothing from the other hosts while they still
// receive what h sends: a one-way partition.
func (n *Net) Deafen(h *Host) {
	n.t.Helper()
	for _, o := range n.others(h) {
		h.drop(o, true, false)
	}
}

// Heal removes every partition.
func (n *Net) Heal() {
	n.t.Helper()
	for _, h := range n.Hosts {
		h.run("nft", "flush", "chain", "inet", "partition", "in")
		h.run("nft", "flush", "chain", "inet", "partition", "out")
	}
}

func (n *Net) others(h *Host) []*Host {
	var out []*Host
	for _, o := range n.Hosts {
		if o != h {
			out = append(out, o)
		}
	}
	return out
}

// drop makes h drop what comes from o (in) and what it sends to o (out).
func (h *Host) drop(o *Host, in, out bool) {
	if in {
		h.run("nft", "add", "rule", "inet", "partition", "in", "ip", "saddr", o.IP, "drop")
	}
	if out {
		h.run("nft", "add", "rule", "inet", "partition", "out", "ip", "daddr", o.IP, "drop")
	}
}

// remove deletes the namespaces and the bridge, whatever state the test left
// them in; a namespace's veth end goes with it.
func (n *Net) remove() {
	for _, h := range n.Hosts {
		if out, err := exec.Command("ip", "netns", "del", h.NS).CombinedOutput(); err != nil {
			n.t.Logf("cleanup: ip netns del %s: %v: %s", h.NS, err, out)
		}
	}
	if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil {
		n.t.Logf("cleanup: ip link del %s: %v: %s", n.bridge, err, out)
	}
}

// Do runs f on a thread inside the host's network namespace: a socket f
// opens belongs to the host, and keeps working from any goroutine after.
func (h *Host) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it dies with this goroutine
		// rather than return to the scheduler in another namespace.
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+h.NS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace of %s: %w", h.Name, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace of %s: %w", h.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Reach tries a TCP connection from h to addr, with timeout.
func (h *Host) Reach(addr string, timeout time.Duration) error {
	return h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
