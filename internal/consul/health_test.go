package consul

import (
	"fmt"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/testenv"
)

func TestNodeHealth(t *testing.T) {
	_, c := agent(t)
	registerChecks(t, c, "understudy", "understudy:postgres", "understudy:role")
	registerChecks(t, c, "other", "other:check") // critical, but not ours
	setCheck(t, c, "understudy:postgres", Passing)
	setCheck(t, c, "understudy:role", Warning)

	wait := func(want string, failing ...string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() error {
			hs, err := c.NodeHealth(ctxT(t), "understudy")
			if err != nil {
				return err
			}
			h, ok := hs["dev"]
			if !ok || len(hs) != 1 {
				return fmt.Errorf("NodeHealth = %+v, want node dev only", hs)
			}
			var ids []string
			for _, f := range h.Failing {
				ids = append(ids, f.CheckID)
			}
			if h.Status != want || fmt.Sprint(ids) != fmt.Sprint(failing) {
				return fmt.Errorf("dev is %s failing %v, want %s failing %v", h.Status, ids, want, failing)
			}
			return nil
		})
	}
	wait(Warning, "understudy:role")
	setCheck(t, c, "understudy:postgres", Critical)
	wait(Critical, "understudy:postgres", "understudy:role")
	setCheck(t, c, "understudy:postgres", Passing)
	setCheck(t, c, "understudy:role", Passing)
	wait(Passing)
}
