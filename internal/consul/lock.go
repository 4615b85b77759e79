package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// KeyState is a key as read: Found false when it does not exist.
type KeyState struct {
	Found bool
	Value []byte
	// Session is the holder of the lock, "" when free.
	Session string
	// ModifyIndex is what CASJSON takes to replace exactly this version.
	ModifyIndex uint64
	// LockIndex counts the acquisitions of the key: it grows by one each
	// time a session acquires it, so it names an election's term.
	LockIndex uint64
}

func keyState(pair *api.KVPair) KeyState {
	if pair == nil {
		return KeyState{}
	}
	return KeyState{Found: true, Value: pair.Value, Session: pair.Session, ModifyIndex: pair.ModifyIndex, LockIndex: pair.LockIndex}
}

// GetKey reads key. consistent asks the Raft leader to confirm it still
// leads before answering: slower, but never stale, which a node deciding
// whether it still holds the lock needs.
func (c *Client) GetKey(ctx context.Context, key string, consistent bool) (KeyState, error) {
	q := (&api.QueryOptions{RequireConsistent: consistent}).WithContext(ctx)
	pair, _, err := c.api.KV().Get(key, q)
	if err != nil {
		return KeyState{}, fmt.Errorf("read %s from consul agent %s: %w", key, c.addr, err)
	}
	return keyState(pair), nil
}

// GetKeyStale reads key from the local server's state, without a leader: a
// value for display, which may be old.
func (c *Client) GetKeyStale(ctx context.Context, key string) (KeyState, error) {
	ks, _, err := c.GetKeyStaleLeader(ctx, key)
	return ks, err
}

// GetKeyStaleLeader is GetKeyStale, and whether the server that answered
// knows a Consul leader now (false in an outage: a read that needs the
// leader would wait for one until it times out).
func (c *Client) GetKeyStaleLeader(ctx context.Context, key string) (KeyState, bool, error) {
	q := (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
	pair, meta, err := c.api.KV().Get(key, q)
	if err != nil {
		return KeyState{}, false, fmt.Errorf("read %s from consul agent %s (stale): %w", key, c.addr, err)
	}
	return keyState(pair), meta.KnownLeader, nil
}

// Acquire takes the lock on key with session and writes value as JSON. It
// returns false, without error, when another session holds the key or when
// the key's lock delay has not passed since its last holder's session was
// invalidated. It returns an error wrapping ErrSessionGone when the session
// no longer exists, except within the key's lock delay: Consul checks the
// delay first and answers false without looking at the session. Acquiring a
// key the session already holds succeeds and updates the value.
func (c *Client) Acquire(ctx context.Context, key string, value any, session string) (bool, error) {
	b, err := json.Marshal(value)
	if err != nil {
		return false, fmt.Errorf("acquire %s: %w", key, err)
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	ok, _, err := c.api.KV().Acquire(&api.KVPair{Key: key, Value: b, Session: session}, w)
	if err != nil {
		// Consul answers 500 with "invalid session" in the body, its only
		// way of saying the session is gone.
		if strings.Contains(err.Error(), "invalid session") {
			return false, fmt.Errorf("acquire %s with session %s: %w", key, session, ErrSessionGone)
		}
		return false, fmt.Errorf("acquire %s on consul agent %s: %w", key, c.addr, err)
	}
	return ok, nil
}

// Release gives up the lock on key if session holds it. With value nil it
// keeps the key's value; otherwise it writes value as JSON in the same
// request, as the holder's last word. It returns false when session does
// not hold it. An explicit release starts no lock delay: the next holder
// may acquire at once.
func (c *Client) Release(ctx context.Context, key string, session string, value any) (bool, error) {
	var b []byte
	if value != nil {
		var err error
		if b, err = json.Marshal(value); err != nil {
			return false, fmt.Errorf("release %s: %w", key, err)
		}
	} else {
		// A release writes the value it is given: read the current one
		// first so that the key keeps saying who held it last (the
		// election measures lag against that node). Only the holder can
		// release, so the value read is its own and does not change in
		// between.
		q := (&api.QueryOptions{}).WithContext(ctx)
		cur, _, err := c.api.KV().Get(key, q)
		if err != nil {
			return false, fmt.Errorf("release %s on consul agent %s: %w", key, c.addr, err)
		}
		if cur != nil && cur.Session == session {
			b = cur.Value
		}
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	ok, _, err := c.api.KV().Release(&api.KVPair{Key: key, Session: session, Value: b}, w)
	if err != nil {
		return false, fmt.Errorf("release %s on consul agent %s: %w", key, c.addr, err)
	}
	return ok, nil
}

// CASJSON writes v as JSON at key only if the key's ModifyIndex is still
// index; index 0 writes only if the key does not exist. It returns false when
// someone wrote first: read again and decide again, never retry blindly.
func (c *Client) CASJSON(ctx context.Context, key string, v any, index uint64) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, fmt.Errorf("write %s to consul: %w", key, err)
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	ok, _, err := c.api.KV().CAS(&api.KVPair{Key: key, Value: b, ModifyIndex: index}, w)
	if err != nil {
		return false, fmt.Errorf("write %s (cas %d) to consul agent %s: %w", key, index, c.addr, err)
	}
	return ok, nil
}

// ListJSON reads every key under prefix in one request and calls each with
// the key and its raw value, in key order. Folder keys (ending in "/", as
// Consul's UI creates them) are skipped. It stops at the first error of each
// and returns it wrapped with the key.
func (c *Client) ListJSON(ctx context.Context, prefix string, each func(key string, raw []byte) error) error {
	return c.list(ctx, prefix, false, each)
}

func (c *Client) list(ctx context.Context, prefix string, stale bool, each func(key string, raw []byte) error) error {
	q := (&api.QueryOptions{AllowStale: stale}).WithContext(ctx)
	pairs, _, err := c.api.KV().List(prefix, q)
	if err != nil {
		return fmt.Errorf("list %s from consul agent %s: %w", prefix, c.addr, err)
	}
	for _, p := range pairs {
		if strings.HasSuffix(p.Key, "/") {
			continue
		}
		if err := each(p.Key, p.Value); err != nil {
			return fmt.Errorf("list %s: %s: %w", prefix, p.Key, err)
		}
	}
	return nil
}
