package cluster

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    LSN
		wantErr bool
	}{
		{"0/0", 0, false},
		{"0/3000060", 0x3000060, false},
		{"16/B374D848", 0x16B374D848, false},
		{"FFFFFFFF/FFFFFFFF", 0xFFFFFFFFFFFFFFFF, false},
		{"", 0, true},
		{"123", 0, true},
		{"1/G", 0, true},
		{"100000000/0", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseLSN(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseLSN(%q) err = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseLSN(%q) = %v, want %v", tc.in, got, tc.want)
		}
		if !tc.wantErr && got.String() != tc.in {
			t.Errorf("LSN(%q).String() = %q", tc.in, got.String())
		}
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "x/y", "/", "1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
	})
}

func TestMemberJSONKeepsLSNReadable(t *testing.T) {
	m := Member{Name: "a", ReplayLSN: 0x16B374D848}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Member
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ReplayLSN != m.ReplayLSN {
		t.Fatalf("replay LSN %v after round trip, want %v (json %s)", back.ReplayLSN, m.ReplayLSN, b)
	}
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	if raw["replay_lsn"] != "16/B374D848" {
		t.Fatalf("replay_lsn in JSON = %v, want PostgreSQL's form", raw["replay_lsn"])
	}
}

func TestLag(t *testing.T) {
	tests := []struct {
		name           string
		primary, reply LSN
		want           int64
	}{
		{"caught up", 100, 100, 0},
		{"behind", 300, 100, 200},
		{"ahead of a stale record", 100, 300, 0},
		{"primary unknown", 0, 100, -1},
		{"standby unknown", 100, 0, -1},
	}
	for _, tc := range tests {
		if got := Lag(tc.primary, tc.reply); got != tc.want {
			t.Errorf("%s: Lag(%v, %v) = %d, want %d", tc.name, tc.primary, tc.reply, got, tc.want)
		}
	}
}

func TestRoleClock(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var c RoleClock
	steps := []struct {
		role Role
		now  int
		want time.Time
	}{
		{RoleUnknown, 0, time.Time{}}, // nothing seen yet
		{RoleStandby, 1, at(1)},       // first role seen
		{RoleStandby, 2, at(1)},       // unchanged
		{RoleUnknown, 3, at(1)},       // PostgreSQL down: not a change
		{RoleStandby, 4, at(1)},       // back in the same role
		{RolePrimary, 5, at(5)},       // promoted
		{RolePrimary, 6, at(5)},       // unchanged
	}
	for i, s := range steps {
		if got := c.Observe(s.role, at(s.now)); !got.Equal(s.want) {
			t.Fatalf("step %d (%s at %ds): %v, want %v", i, s.role, s.now, got, s.want)
		}
	}
	// A restarted check-runner loads its previous record.
	var again RoleClock
	again.Load(Member{Role: RolePrimary, RoleChanged: at(5)})
	if got := again.Observe(RolePrimary, at(60)); !got.Equal(at(5)) {
		t.Fatalf("after a restart in the same role: %v, want %v", got, at(5))
	}
	if got := again.Observe(RoleStandby, at(61)); !got.Equal(at(61)) {
		t.Fatalf("after a restart, then demoted: %v, want %v", got, at(61))
	}
	var fresh RoleClock
	fresh.Load(Member{Role: RoleUnknown, RoleChanged: at(5)})
	if got := fresh.Observe(RoleStandby, at(70)); !got.Equal(at(70)) {
		t.Fatalf("loaded from a record without a role: %v, want %v", got, at(70))
	}
}

func TestUpstream(t *testing.T) {
	members := []Member{
		{Name: "a", Address: "10.0.0.5", PostgresPort: 5432},
		{Name: "b", Address: "10.0.0.6", PostgresPort: 5432, UpstreamHost: "10.0.0.5", UpstreamPort: 5432},
		{Name: "c", Address: "10.0.0.7", PostgresPort: 5432, UpstreamHost: "10.0.0.9", UpstreamPort: 5433},
		{Name: "d", Address: "10.0.0.5", PostgresPort: 5433, UpstreamHost: "10.0.0.5", UpstreamPort: 5432},
	}
	want := []string{"", "a", "10.0.0.9:5433", "a"}
	for i, m := range members {
		if got := Upstream(m, members); got != want[i] {
			t.Errorf("Upstream(%s) = %q, want %q", m.Name, got, want[i])
		}
	}
}
