package postgres

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestPromoteToATimelineOfItsOwn: a standby promoted with PromoteTo lands
// on the timeline asked for, not the next one, leaves no placeholder
// behind, takes writes, and a second PromoteTo of a primary changes
// nothing.
func TestPromoteToATimelineOfItsOwn(t *testing.T) {
	testenv.RequireIntegration(t)
	t.Parallel()
	ctx := testCtx(t)
	a := newTestInstance(t, "a", "127.0.0.12")
	must(t, a.Init(ctx))
	must(t, a.StartStandby(ctx, nil))
	must(t, a.PromoteTo(ctx, 102))
	st, err := a.Client().State(ctx)
	must(t, err)
	if st.InRecovery || st.Timeline != 102 {
		t.Fatalf("after PromoteTo(102): state %+v, want a primary on timeline 102", st)
	}
	mustExec(t, a, "create table t (v text)")
	mustExec(t, a, "insert into t values ('one')")
	if last, err := a.Client().LastCommit(ctx); err != nil || time.Since(last) > time.Minute {
		t.Errorf("LastCommit after an insert = %v, %v; want a moment ago (track_commit_timestamp)", last, err)
	}
	left, _ := filepath.Glob(filepath.Join(a.DataDir(), "pg_wal", "*.history"))
	for _, f := range left {
		if fi, err := os.Stat(f); err == nil && fi.Size() == 0 {
			t.Errorf("placeholder %s left in pg_wal", f)
		}
	}
	if len(left) != 1 {
		t.Errorf("history files after PromoteTo: %v, want only timeline 102's", left)
	}
	must(t, a.PromoteTo(ctx, 500))
	if st, err := a.Client().State(ctx); err != nil || st.Timeline != 102 {
		t.Fatalf("PromoteTo of a primary: %+v %v", st, err)
	}
}
