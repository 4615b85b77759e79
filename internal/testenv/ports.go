package testenv

import (
	"fmt"
	"net"
	"testing"

	"github.com/understudy-ha/understudy/internal/freeport"
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
// take it before the caller binds it; ports are picked at random, which
// makes that rare enough for tests.
func FreePortOn(t testing.TB, ip string) int {
	t.Helper()
	return FreePortsOn(t, ip, 1)[0]
}

// FreePortsOn returns n distinct ports free for TCP and UDP on ip, from
// below the kernel's ephemeral range (see internal/freeport). Asking for
// them together matters: each is held open until all are chosen, so the
// same port is not handed out twice.
func FreePortsOn(t testing.TB, ip string, n int) []int {
	t.Helper()
	if addr := net.ParseIP(ip); addr == nil || !addr.IsLoopback() {
		t.Fatalf("testenv keeps traffic on loopback; %q is not a loopback address", ip)
	}
	ports, err := freeport.Pick(ip, n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// addr joins a host and a port.
func addr(host string, port int) string {
	return net.JoinHostPort(host, fmt.Sprint(port))
}
