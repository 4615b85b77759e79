package cluster

import (
	"encoding/json"
	"testing"
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
