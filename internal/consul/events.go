package consul

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// txnBatch is how many operations go into one transaction: Consul takes at
// most 128, and a smaller batch keeps each request well under its size limit.
const txnBatch = 64

// eventSeq is the key of an event under the events prefix: the writer's
// UnixNano zero-padded to 20 digits, so that keys sort chronologically as
// strings, then the node, so that two nodes never write the same key
// without having to agree on a counter. Chronological means by the writers'
// clocks: keep them in sync (NTP), as Consul's own TTLs already require.
func eventSeq(t time.Time, node string) string {
	return fmt.Sprintf("%020d-%s", t.UnixNano(), node)
}

// AppendEvent writes v as JSON at <eventsPrefix><seq> where seq sorts
// chronologically and is unique across nodes without coordination: 20-digit
// zero-padded UnixNano + "-" + node. When v is a JSON object, its "seq"
// member is set to seq, so that a record read on its own knows its place.
// The write is a CAS on "does not exist": an event is never overwritten.
func (c *Client) AppendEvent(ctx context.Context, eventsPrefix, node string, v any) (key string, err error) {
	if node == "" || strings.Contains(node, "/") {
		return "", fmt.Errorf("append event under %s: node name %q must be non-empty and without '/'", eventsPrefix, node)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("append event under %s: %w", eventsPrefix, err)
	}
	// A second try is only needed when two writers on one node read the
	// same nanosecond; the clock has moved on by then.
	for range 3 {
		seq := eventSeq(time.Now(), node)
		body, err := withSeq(b, seq)
		if err != nil {
			return "", fmt.Errorf("append event under %s: %w", eventsPrefix, err)
		}
		key = eventsPrefix + seq
		w := (&api.WriteOptions{}).WithContext(ctx)
		ok, _, err := c.api.KV().CAS(&api.KVPair{Key: key, Value: body}, w)
		if err != nil {
			return "", fmt.Errorf("append event %s to consul agent %s: %w", key, c.addr, err)
		}
		if ok {
			return key, nil
		}
	}
	return "", fmt.Errorf("append event under %s: key %s exists after 3 tries; is the clock stuck?", eventsPrefix, key)
}

// PutEventAt writes v as the event of node at the time at, at the key
// AppendEvent would give it then, once: a CAS on "does not exist", where a
// key that exists is this very event written before. It is for an event
// retried until Consul takes it (a partition's minority takes no writes,
// and a write that timed out there may still commit once the partition
// heals): the retry can never write it twice. The key sorts by when the
// event happened, not when it was written.
func (c *Client) PutEventAt(ctx context.Context, eventsPrefix, node string, at time.Time, v any) (key string, err error) {
	if node == "" || strings.Contains(node, "/") {
		return "", fmt.Errorf("put event under %s: node name %q must be non-empty and without '/'", eventsPrefix, node)
	}
	seq := eventSeq(at, node)
	b, err := json.Marshal(v)
	if err == nil {
		b, err = withSeq(b, seq)
	}
	if err != nil {
		return "", fmt.Errorf("put event under %s: %w", eventsPrefix, err)
	}
	key = eventsPrefix + seq
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, _, err := c.api.KV().CAS(&api.KVPair{Key: key, Value: b}, w); err != nil {
		return "", fmt.Errorf("put event %s to consul agent %s: %w", key, c.addr, err)
	}
	return key, nil
}

// withSeq sets the "seq" member of a JSON object; other JSON is returned
// as is.
func withSeq(b []byte, seq string) ([]byte, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		return b, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	s, _ := json.Marshal(seq)
	m["seq"] = s
	return json.Marshal(m)
}

// Events returns up to limit events under eventsPrefix, newest first; limit
// <= 0 returns all. It lists the keys, then reads only the newest limit
// values in transactions of txnBatch, so a long history costs little. An
// event deleted between the two reads (by TrimEvents) is left out.
func (c *Client) Events(ctx context.Context, eventsPrefix string, limit int) ([]json.RawMessage, error) {
	keys, err := c.eventKeys(ctx, eventsPrefix)
	if err != nil {
		return nil, err
	}
	slices.Reverse(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]json.RawMessage, 0, len(keys))
	for batch := range slices.Chunk(keys, txnBatch) {
		ops := make(api.TxnOps, len(batch))
		for i, k := range batch {
			ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}}
		}
		results, err := c.txn(ctx, ops)
		if err != nil {
			return nil, fmt.Errorf("read events under %s: %w", eventsPrefix, err)
		}
		for _, r := range results {
			if r.KV != nil && len(r.KV.Value) > 0 {
				out = append(out, json.RawMessage(r.KV.Value))
			}
		}
	}
	return out, nil
}

// TrimEvents deletes all but the newest keep events under eventsPrefix and
// returns how many it deleted, so that the history stays bounded.
func (c *Client) TrimEvents(ctx context.Context, eventsPrefix string, keep int) (int, error) {
	keys, err := c.eventKeys(ctx, eventsPrefix)
	if err != nil {
		return 0, err
	}
	if len(keys) <= max(keep, 0) {
		return 0, nil
	}
	old := keys[:len(keys)-max(keep, 0)]
	deleted := 0
	for batch := range slices.Chunk(old, txnBatch) {
		ops := make(api.TxnOps, len(batch))
		for i, k := range batch {
			ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}}
		}
		if _, err := c.txn(ctx, ops); err != nil {
			return deleted, fmt.Errorf("trim events under %s: %w", eventsPrefix, err)
		}
		deleted += len(batch)
	}
	return deleted, nil
}

// eventKeys lists the event keys under prefix, oldest first.
func (c *Client) eventKeys(ctx context.Context, prefix string) ([]string, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	keys, _, err := c.api.KV().Keys(prefix, "", q)
	if err != nil {
		return nil, fmt.Errorf("list events under %s from consul agent %s: %w", prefix, c.addr, err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasSuffix(k, "/") })
	slices.Sort(keys)
	return keys, nil
}

// txn runs ops as one transaction and returns its results, or an error
// listing what Consul refused.
func (c *Client) txn(ctx context.Context, ops api.TxnOps) (api.TxnResults, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	ok, resp, _, err := c.api.Txn().Txn(ops, q)
	if err != nil {
		return nil, fmt.Errorf("transaction on consul agent %s: %w", c.addr, err)
	}
	if !ok {
		var whys []string
		for _, e := range resp.Errors {
			whys = append(whys, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
		}
		return nil, fmt.Errorf("transaction on consul agent %s rolled back: %s", c.addr, strings.Join(whys, "; "))
	}
	return resp.Results, nil
}
