package testenv

import (
	"net"
	"testing"
	"time"
)

// TestNetPartitions: hosts reach each other and the test reaches them;
// Isolate cuts a host off both ways, Deafen one way, Heal undoes both, and
// the test's own access is never cut.
func TestNetPartitions(t *testing.T) {
	n := NewNet(t, "a", "b", "c")
	a, b, c := n.Hosts[0], n.Hosts[1], n.Hosts[2]
	listen := func(h *Host) string {
		var ln net.Listener
		if err := h.Do(func() (err error) { ln, err = net.Listen("tcp", h.IP+":7000"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	addrs := map[*Host]string{a: listen(a), b: listen(b), c: listen(c)}
	reach := func(from, to *Host, want bool) {
		t.Helper()
		err := from.Reach(addrs[to], 300*time.Millisecond)
		if (err == nil) != want {
			t.Fatalf("%s -> %s: %v, want reachable %v", from.Name, to.Name, err, want)
		}
	}
	fromTest := func(to *Host) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addrs[to], time.Second)
		if err != nil {
			t.Fatalf("the test cannot reach %s: %v", to.Name, err)
		}
		conn.Close()
	}
	for _, x := range n.Hosts {
		fromTest(x)
		for _, y := range n.Hosts {
			if x != y {
				reach(x, y, true)
			}
		}
	}

	n.Isolate(a)
	reach(a, b, false)
	reach(b, a, false)
	reach(c, a, false)
	reach(b, c, true)
	fromTest(a)
	n.Heal()
	reach(a, b, true)
	reach(b, a, true)

	// Deafened, a hears nothing from the others: a TCP handshake fails
	// both ways (each needs an answer), but what a sends still arrives.
	n.Deafen(a)
	reach(b, a, false)
	reach(a, b, false)
	fromTest(a)
	datagram := func(from, to *Host) bool {
		t.Helper()
		var pc net.PacketConn
		if err := to.Do(func() (err error) { pc, err = net.ListenPacket("udp", to.IP+":7001"); return err }); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if err := from.Do(func() error {
			c, err := net.Dial("udp", to.IP+":7001")
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("x"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err := pc.ReadFrom(make([]byte, 8))
		return err == nil
	}
	if !datagram(a, b) {
		t.Fatal("deafened a cannot send to b")
	}
	if datagram(b, a) {
		t.Fatal("deafened a hears b")
	}
	n.Heal()
	reach(b, a, true)
}
