package cluster

import (
	"fmt"
	"strconv"
	"strings"
)

// NodeOptions are a node's runtime options at options/<node>: set with
// `understudy cluster nodes update NAME --option KEY=VALUE` and applied by
// the node's daemons within an interval, without a restart. A nil field
// leaves the node's configuration file in force.
type NodeOptions struct {
	// CheckTTLMultiplier replaces checks.ttl_multiplier.
	CheckTTLMultiplier *int `json:"check_ttl_multiplier,omitempty"`
	// FailFast replaces checks.fail_fast.
	FailFast *bool `json:"fail_fast,omitempty"`
	// Priority replaces node.priority.
	Priority *int `json:"priority,omitempty"`
	// NoFailover replaces node.no_failover.
	NoFailover *bool `json:"nofailover,omitempty"`
}

// OptionKeys are the keys SetOption takes.
var OptionKeys = []string{"check_ttl_multiplier", "fail_fast", "priority", "nofailover"}

// SetOption sets one option from its KEY=VALUE form, as an operator writes
// it on the command line.
func (o *NodeOptions) SetOption(kv string) error {
	key, value, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("option %q: write KEY=VALUE, one of %s", kv, strings.Join(OptionKeys, ", "))
	}
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	switch key {
	case "check_ttl_multiplier":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("option %s=%s: write a whole number from 1 to 100", key, value)
		}
		o.CheckTTLMultiplier = &n
	case "priority":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return fmt.Errorf("option %s=%s: write a whole number, 0 or more (higher wins a tie)", key, value)
		}
		o.Priority = &n
	case "fail_fast", "nofailover", "no_failover":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("option %s=%s: write true or false", key, value)
		}
		if key == "fail_fast" {
			o.FailFast = &b
		} else {
			o.NoFailover = &b
		}
	default:
		return fmt.Errorf("unknown option %q; the options are %s", key, strings.Join(OptionKeys, ", "))
	}
	return nil
}

// Merge returns o with every field that u sets replaced.
func (o NodeOptions) Merge(u NodeOptions) NodeOptions {
	if u.CheckTTLMultiplier != nil {
		o.CheckTTLMultiplier = u.CheckTTLMultiplier
	}
	if u.FailFast != nil {
		o.FailFast = u.FailFast
	}
	if u.Priority != nil {
		o.Priority = u.Priority
	}
	if u.NoFailover != nil {
		o.NoFailover = u.NoFailover
	}
	return o
}

// Validate reports an option out of range, as sent to the API.
func (o NodeOptions) Validate() error {
	if m := o.CheckTTLMultiplier; m != nil && (*m < 1 || *m > 100) {
		return fmt.Errorf("check_ttl_multiplier %d: write a whole number from 1 to 100", *m)
	}
	if p := o.Priority; p != nil && *p < 0 {
		return fmt.Errorf("priority %d: write a whole number, 0 or more", *p)
	}
	return nil
}

// Or returns *p, or def when p is nil.
func Or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
