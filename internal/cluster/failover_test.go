package cluster

import (
	"strings"
	"testing"
)

func TestFailoverGap(t *testing.T) {
	tests := []struct {
		name      string
		gap       FailoverGap
		bytes     int64
		loses     bool
		inMessage string
	}{
		{"caught up", FailoverGap{LastKnown: 100, Target: 100, TargetReplay: 100}, 0, false, "nothing known is lost"},
		{"ahead of a stale record", FailoverGap{LastKnown: 100, Target: 150, TargetReplay: 150}, 0, false, "nothing known is lost"},
		{"behind", FailoverGap{LastKnown: 300, Target: 100, TargetReplay: 90}, 200, true, "200 bytes of WAL would be lost"},
		{"former position unknown", FailoverGap{Target: 100}, -1, true, "the gap is unknown"},
		{"target position unknown", FailoverGap{LastKnown: 100}, -1, true, "target at unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.gap.Bytes(); got != tc.bytes {
				t.Errorf("Bytes() = %d, want %d", got, tc.bytes)
			}
			if got := tc.gap.LosesData(); got != tc.loses {
				t.Errorf("LosesData() = %v, want %v", got, tc.loses)
			}
			if s := tc.gap.String(); !strings.Contains(s, tc.inMessage) {
				t.Errorf("String() = %q, want it to say %q", s, tc.inMessage)
			}
		})
	}
}
