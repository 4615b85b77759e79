// Package freeport picks ports for processes that are started later (a dev
// cluster, tests): each free for TCP and UDP on one address a moment ago.
//
// The ports come from below the kernel's ephemeral range, never from it.
// A port in that range that is free now may be the source port of an
// outgoing connection a second later (Consul dials its peers from its bind
// address), and the process it was chosen for then cannot listen on it.
// Picking a port with :0 hands out exactly such ports.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the first port Pick uses: above the well-known defaults of the
// programs a node runs (5432, 8008, 8300-8600, 8384); one that happens to
// be in use, like Syncthing's 22000, fails the bind check like any other.
const lowest = 10000

// Pick returns n distinct ports free for both TCP and UDP on ip (Consul's
// Serf uses one number for both). Each is held open until all are chosen,
// so the same port is not returned twice.
func Pick(ip string, n int) ([]int, error) {
	hi := ephemeralLow()
	var ports []int
	var held []func() error
	defer func() {
		for _, c := range held {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free TCP+UDP port on %s between %d and %d after %d tries", ip, lowest, hi, tries)
		}
		port := lowest + rand.IntN(hi-lowest)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			if tries == 0 {
				// A bad address fails at once rather than after every try.
				l0, err0 := net.Listen("tcp", net.JoinHostPort(ip, "0"))
				if err0 != nil {
					return nil, fmt.Errorf("listen on %s: %w", ip, err0)
				}
				l0.Close()
			}
			continue
		}
		held = append(held, l.Close)
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralLow is where the kernel's ephemeral ports begin (Linux's
// default 32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > lowest+1000 {
				return lo
			}
		}
	}
	return 32768
}
