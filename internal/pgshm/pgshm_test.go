package pgshm

import "testing"

func TestSegmentOf(t *testing.T) {
	tests := []struct{ file, want string }{
		{"1234\n/data\n1700000000\n5432\n\n127.0.0.1\n  5432001    32789\nready   \n", "32789"},
		{"1234\n/data\n", ""},
		{"1234\n/data\n1\n5432\n\n*\n\nready\n", ""},
		{"1234\n/data\n1\n5432\n\n*\n  1 x\n", ""},
	}
	for _, tc := range tests {
		if got := SegmentOf(tc.file); got != tc.want {
			t.Errorf("SegmentOf(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
}
