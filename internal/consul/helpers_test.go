package consul

import (
	"context"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// agent starts a dev Consul agent for one test and returns a client of it.
func agent(t *testing.T) (*testenv.Consul, *Client) {
	t.Helper()
	testenv.RequireIntegration(t)
	t.Parallel()
	a := testenv.StartConsulDev(t)
	c, err := New(config.Consul{Address: a.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// ctxT is a context for one call, bounded so a hung agent fails the test
// instead of hanging it.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// registerChecks registers service id with one TTL check per check ID, all
// critical (as RegisterService starts them). The TTL is long: the tests
// change states with UpdateTTL and must not race the TTL running out.
func registerChecks(t *testing.T, c *Client, id string, checkIDs ...string) {
	t.Helper()
	svc := Service{ID: id, Name: id, Port: 1}
	for _, ch := range checkIDs {
		svc.Checks = append(svc.Checks, TTLCheck{CheckID: ch, Name: ch, TTL: time.Hour})
	}
	if err := c.RegisterService(ctxT(t), svc); err != nil {
		t.Fatal(err)
	}
}

func setCheck(t *testing.T, c *Client, id, status string) {
	t.Helper()
	if err := c.UpdateTTL(ctxT(t), id, status, "set by the test: "+status); err != nil {
		t.Fatal(err)
	}
}

// passingSession creates a session bound to checks once Consul's catalog
// lets it (a check's new state reaches the catalog shortly after UpdateTTL).
func passingSession(t *testing.T, c *Client, o SessionOptions) string {
	t.Helper()
	var id string
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		id, err = c.CreateSession(ctxT(t), o)
		return err
	})
	return id
}
