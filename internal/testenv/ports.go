package testenv

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePortOn(t, "127.0.0.1")
}

// FreePortOn returns a port that was free for both TCP and UDP on the
// loopback address ip a moment ago.
//
// The port is closed again before it is returned, so another process can
// take it before the caller binds it; the kernel hands out bound ports at
// random, which makes that rare enough for tests.
func FreePortOn(t testing.TB, ip string) int {
	t.Helper()
	return FreePortsOn(t, ip, 1)[0]
}

// FreePortsOn returns n distinct ports free for TCP and UDP on ip. Asking
// for them together matters: each is held open until all are chosen, so the
// kernel cannot hand the same port out twice.
func FreePortsOn(t testing.TB, ip string, n int) []int {
	t.Helper()
	if addr := net.ParseIP(ip); addr == nil || !addr.IsLoopback() {
		t.Fatalf("testenv keeps traffic on loopback; %q is not a loopback address", ip)
	}
	var ports []int
	var held []func() error
	defer func() {
		for _, c := range held {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			t.Fatalf("no free TCP+UDP port on %s after %d tries", ip, tries)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("listen on %s (is it a loopback address?): %v", ip, err)
		}
		held = append(held, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		// Consul's Serf uses the same port number for TCP and UDP.
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// addr joins a host and a port.
func addr(host string, port int) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}
