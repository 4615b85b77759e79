package cluster

import (
	"maps"
	"strings"
	"testing"
)

func TestParseParameterSetting(t *testing.T) {
	tests := []struct {
		in, name, value, err string
	}{
		{"postgres.parameters.work_mem=64MB", "work_mem", "64MB", ""},
		{"postgres.parameters.Work_Mem = 64MB ", "work_mem", "64MB", ""},
		{"postgres.parameters.pg_stat_statements.max=5000", "pg_stat_statements.max", "5000", ""},
		{"postgres.parameters.search_path=", "search_path", "", ""},
		{"work_mem=64MB", "", "", "write postgres.parameters.NAME"},
		{"postgres.parameters.work_mem", "", "", "NAME=VALUE"},
		{"postgres.parameters.1x=2", "", "", "not a PostgreSQL parameter name"},
		{"postgres.parameters.a;b=2", "", "", "not a PostgreSQL parameter name"},
		{"postgres.parameters.=2", "", "", "not a PostgreSQL parameter name"},
	}
	for _, tc := range tests {
		name, value, err := ParseParameterSetting(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || name != tc.name || value != tc.value {
			t.Errorf("%q = %q, %q, %v; want %q, %q", tc.in, name, value, err, tc.name, tc.value)
		}
	}
}

func TestParametersApply(t *testing.T) {
	p := Parameters{Values: map[string]string{"work_mem": "4MB", "max_connections": "100"}}
	got, said := p.Apply(ParameterChange{Set: map[string]string{"work_mem": "64MB", "max_connections": "100", "Shared_Buffers": "1GB"}, Unset: []string{"nosuch"}})
	want := map[string]string{"work_mem": "64MB", "max_connections": "100", "shared_buffers": "1GB"}
	if !maps.Equal(got, want) || said != "shared_buffers=1GB, work_mem=64MB" {
		t.Errorf("Apply = %v, %q; want %v and the two changes", got, said, want)
	}
	if p.Values["work_mem"] != "4MB" {
		t.Errorf("Apply changed the parameters it was given: %v", p.Values)
	}
	if _, said := p.Apply(ParameterChange{Unset: []string{"WORK_MEM"}}); said != "unset work_mem" {
		t.Errorf("unset said %q", said)
	}
	// A command line or a connection string may hold a password: the
	// account names the parameter, not the value.
	got, said = p.Apply(ParameterChange{Set: map[string]string{"archive_command": "PGPASSWORD=hunter2 pgbackrest push %p"}})
	if said != "archive_command changed (value not recorded)" || strings.Contains(said, "hunter2") || got["archive_command"] == "" {
		t.Errorf("a secret parameter said %q (value kept: %q)", said, got["archive_command"])
	}
	if _, said := p.Apply(ParameterChange{Set: map[string]string{"work_mem": "4MB"}}); said != "" {
		t.Errorf("a change to the same value said %q, want nothing", said)
	}
}
