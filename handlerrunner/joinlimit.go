package handlerrunner

import (
	"net"
	"sync"
	"time"
)

// failLimiter counts failures by key (a caller's IP address) over a
// sliding window and says how long a key that reached max must wait. A
// join token is 256 random bits, so the limit is not what keeps guessing
// out; it keeps a misbehaving or hostile client from making the active
// read Consul and write events in a loop.
type failLimiter struct {
	max    int
	window time.Duration
	// maxKeys bounds the memory an attacker with many addresses can
	// take: keys beyond it share one count.
	maxKeys int

	mu    sync.Mutex
	fails map[string][]time.Time
}

func newFailLimiter(max int, window time.Duration, maxKeys int) *failLimiter {
	return &failLimiter{max: max, window: window, maxKeys: maxKeys, fails: map[string][]time.Time{}}
}

// wait is how long key must wait before it may try again; 0 when it may
// now.
func (l *failLimiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.recent(l.key(key), now)
	if len(recent) < l.max {
		return 0
	}
	return recent[len(recent)-l.max].Add(l.window).Sub(now)
}

// fail counts a failure of key at now.
func (l *failLimiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= l.maxKeys {
		for k := range l.fails {
			l.recent(k, now) // forgets the keys whose failures are all old
		}
	}
	key = l.key(key)
	l.fails[key] = append(l.recent(key, now), now)
}

// key is the key that counts for key: "" (shared) when the map is full.
func (l *failLimiter) key(key string) string {
	if _, ok := l.fails[key]; !ok && len(l.fails) >= l.maxKeys {
		return ""
	}
	return key
}

// recent drops key's failures older than the window and returns the rest.
func (l *failLimiter) recent(key string, now time.Time) []time.Time {
	ts := l.fails[key]
	i := 0
	for i < len(ts) && !ts[i].After(now.Add(-l.window)) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = ts
	return ts
}

// remoteIP is the address part of a request's RemoteAddr.
func remoteIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
