package consul

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// WatchKey is one blocking query: returns when the key changes after index,
// or after wait; returns the new X-Consul-Index.
//
// It follows Consul's rules for blocking queries: index 0 is never waited on
// (the caller passes 0 the first time and gets an immediate answer), and an
// index that goes backwards (a restored snapshot, a new Raft leader with a
// store of its own) is reset to 0 so that the next call answers at once
// with the current state instead of blocking on an index that may never be
// reached. An index of 0 from Consul otherwise becomes 1: waiting on 0
// would return at once, forever, in a hot loop.
//
// Consul adds up to wait/16 of jitter and caps wait at 10 minutes. A return
// does not mean the key changed: compare ModifyIndex (or the value). The
// caller backs off on errors and bounds its rate; this is one request.
//
// The query is abandoned a second after Consul should have answered: a
// server that forwards it to a Raft leader whose host went silent (cut off,
// not refusing) holds it until its RPC deadline, seconds after a new leader
// was elected, and the caller would see a freed lock that late.
func (c *Client) WatchKey(ctx context.Context, key string, index uint64, wait time.Duration) (KeyState, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+watchMargin)
	defer cancel()
	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	pair, meta, err := c.api.KV().Get(key, q)
	if err != nil {
		return KeyState{}, index, fmt.Errorf("watch %s on consul agent %s: %w", key, c.addr, err)
	}
	return keyState(pair), nextIndex(index, meta.LastIndex), nil
}

// watchMargin is how long past its wait (and Consul's jitter) a blocking
// query may take before WatchKey gives up on it.
const watchMargin = time.Second

// nextIndex applies Consul's rules to the index a blocking query returned.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	default:
		return got
	}
}
