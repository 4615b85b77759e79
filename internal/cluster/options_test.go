package cluster

import (
	"strings"
	"testing"
)

func TestSetOption(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = accepted
	}{
		{"check_ttl_multiplier=3", ""},
		{"priority=0", ""},
		{"nofailover=true", ""},
		{"no_failover=false", ""},
		{"fail_fast=false", ""},
		{"check_ttl_multiplier=0", "from 1 to 100"},
		{"check_ttl_multiplier=x", "from 1 to 100"},
		{"priority=-1", "0 or more"},
		{"nofailover=yes please", "true or false"},
		{"colour=red", `unknown option "colour"`},
		{"priority", "KEY=VALUE"},
	}
	for _, tc := range tests {
		var o NodeOptions
		err := o.SetOption(tc.in)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("SetOption(%q) = %v, want it accepted", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("SetOption(%q) = %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
	var o NodeOptions
	_ = o.SetOption("check_ttl_multiplier=3")
	_ = o.SetOption("nofailover=true")
	merged := NodeOptions{Priority: ptr(5), NoFailover: ptr(false)}.Merge(o)
	if Or(merged.CheckTTLMultiplier, 1) != 3 || !Or(merged.NoFailover, false) || Or(merged.Priority, 100) != 5 || merged.FailFast != nil {
		t.Fatalf("Merge = %+v", merged)
	}
}

func ptr[T any](v T) *T { return &v }
