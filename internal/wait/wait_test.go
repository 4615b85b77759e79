package wait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if err := Until(context.Background(), time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Until = %v after %d calls, want nil after 3", err, n)
	}
	err := Until(context.Background(), 300*time.Millisecond, func() error { return errors.New("still missing") })
	if err == nil || !strings.Contains(err.Error(), "still missing") {
		t.Fatalf("Until past its deadline = %v, want the last error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Until(ctx, time.Minute, func() error { return errors.New("x") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Until with a cancelled context = %v", err)
	}
}
