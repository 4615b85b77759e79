package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickIsFreeDistinctAndBelowTheEphemeralRange(t *testing.T) {
	ports, err := Pick("127.0.0.1", 20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < lowest || p >= ephemeralLow() {
			t.Errorf("port %d outside [%d, %d)", p, lowest, ephemeralLow())
		}
		if seen[p] {
			t.Errorf("port %d returned twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestPickRefusesAnAddressItCannotListenOn(t *testing.T) {
	if _, err := Pick("192.0.2.1", 1); err == nil {
		t.Fatal("Pick on an address of no interface returned ports")
	}
}
