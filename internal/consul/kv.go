package consul

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/consul/api"
)

// GetJSON reads key into v. It reports found = false, and leaves v alone,
// when the key does not exist. index is the key's ModifyIndex, for CAS.
func (c *Client) GetJSON(ctx context.Context, key string, v any) (index uint64, found bool, err error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	pair, _, err := c.api.KV().Get(key, q)
	if err != nil {
		return 0, false, fmt.Errorf("read %s from consul: %w", key, err)
	}
	if pair == nil {
		return 0, false, nil
	}
	if err := json.Unmarshal(pair.Value, v); err != nil {
		return pair.ModifyIndex, true, fmt.Errorf("read %s from consul: value is not the expected JSON: %w", key, err)
	}
	return pair.ModifyIndex, true, nil
}

// PutJSON writes v at key unconditionally. Use it only for keys that have a
// single writer (a node's own member record); shared keys go through CAS.
func (c *Client) PutJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s to consul: %w", key, err)
	}
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.KV().Put(&api.KVPair{Key: key, Value: b}, w); err != nil {
		return fmt.Errorf("write %s to consul: %w", key, err)
	}
	return nil
}

// Delete removes key; a key that does not exist is not an error.
func (c *Client) Delete(ctx context.Context, key string) error {
	w := (&api.WriteOptions{}).WithContext(ctx)
	if _, err := c.api.KV().Delete(key, w); err != nil {
		return fmt.Errorf("delete %s from consul: %w", key, err)
	}
	return nil
}
