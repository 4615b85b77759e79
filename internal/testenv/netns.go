package testenv

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/understudy-ha/understudy/internal/netns"
)

// Net is a network of test hosts (internal/netns): each Host a network
// namespace of its own on a bridge in the test's namespace, so the test
// reaches every host and the hosts reach each other, each with its own
// ports, loopback and routes. Partitions leave the test's access alone.
type Net struct {
	t     testing.TB
	net   *netns.Net
	Gate  string // the bridge's address: where the test's traffic comes from
	Hosts []*Host
}

// Host is one network namespace of a Net: Command, Do and Reach run in it.
type Host struct {
	netns.Host
}

var netSeq atomic.Int32

// RequireNetns skips a test on a machine where it cannot make network
// namespaces (not root, or no iproute2 or nftables).
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireIntegration(t)
	if err := netns.Available(); err != nil {
		t.Skipf("%v (make deps installs the programs)", err)
	}
}

// NewNet makes a host per name. Everything is removed when the test ends,
// after the processes the test started in them (cleanups run last-in,
// first-out).
func NewNet(t testing.TB, names ...string) *Net {
	t.Helper()
	RequireNetns(t)
	seq := int(netSeq.Add(1))
	// One /24 per Net, from the process and a counter, so parallel test
	// binaries and Nets do not collide; IFNAMSIZ allows 15 characters.
	pid := os.Getpid()
	id := (pid*7 + seq) % 200
	bridge := fmt.Sprintf("usbr%d-%d", pid%100000, seq)
	veth := fmt.Sprintf("usv%d-%d-", pid%10000, seq)
	if len(bridge) > 15 {
		bridge = bridge[:15]
	}
	if len(veth) > 14 {
		veth = veth[:14]
	}
	n, err := netns.Create(netns.Spec{Bridge: bridge, Subnet: fmt.Sprintf("10.213.%d", id+20),
		NSPrefix: fmt.Sprintf("us%d-%d-", pid%100000, seq), Veth: veth, Names: names})
	if err != nil {
		t.Fatalf("make hosts %v: %v", names, err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	tn := &Net{t: t, net: n, Gate: n.Gate}
	for _, h := range n.Hosts {
		tn.Hosts = append(tn.Hosts, &Host{Host: h})
	}
	return tn
}

func (n *Net) check(err error) {
	n.t.Helper()
	if err != nil {
		n.t.Fatal(err)
	}
}

// Partition cuts every host of a from every host of b, both ways.
func (n *Net) Partition(a, b []*Host) {
	n.t.Helper()
	n.check(n.net.Partition(plain(a), plain(b)))
}

// Isolate cuts h from every other host, both ways.
func (n *Net) Isolate(h *Host) {
	n.t.Helper()
	n.check(n.net.Isolate(h.Host))
}

// Deafen makes h receive nothing from the other hosts while they still
// receive what h sends: a one-way partition.
func (n *Net) Deafen(h *Host) {
	n.t.Helper()
	n.check(n.net.Deafen(h.Host))
}

// Heal removes every partition.
func (n *Net) Heal() {
	n.t.Helper()
	n.check(n.net.Heal())
}

func plain(hs []*Host) []netns.Host {
	out := make([]netns.Host, len(hs))
	for i, h := range hs {
		out[i] = h.Host
	}
	return out
}
