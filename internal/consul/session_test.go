package consul

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// A session cannot be created while a check it is bound to is critical, the
// error says which check, and it can once the check passes.
func TestCreateSessionNeedsPassingChecks(t *testing.T) {
	_, c := agent(t)
	registerChecks(t, c, "understudy", "understudy:postgres", "understudy:role")
	node, checks, err := c.NodeChecks(ctxT(t), "understudy")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"serfHealth", "understudy:postgres", "understudy:role"}; !slices.Equal(checks, want) || node != "dev" {
		t.Fatalf("NodeChecks = %s %v, want dev %v", node, checks, want)
	}
	setCheck(t, c, "understudy:role", Passing)

	o := SessionOptions{Name: "handler-runner", Checks: checks, TTL: 10 * time.Second, LockDelay: time.Second}
	testenv.Eventually(t, 10*time.Second, func() error {
		id, err := c.CreateSession(ctxT(t), o)
		if err == nil {
			return fmt.Errorf("created session %s while understudy:postgres is critical", id)
		}
		if msg := err.Error(); !strings.Contains(msg, `check "understudy:postgres" is critical`) || strings.Contains(msg, `"understudy:role"`) {
			return fmt.Errorf("error does not name just the critical check: %w", err)
		}
		return nil
	})

	setCheck(t, c, "understudy:postgres", Passing)
	id := passingSession(t, c, o)
	if ok, err := c.SessionInfo(ctxT(t), id); err != nil || !ok {
		t.Fatalf("SessionInfo(%s) = %v, %v after create, want true", id, ok, err)
	}
	if err := c.RenewSession(ctxT(t), id); err != nil {
		t.Fatalf("renew a live session: %v", err)
	}
	if err := c.DestroySession(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.SessionInfo(ctxT(t), id); err != nil || ok {
		t.Fatalf("SessionInfo(%s) = %v, %v after destroy, want false", id, ok, err)
	}
	if err := c.DestroySession(ctxT(t), id); err != nil {
		t.Fatalf("destroying a session twice: %v", err)
	}
}

func TestNodeChecksOfUnknownService(t *testing.T) {
	_, c := agent(t)
	if _, _, err := c.NodeChecks(ctxT(t), "nope"); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("NodeChecks of a service the agent does not have: %v, want ErrNotRegistered", err)
	}
}

// The fencing contract: a check turning critical ends the session, frees
// the lock with its value kept, and nobody gets the lock within the lock
// delay; after it, another session does.
func TestCriticalCheckFreesLockAfterLockDelay(t *testing.T) {
	_, c := agent(t)
	registerChecks(t, c, "understudy", "understudy:postgres")
	setCheck(t, c, "understudy:postgres", Passing)
	const lockDelay = time.Second
	holder := passingSession(t, c, SessionOptions{
		Name: "active", Checks: []string{SerfHealth, "understudy:postgres"}, TTL: 10 * time.Second, LockDelay: lockDelay,
	})
	other := passingSession(t, c, SessionOptions{Name: "standby", Checks: []string{SerfHealth}, TTL: 10 * time.Second})

	const key = "understudy/test/leader"
	if ok, err := c.Acquire(ctxT(t), key, map[string]string{"node": "a"}, holder); err != nil || !ok {
		t.Fatalf("first Acquire = %v, %v, want true", ok, err)
	}
	if ok, err := c.Acquire(ctxT(t), key, map[string]string{"node": "b"}, other); err != nil || ok {
		t.Fatalf("Acquire of a held lock by another session = %v, %v, want false", ok, err)
	}
	if ks, err := c.GetKey(ctxT(t), key, true); err != nil || ks.Session != holder {
		t.Fatalf("GetKey = %+v, %v, want held by %s", ks, err, holder)
	}

	invalidated := time.Now() // the invalidation happens after this
	setCheck(t, c, "understudy:postgres", Critical)
	testenv.Eventually(t, 10*time.Second, func() error {
		ks, err := c.GetKey(ctxT(t), key, true)
		if err != nil {
			return err
		}
		if ks.Session != "" {
			return fmt.Errorf("still held by %s", ks.Session)
		}
		if string(ks.Value) != `{"node":"a"}` {
			return fmt.Errorf("value %q after release, want the holder's value kept (behaviour release)", ks.Value)
		}
		return nil
	})
	if ok, err := c.Acquire(ctxT(t), key, map[string]string{"node": "b"}, other); err != nil || ok {
		t.Fatalf("Acquire %v after invalidation = %v, %v, want false within the lock delay", time.Since(invalidated), ok, err)
	}
	if since := time.Since(invalidated); since >= lockDelay {
		t.Fatalf("lock freed only %v after the check failed; the refusal above does not prove the lock delay", since)
	}
	if err := c.RenewSession(ctxT(t), holder); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("RenewSession of the invalidated session: %v, want ErrSessionGone", err)
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		ok, err := c.Acquire(ctxT(t), key, map[string]string{"node": "b"}, other)
		if err != nil || !ok {
			return fmt.Errorf("acquire %v after invalidation: %v, %v", time.Since(invalidated), ok, err)
		}
		return nil
	})
	if since := time.Since(invalidated); since < lockDelay {
		t.Fatalf("acquired %v after invalidation, inside the lock delay of %v", since, lockDelay)
	}
	// Within the lock delay Consul refuses before it looks at the session
	// (false, no error); after it, a gone session is an error.
	if _, err := c.Acquire(ctxT(t), key, "x", holder); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("Acquire with the invalidated session: %v, want ErrSessionGone", err)
	}
}

// An explicit Release starts no lock delay: a planned switchover hands the
// lock over at once.
func TestReleaseHasNoLockDelay(t *testing.T) {
	_, c := agent(t)
	opts := SessionOptions{Name: "s", Checks: []string{SerfHealth}, TTL: 10 * time.Second, LockDelay: 10 * time.Second}
	a := passingSession(t, c, opts)
	b := passingSession(t, c, opts)
	const key = "understudy/test/leader"
	if ok, err := c.Acquire(ctxT(t), key, "a", a); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if ok, err := c.Release(ctxT(t), key, b, nil); err != nil || ok {
		t.Fatalf("Release by a session that does not hold it = %v, %v, want false", ok, err)
	}
	if ok, err := c.Release(ctxT(t), key, a, nil); err != nil || !ok {
		t.Fatalf("Release by the holder = %v, %v, want true", ok, err)
	}
	// The value still says who held the key last.
	if ks, err := c.GetKey(ctxT(t), key, true); err != nil || ks.Session != "" || string(ks.Value) != `"a"` {
		t.Fatalf("after Release: %+v, %v; want free with the value \"a\" kept", ks, err)
	}
	if ok, err := c.Acquire(ctxT(t), key, "b", b); err != nil || !ok {
		t.Fatalf("Acquire right after an explicit release = %v, %v, want true", ok, err)
	}
}

// TTL 0 and LockDelay 0 are sent as such, not replaced by Consul's defaults
// (no TTL is fine; lock delay 0 must not become 15s).
func TestZeroLockDelayIsZero(t *testing.T) {
	_, c := agent(t)
	opts := SessionOptions{Name: "s", Checks: []string{SerfHealth}}
	a := passingSession(t, c, opts)
	b := passingSession(t, c, opts)
	const key = "understudy/test/leader"
	if ok, err := c.Acquire(ctxT(t), key, "a", a); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if err := c.DestroySession(ctxT(t), a); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Acquire(ctxT(t), key, "b", b); err != nil || !ok {
		t.Fatalf("Acquire right after the holder's session was destroyed, lock delay 0 = %v, %v, want true", ok, err)
	}
}
