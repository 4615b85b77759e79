package nodeapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// fakeNode is a handler-runner API that answers what the test sets. It is a
// fake of our own API, so the client's protocol handling can be tested
// without a cluster; the real API is exercised end to end elsewhere.
type fakeNode struct {
	name   string
	active bool
	// status is the answer to /v1/status/cluster: code and body.
	statusCode int
	statusBody any
	// switchover answers POST /v1/cluster/switchover.
	switchover func(w http.ResponseWriter, req SwitchoverRequest)
	delay      time.Duration
	auth       string // user:password required when set
	calls      atomic.Int32
	srv        *httptest.Server
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	if f.auth != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u+":"+p != f.auth {
			reply(w, http.StatusUnauthorized, map[string]any{"error": "basic auth required; use the user and password of api.basic_auth_file"})
			return
		}
	}
	switch r.URL.Path {
	case "/status":
		role, code := "standby", http.StatusBadRequest
		if f.active {
			role, code = "active", http.StatusOK
		}
		reply(w, code, map[string]any{"node": f.name, "role": role})
	case "/v1/status/cluster":
		code := f.statusCode
		if code == 0 {
			code = http.StatusOK
		}
		reply(w, code, f.statusBody)
	case "/v1/status/node":
		reply(w, http.StatusOK, NodeStatus{Name: f.name, Role: RoleStandby})
	case "/v1/events":
		reply(w, http.StatusOK, map[string]any{"events": []cluster.Event{{Node: f.name, Kind: "limit=" + r.URL.Query().Get("limit")}}})
	case "/v1/cluster/switchover":
		var req SwitchoverRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
			return
		}
		f.switchover(w, req)
	default:
		reply(w, http.StatusNotFound, map[string]any{"error": "no such endpoint"})
	}
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func startNodes(t *testing.T, nodes ...*fakeNode) Profile {
	t.Helper()
	p := Profile{Name: "test"}
	for _, n := range nodes {
		n.srv = httptest.NewServer(n)
		t.Cleanup(n.srv.Close)
		p.Nodes = append(p.Nodes, n.srv.URL)
	}
	return p
}

// deadURL is an address nothing listens on.
func deadURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func TestActive(t *testing.T) {
	a, b, c := &fakeNode{name: "a"}, &fakeNode{name: "b", active: true}, &fakeNode{name: "c"}
	p := startNodes(t, a, b, c)
	p.Nodes = append(p.Nodes, deadURL(t)) // a node that is down does not matter
	got, err := New(p).Active(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != b.srv.URL || got.Name != "b" {
		t.Fatalf("Active = %+v, want b at %s", got, b.srv.URL)
	}
	for _, n := range []*fakeNode{a, b, c} {
		if n.calls.Load() != 1 {
			t.Errorf("%s asked %d times, want once", n.name, n.calls.Load())
		}
	}
}

func TestActiveNone(t *testing.T) {
	p := startNodes(t, &fakeNode{name: "a"}, &fakeNode{name: "b"})
	dead := deadURL(t)
	p.Nodes = append(p.Nodes, dead)
	_, err := New(p).Active(context.Background())
	if !errors.Is(err, ErrNoActive) {
		t.Fatalf("err = %v, want ErrNoActive", err)
	}
	for _, want := range []string{p.Nodes[0] + ": a is standby", p.Nodes[1] + ": b is standby", "ask " + dead + " for its role", "cluster status"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestActiveSeveral(t *testing.T) {
	p := startNodes(t, &fakeNode{name: "a", active: true}, &fakeNode{name: "b"}, &fakeNode{name: "c", active: true})
	_, err := New(p).Active(context.Background())
	if err == nil || !strings.Contains(err.Error(), "several nodes") || !strings.Contains(err.Error(), "a at ") || !strings.Contains(err.Error(), "c at ") {
		t.Fatalf("err = %v, want a split brain naming a and c", err)
	}
}

func TestClusterStatusTriesNodesInOrder(t *testing.T) {
	down := &fakeNode{name: "a", statusCode: http.StatusServiceUnavailable,
		statusBody: map[string]any{"error": "cannot read the cluster from consul: connection refused; is the local consul agent running?"}}
	slow := &fakeNode{name: "b", delay: time.Second}
	ok := &fakeNode{name: "c", statusBody: ClusterStatus{Cluster: "prod", Leader: "c", Members: []cluster.Member{{Name: "c"}}}}
	p := startNodes(t, down, slow, ok)
	cs, err := New(p, WithNodeTimeout(100*time.Millisecond)).ClusterStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cs.Cluster != "prod" || cs.Leader != "c" || len(cs.Members) != 1 {
		t.Fatalf("ClusterStatus = %+v", cs)
	}
}

// TestClusterStatusPrefersAFreshAnswer: a node cut off (or in a Consul
// outage) answers stale; the client asks on and takes a fresh answer, and
// the stale one only when no node has better.
func TestClusterStatusPrefersAFreshAnswer(t *testing.T) {
	minority := &fakeNode{name: "a", statusBody: ClusterStatus{Cluster: "prod", Leader: "a", Stale: true}}
	majority := &fakeNode{name: "b", statusBody: ClusterStatus{Cluster: "prod", Leader: "b"}}
	cs, err := New(startNodes(t, minority, majority)).ClusterStatus(context.Background())
	if err != nil || cs.Leader != "b" || cs.Stale {
		t.Fatalf("ClusterStatus = %+v, %v; want b's fresh answer", cs, err)
	}
	down := &fakeNode{name: "c", statusCode: http.StatusServiceUnavailable, statusBody: map[string]any{"error": "no consul"}}
	alone := &fakeNode{name: "a", statusBody: ClusterStatus{Cluster: "prod", Leader: "a", Stale: true}}
	cs, err = New(startNodes(t, alone, down)).ClusterStatus(context.Background())
	if err != nil || cs.Leader != "a" || !cs.Stale {
		t.Fatalf("ClusterStatus = %+v, %v; want a's stale answer, the only one", cs, err)
	}
}

func TestErrorsSurfaceTheNodesMessage(t *testing.T) {
	msg := "cannot read the cluster from consul: connection refused; is the local consul agent running?"
	a := &fakeNode{name: "a", statusCode: http.StatusServiceUnavailable, statusBody: map[string]any{"error": msg}}
	p := startNodes(t, a)
	dead := deadURL(t)
	p.Nodes = append(p.Nodes, dead)
	_, err := New(p).ClusterStatus(context.Background())
	var ne *NodesError
	if !errors.As(err, &ne) || len(ne.Errs) != 2 {
		t.Fatalf("err = %#v, want a NodesError of both nodes", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.URL != a.srv.URL {
		t.Fatalf("err = %v, want the APIError of %s", err, a.srv.URL)
	}
	want := `no node of profile "test" answered for the cluster status: ask ` + a.srv.URL + " for the cluster status: " + msg + " (HTTP 503); ask " + dead + " for the cluster status: "
	if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error\n%s\nwant one line starting\n%s", err, want)
	}
}

func TestClientErrorStopsTheSearch(t *testing.T) {
	a := &fakeNode{name: "a", statusCode: http.StatusBadRequest, statusBody: map[string]any{"error": "bad request"}}
	b := &fakeNode{name: "b", statusBody: ClusterStatus{}}
	p := startNodes(t, a, b)
	_, err := New(p).ClusterStatus(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad request (HTTP 400)") {
		t.Fatalf("err = %v", err)
	}
	if b.calls.Load() != 0 {
		t.Fatal("a 4xx is the same on every node; b should not have been asked")
	}
}

func TestBasicAuth(t *testing.T) {
	a := &fakeNode{name: "a", auth: "ops:secret", statusBody: ClusterStatus{Cluster: "prod"}}
	p := startNodes(t, a)
	_, err := New(p).ClusterStatus(context.Background())
	if err == nil || !strings.Contains(err.Error(), "basic auth required") || !strings.Contains(err.Error(), "--basic-auth-file") {
		t.Fatalf("without credentials: err = %v, want the node's message and how to give them", err)
	}
	p.BasicAuthFile = filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(p.BasicAuthFile, []byte("ops:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cs, err := New(p).ClusterStatus(context.Background()); err != nil || cs.Cluster != "prod" {
		t.Fatalf("with credentials: %+v, %v", cs, err)
	}
	p.BasicAuthFile += ".missing"
	if err := New(p).Err(); err == nil || !strings.Contains(err.Error(), `profile "test"`) {
		t.Fatalf("missing auth file: Err = %v", err)
	}
}

func TestEvents(t *testing.T) {
	p := startNodes(t, &fakeNode{name: "a"})
	evs, err := New(p).Events(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != "limit=7" {
		t.Fatalf("Events = %+v, want the limit passed on", evs)
	}
}

func TestNodeStatuses(t *testing.T) {
	p := startNodes(t, &fakeNode{name: "a"}, &fakeNode{name: "b"})
	urls := append(p.Nodes, deadURL(t))
	res := New(p).NodeStatuses(context.Background(), urls)
	if res[0].Status.Name != "a" || res[1].Status.Name != "b" || res[0].Err != nil || res[2].Err == nil {
		t.Fatalf("NodeStatuses = %+v", res)
	}
}

func switchoverOK() func(http.ResponseWriter, SwitchoverRequest) {
	return func(w http.ResponseWriter, req SwitchoverRequest) {
		if req.Timeout != "30s" {
			reply(w, http.StatusBadRequest, map[string]any{"error": "timeout " + req.Timeout})
			return
		}
		reply(w, http.StatusOK, map[string]any{"active": req.Target, "took": "1.5s"})
	}
}

func notActive(name, api string) func(http.ResponseWriter, SwitchoverRequest) {
	return func(w http.ResponseWriter, _ SwitchoverRequest) {
		reply(w, http.StatusConflict, map[string]any{"error": "this node is not the active node; send the switchover to the active node " + name,
			"active": name, "active_api": api})
	}
}

func TestSwitchoverFollows409Once(t *testing.T) {
	// a answered 200 on /status a moment ago but has lost the role to b.
	b := &fakeNode{name: "b", switchover: switchoverOK()}
	pb := startNodes(t, b)
	a := &fakeNode{name: "a", active: true, switchover: notActive("b", b.srv.URL)}
	p := startNodes(t, a)
	res, err := New(p).Switchover(context.Background(), "c", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Active != "c" || res.Took != 1500*time.Millisecond || res.URL != pb.Nodes[0] {
		t.Fatalf("Switchover = %+v, want c after 1.5s, run by b", res)
	}
}

func TestSwitchoverFollowsOnlyOnce(t *testing.T) {
	a, b := &fakeNode{name: "a", active: true}, &fakeNode{name: "b"}
	p := startNodes(t, a, b)
	a.switchover, b.switchover = notActive("b", b.srv.URL), notActive("a", a.srv.URL)
	_, err := New(p).Switchover(context.Background(), "c", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "ask "+b.srv.URL+" for a switchover to c: this node is not the active node") {
		t.Fatalf("err = %v, want b's 409", err)
	}
	if a.calls.Load() != 2 || b.calls.Load() != 2 { // /status and one POST each
		t.Fatalf("calls a=%d b=%d, want 2 each", a.calls.Load(), b.calls.Load())
	}
}

func TestSwitchoverWithoutActive(t *testing.T) {
	a := &fakeNode{name: "a", switchover: notActive("", "")}
	p := startNodes(t, a)
	_, err := New(p).Switchover(context.Background(), "b", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no node holds the leader lock") {
		t.Fatalf("err = %v", err)
	}
}

func TestSwitchoverRefused(t *testing.T) {
	a := &fakeNode{name: "a", active: true, switchover: func(w http.ResponseWriter, _ SwitchoverRequest) {
		reply(w, http.StatusConflict, map[string]any{"error": "b cannot take over: it has nofailover set"})
	}}
	p := startNodes(t, a)
	_, err := New(p).Switchover(context.Background(), "b", 30*time.Second)
	want := "ask " + a.srv.URL + " for a switchover to b: b cannot take over: it has nofailover set (HTTP 409)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}
