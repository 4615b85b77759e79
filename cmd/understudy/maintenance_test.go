package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// TestMaintenanceQuietsAlarms: a node in maintenance keeps its failing
// checks, shown as the maintenance's (quieted), not as failing; nodes list
// and cluster status say so.
func TestMaintenanceQuietsAlarms(t *testing.T) {
	v := fixture()
	v.status.Maintenance = map[string]cluster.Maintenance{"mgr-2": {By: "operator alice", At: now.Add(-5 * time.Minute), Reason: "disk"}}
	rows := nodeRows(v, now)
	r := rows[1]
	if r.Name != "mgr-2" || r.Maintenance == nil || len(r.FailingChecks) != 0 || r.QuietedChecks["postgres-role"] != "critical" {
		t.Fatalf("row of mgr-2: %+v; want in maintenance, no failing checks, postgres-role critical among the quieted", r)
	}
	if r.Checks != "maintenance: postgres-role critical, services warning" {
		t.Errorf("CHECKS = %q", r.Checks)
	}
	var b bytes.Buffer
	if err := renderNodes(&b, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "replica (maintenance)") {
		t.Errorf("nodes list does not show the maintenance:\n%s", b.String())
	}
	b.Reset()
	if err := renderStatus(&b, newStatusReport(v, events(), now), now); err != nil {
		t.Fatal(err)
	}
	want := "maintenance:    mgr-2, by operator alice since 2024-05-01 11:55:00Z (5m ago): disk; never chosen as active, its alarms quieted, until understudy node maintenance off mgr-2\n"
	if !strings.Contains(b.String(), want) {
		t.Fatalf("got\n%s\nwant a line\n%s", b.String(), want)
	}
}
