// Package netns makes hosts with network stacks of their own on one
// machine: Linux network namespaces, each with a veth pair into a bridge in
// the caller's namespace, so the caller reaches every host (as HAProxy, psql
// and an operator would) and the hosts reach each other through the bridge.
// Partitions are nftables rules inside the hosts' namespaces, symmetric or
// one-way, which leave the caller's own access alone. The dev cluster and
// the tests' hosts (internal/testenv) are built on it.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Net is a bridge and the hosts on it. It is plain data: a Net saved as
// JSON and read back (by the next `understudy dev` command) works the same.
type Net struct {
	Bridge string `json:"bridge"`
	// Gate is the bridge's address: where the caller's traffic to the
	// hosts comes from, and the hosts' default route.
	Gate  string `json:"gate"`
	Hosts []Host `json:"hosts"`
}

// Host is one network namespace of a Net.
type Host struct {
	Name string `json:"name"`
	NS   string `json:"netns"` // for `ip netns exec`; /run/netns/NS
	IP   string `json:"address"`
}

// Spec describes a Net to create. Names must be short enough for the
// kernel's 15-character interface names: Bridge, and Veth followed by the
// host's index.
type Spec struct {
	Bridge string
	// Subnet is the /24 the hosts live in, written as its first three
	// octets ("10.213.7"); the bridge takes .1, host i takes .10+i.
	Subnet string
	// NSPrefix names the namespaces: NSPrefix + host name.
	NSPrefix string
	Veth     string
	Names    []string
}

// Available says why this machine cannot make a Net, or nil: it takes root
// and the ip and nft programs (Debian's iproute2 and nftables).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, p := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("network namespaces need %s (apt-get install iproute2 nftables)", p)
		}
	}
	return nil
}

// Create makes the bridge and one namespace per name. Leftovers of the same
// names (a Net whose owner died) are removed first; on failure, what was
// made is removed again.
func Create(s Spec) (_ *Net, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	for _, name := range append([]string{s.Bridge}, veths(s)...) {
		if len(name) > 15 {
			return nil, fmt.Errorf("interface name %q is longer than 15 characters", name)
		}
	}
	n := &Net{Bridge: s.Bridge, Gate: s.Subnet + ".1"}
	for i, name := range s.Names {
		n.Hosts = append(n.Hosts, Host{Name: name, NS: s.NSPrefix + name, IP: fmt.Sprintf("%s.%d", s.Subnet, 10+i)})
	}
	_ = n.Remove() // leftovers
	defer func() {
		if err != nil {
			_ = n.Remove()
		}
	}()
	if err := run("ip", "link", "add", n.Bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := run("ip", "addr", "add", n.Gate+"/24", "dev", n.Bridge); err != nil {
		return nil, err
	}
	if err := run("ip", "link", "set", n.Bridge, "up"); err != nil {
		return nil, err
	}
	vs := veths(s)
	for i, h := range n.Hosts {
		if err := run("ip", "netns", "add", h.NS); err != nil {
			return nil, err
		}
		steps := [][]string{
			{"ip", "link", "add", vs[i], "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"ip", "link", "set", vs[i], "master", n.Bridge, "up"},
		}
		for _, st := range steps {
			if err := run(st[0], st[1:]...); err != nil {
				return nil, err
			}
		}
		inner := [][]string{
			{"ip", "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			{"ip", "link", "set", "lo", "up"},
			{"ip", "route", "add", "default", "via", n.Gate},
			{"nft", "add", "table", "inet", "partition"},
			{"nft", "add", "chain", "inet", "partition", "in", "{ type filter hook input priority 0 ; }"},
			{"nft", "add", "chain", "inet", "partition", "out", "{ type filter hook output priority 0 ; }"},
		}
		for _, st := range inner {
			if err := h.run(st[0], st[1:]...); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

func veths(s Spec) []string {
	out := make([]string, len(s.Names))
	for i := range s.Names {
		out[i] = fmt.Sprintf("%s%d", s.Veth, i)
	}
	return out
}

// Remove deletes the namespaces and the bridge; a namespace's veth end goes
// with it. Processes still running in a namespace keep it alive, without
// its link to the bridge: stop them first.
func (n *Net) Remove() error {
	var errs []error
	for _, h := range n.Hosts {
		if _, err := os.Stat(h.Path()); err == nil {
			errs = append(errs, run("ip", "netns", "del", h.NS))
		}
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		errs = append(errs, run("ip", "link", "del", n.Bridge))
	}
	return errors.Join(errs...)
}

// Host returns the host called name.
func (n *Net) Host(name string) (Host, error) {
	for _, h := range n.Hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("no host %q in the network (hosts: %s)", name, strings.Join(n.names(), ", "))
}

func (n *Net) names() []string {
	var out []string
	for _, h := range n.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// Partition cuts every host of a from every host of b, both ways (neither
// side receives anything from the other); the caller still reaches both.
func (n *Net) Partition(a, b []Host) error {
	var errs []error
	for _, x := range a {
		for _, y := range b {
			errs = append(errs, x.drop(y, true, true), y.drop(x, true, true))
		}
	}
	return errors.Join(errs...)
}

// Isolate cuts h from every other host, both ways.
func (n *Net) Isolate(h Host) error {
	return n.Partition([]Host{h}, n.Others(h))
}

// Deafen makes h receive nothing from the other hosts while they still
// receive what h sends: a one-way partition.
func (n *Net) Deafen(h Host) error {
	return n.OneWay([]Host{h}, n.Others(h))
}

// OneWay makes the hosts of a receive nothing from those of b, which still
// receive what a sends.
func (n *Net) OneWay(a, b []Host) error {
	var errs []error
	for _, x := range a {
		for _, y := range b {
			errs = append(errs, x.drop(y, true, false))
		}
	}
	return errors.Join(errs...)
}

// Heal removes every partition.
func (n *Net) Heal() error {
	var errs []error
	for _, h := range n.Hosts {
		errs = append(errs, h.run("nft", "flush", "chain", "inet", "partition", "in"),
			h.run("nft", "flush", "chain", "inet", "partition", "out"))
	}
	return errors.Join(errs...)
}

// Others is every host but h.
func (n *Net) Others(h Host) []Host {
	var out []Host
	for _, o := range n.Hosts {
		if o.Name != h.Name {
			out = append(out, o)
		}
	}
	return out
}

// Cut lists, per host, the hosts whose traffic it drops now: what the
// partitions are, read back from the rules.
func (n *Net) Cut() (map[string][]string, error) {
	byIP := map[string]string{}
	for _, h := range n.Hosts {
		byIP[h.IP] = h.Name
	}
	out := map[string][]string{}
	for _, h := range n.Hosts {
		b, err := h.Command(context.Background(), "nft", "list", "chain", "inet", "partition", "in").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("on %s: nft list: %v: %s", h.Name, err, b)
		}
		for _, f := range strings.Fields(string(b)) {
			if name, ok := byIP[f]; ok {
				out[h.Name] = append(out[h.Name], name)
			}
		}
	}
	return out, nil
}

// drop makes h drop what comes from o (in) and what it sends to o (out).
func (h Host) drop(o Host, in, out bool) error {
	var errs []error
	if in {
		errs = append(errs, h.run("nft", "add", "rule", "inet", "partition", "in", "ip", "saddr", o.IP, "drop"))
	}
	if out {
		errs = append(errs, h.run("nft", "add", "rule", "inet", "partition", "out", "ip", "daddr", o.IP, "drop"))
	}
	return errors.Join(errs...)
}

// Path is the namespace's file, for setns(2) and nsenter --net.
func (h Host) Path() string { return "/run/netns/" + h.NS }

// Command runs name inside the host's namespace. `ip netns exec` execs the
// program, so the PID is the program's own.
func (h Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

func (h Host) run(name string, args ...string) error {
	if out, err := h.Command(context.Background(), name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("on %s: %s %s: %v: %s", h.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Do runs f on a thread inside the namespace at path: a socket f opens, and
// a process f starts (fork(2) copies the calling thread's namespaces),
// belongs to that namespace. Sockets keep working from any goroutine after;
// work f hands to other goroutines runs in the caller's namespace.
func Do(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it dies with this goroutine
		// rather than return to the scheduler in another namespace.
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Do runs f inside the host's namespace (see the function Do).
func (h Host) Do(f func() error) error { return Do(h.Path(), f) }

// Reach tries a TCP connection from h to addr, with timeout.
func (h Host) Reach(addr string, timeout time.Duration) error {
	return h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
