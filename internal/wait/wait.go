// Package wait is the one way understudy's commands wait for something to
// become true (an agent to elect a leader, a node to be active, HAProxy to
// route): a condition polled every 200 ms under a deadline, whose last error
// says what was still missing when it gave up. Daemons do not use it: their
// loops wait on Consul's blocking queries and tickers.
package wait

import (
	"context"
	"fmt"
	"time"
)

// Every is the polling period.
const Every = 200 * time.Millisecond

// Until calls f every Every until it returns nil, ctx ends or timeout
// passes; the error then wraps what f said last.
func Until(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(Every):
		}
	}
}
