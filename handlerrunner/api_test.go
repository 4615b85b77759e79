package handlerrunner

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// testRunner is a runner whose Consul agent and PostgreSQL do not exist:
// enough for what the API answers from its own state, and for every
// request it must refuse before asking either.
func testRunner(t testing.TB, authFile string) *Runner {
	t.Helper()
	cfg := config.Default()
	cfg.Cluster.Name = "t"
	cfg.Node.Name = "a"
	cfg.Node.Address = "127.0.0.1"
	cfg.Node.DataDir = t.TempDir()
	cfg.Logging.Dir = cfg.Node.DataDir // not the machine's /var/log/understudy
	cfg.Postgres.DataDir = filepath.Join(cfg.Node.DataDir, "postgres")
	cfg.Postgres.Host = "127.0.0.1"
	cfg.Postgres.Port = 1 // nothing listens there
	cfg.Consul.Address = "127.0.0.1:1"
	cfg.API.BasicAuthFile = authFile
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r, err := New(cfg, cc, postgres.NewInstance(cfg.Postgres, "a", log), nil, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func do(t testing.TB, h http.Handler, method, path, body string, set func(*http.Request)) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if set != nil {
		set(req)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var out map[string]any
	if ct := w.Header().Get("Content-Type"); path != "/metrics" && ct != "application/json" {
		t.Fatalf("%s %s: content type %q, want application/json; body %s", method, path, ct, w.Body)
	}
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestStatusIs200OnlyOnAServingActive(t *testing.T) {
	r := testRunner(t, "")
	h := r.handler()
	now := time.Now()
	tests := []struct {
		name     string
		role     nodeapi.Role
		promoted bool
		age      time.Duration // since the lock was last confirmed
		want     int
	}{
		{"standby", nodeapi.RoleStandby, false, 0, http.StatusBadRequest},
		{"candidate", nodeapi.RoleCandidate, false, 0, http.StatusBadRequest},
		{"active before promotion", nodeapi.RoleActive, false, 0, http.StatusBadRequest},
		{"active, promoted, lock confirmed", nodeapi.RoleActive, true, 0, http.StatusOK},
		{"active, lock unconfirmed beyond the lease", nodeapi.RoleActive, true, r.fencing.Lease + time.Second, http.StatusBadRequest},
		{"demoting", nodeapi.RoleDemoting, true, 0, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.st.update(func(st *nodeapi.NodeStatus) { st.Role = tc.role })
			r.st.mu.Lock()
			r.st.promoted, r.st.confirmed = tc.promoted, now.Add(-tc.age)
			r.st.mu.Unlock()
			for _, path := range []string{"/status", "/"} {
				code, body := do(t, h, http.MethodGet, path, "", nil)
				if code != tc.want || body["role"] != string(tc.role) {
					t.Fatalf("GET %s = %d %v, want %d with role %s", path, code, body, tc.want, tc.role)
				}
				for _, m := range []string{http.MethodHead, http.MethodOptions} {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequest(m, path, nil))
					if w.Code != tc.want || w.Body.Len() != 0 {
						t.Fatalf("%s %s = %d %q, want %d without a body", m, path, w.Code, w.Body, tc.want)
					}
				}
			}
		})
	}
}

func TestBadRequestsGetJSONErrors(t *testing.T) {
	h := testRunner(t, "").handler()
	tests := []struct {
		name, method, path, body string
		want                     int
		says                     string
	}{
		{"unknown path", "GET", "/nope", "", 404, "no such endpoint"},
		{"unknown path under /", "OPTIONS", "/nope/", "", 404, "no such endpoint"},
		{"a check written to", "POST", "/status", "", 405, "takes GET, HEAD, OPTIONS"},
		{"/ written to", "PUT", "/", "", 405, "takes GET, HEAD, OPTIONS"},
		{"wrong method", "GET", "/v1/cluster/switchover", "", 405, "takes POST"},
		{"not JSON", "POST", "/v1/cluster/switchover", "target=b", 400, `send {"target"`},
		{"unknown field", "POST", "/v1/cluster/switchover", `{"node":"b"}`, 400, "unknown field"},
		{"no target", "POST", "/v1/cluster/switchover", `{}`, 400, "no target"},
		{"bad timeout", "POST", "/v1/cluster/switchover", `{"target":"b","timeout":"5 s"}`, 400, "write a duration"},
		{"negative timeout", "POST", "/v1/cluster/switchover", `{"target":"b","timeout":"-1s"}`, 400, "write a duration"},
		{"consul unreachable", "POST", "/v1/cluster/switchover", `{"target":"b"}`, 503, "cannot read the leader key"},
		{"bad lag", "GET", "/replica?lag=lots", "", 400, "number of bytes"},
		{"bad limit", "GET", "/v1/events?limit=0", "", 400, "from 1 to 10000"},
		{"cluster without consul", "GET", "/v1/status/cluster", "", 503, "consul agent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, h, tc.method, tc.path, tc.body, nil)
			msg, _ := body["error"].(string)
			if code != tc.want || !strings.Contains(msg, tc.says) {
				t.Fatalf("%s %s: %d %q, want %d saying %q", tc.method, tc.path, code, msg, tc.want, tc.says)
			}
		})
	}
}

// TestPartitionView: GET /v1/status/partition serves the consul-watcher's
// local view, says when it is stale, and without one says what to look at.
func TestPartitionView(t *testing.T) {
	r := testRunner(t, "")
	h := r.handler()
	if code, body := do(t, h, "GET", "/v1/status/partition", "", nil); code != 503 || !strings.Contains(fmt.Sprint(body["error"]), "understudy-consul-watcher") {
		t.Fatalf("no view: %d %v, want 503 naming the consul-watcher's unit", code, body)
	}
	v := cluster.Partition{Node: "a", At: time.Now(), Mode: "fence", State: cluster.PartitionMinority, Servers: 3, ReachedServers: 1,
		Peers: []cluster.PeerReach{{Name: "a", Self: true, Server: true, Reach: cluster.Reached}, {Name: "b", Server: true, Reach: cluster.Unreachable}}}
	if err := cluster.WritePartition(r.cfg.Node.DataDir, v); err != nil {
		t.Fatal(err)
	}
	code, body := do(t, h, "GET", "/v1/status/partition", "", nil)
	if code != 200 || body["state"] != cluster.PartitionMinority || body["stale"] != nil {
		t.Fatalf("fresh view: %d %v", code, body)
	}
	v.At = time.Now().Add(-time.Minute)
	if err := cluster.WritePartition(r.cfg.Node.DataDir, v); err != nil {
		t.Fatal(err)
	}
	if code, body := do(t, h, "GET", "/v1/status/partition", "", nil); code != 200 || body["stale"] != true {
		t.Fatalf("a view a minute old: %d %v, want stale", code, body)
	}
}

func TestBasicAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(file, []byte("haproxy:s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testRunner(t, file)
	h := r.handler()
	if code, _ := do(t, h, "GET", "/status", "", nil); code != http.StatusBadRequest {
		t.Fatalf("/status, open by default, without credentials on a standby: %d, want 400", code)
	}
	if code, _ := do(t, h, "GET", "/v1/events", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d, want 401", code)
	}
	if code, _ := do(t, h, "GET", "/v1/events", "", func(r *http.Request) { r.SetBasicAuth("haproxy", "wrong") }); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	if code, _ := do(t, h, "GET", "/v1/events", "", func(r *http.Request) { r.SetBasicAuth("haproxy", "s3cret") }); code != http.StatusServiceUnavailable {
		t.Fatalf("right credentials, no consul: %d, want 503", code)
	}
	if code, _ := do(t, h, "OPTIONS", "/", "", nil); code != http.StatusBadRequest {
		t.Fatalf("OPTIONS /, open as /status, without credentials on a standby: %d, want 400", code)
	}
	r.cfg.API.Open = nil
	h = r.handler()
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		for _, path := range []string{"/status", "/"} {
			if code, _ := do(t, h, m, path, "", nil); code != http.StatusUnauthorized {
				t.Fatalf("%s %s with api.open = [] and no credentials: %d, want 401", m, path, code)
			}
		}
	}
	if code, _ := do(t, h, "GET", "/status", "", func(r *http.Request) { r.SetBasicAuth("haproxy", "s3cret") }); code != http.StatusBadRequest {
		t.Fatalf("/status with api.open = [] and the right credentials on a standby: %d, want 400", code)
	}
}

// TestClientCertificates: on a TLS node the API tells each kind of caller
// what it may do before it reads anything (the runner has no Consul: a call
// let through answers 503, or 400 for a bad body).
func TestClientCertificates(t *testing.T) {
	t.Parallel() // as parallelSafe (harness_test.go) does: an API test, not a timing one
	now := time.Now()
	ca, err := certs.NewCA("t", now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("t", now)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *certs.CA, node bool, name string, at time.Time) []*x509.Certificate {
		var c *certs.NodeCert
		var err error
		if node {
			c, err = ca.IssueNode(name, "dc1", nil, at)
		} else {
			c, err = ca.IssueOperator(name, time.Hour, at)
		}
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{c.Cert}
	}
	callers := []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"none", nil},
		{"other CA", issue(other, false, "mallory", now)},
		{"expired", issue(ca, false, "bob", now.Add(-3*time.Hour))},
		{"node", issue(ca, true, "n2", now)},
		{"operator", issue(ca, false, "alice", now)},
	}
	r := testRunner(t, "")
	r.clientCAs = x509.NewCertPool()
	r.clientCAs.AddCert(ca.Cert)
	h := r.handler()
	endpoints := []struct {
		method, path, body string
		// want is the status for each caller, in the order of callers.
		want [5]int
	}{
		{"GET", "/status", "", [5]int{400, 400, 400, 400, 400}},
		{"HEAD", "/status", "", [5]int{400, 400, 400, 400, 400}},
		{"OPTIONS", "/status", "", [5]int{400, 400, 400, 400, 400}},
		{"OPTIONS", "/", "", [5]int{400, 400, 400, 400, 400}},
		{"GET", "/", "", [5]int{400, 400, 400, 400, 400}},
		{"HEAD", "/replica", "", [5]int{503, 503, 503, 503, 503}},
		{"OPTIONS", "/v1/events", "", [5]int{401, 401, 401, 405, 405}},
		{"GET", "/health", "", [5]int{503, 503, 503, 503, 503}},
		{"GET", "/metrics", "", [5]int{401, 401, 401, 200, 200}},
		{"GET", "/v1/status/cluster", "", [5]int{401, 401, 401, 503, 503}},
		{"GET", "/v1/events", "", [5]int{401, 401, 401, 503, 503}},
		{"GET", "/v1/status/partition", "", [5]int{401, 401, 401, 503, 503}},
		{"GET", "/v1/lease/grants", "", [5]int{401, 401, 401, 400, 400}},
		{"POST", "/v1/cluster/switchover", `{"target":"b"}`, [5]int{401, 401, 401, 403, 503}},
		{"DELETE", "/v1/cluster/nodes/b", "", [5]int{401, 401, 401, 403, 503}},
		{"PUT", "/v1/cluster/nodes/b/options", `{"nofailover":true}`, [5]int{401, 401, 401, 403, 503}},
		{"POST", "/v1/cluster/pause", `{"reason":"x"}`, [5]int{401, 401, 401, 403, 503}},
		{"POST", "/v1/cluster/resume", "", [5]int{401, 401, 401, 403, 503}},
		{"GET", "/v1/cluster/config", "", [5]int{401, 401, 401, 503, 503}},
		{"PUT", "/v1/cluster/config", `{"set":{"work_mem":"64MB"}}`, [5]int{401, 401, 401, 403, 503}},
		{"PUT", "/v1/cluster/config", `{"set":{"port":"1"}}`, [5]int{401, 401, 401, 403, 400}},
		{"POST", "/v1/node/reload", "", [5]int{401, 401, 401, 403, 409}},
		{"POST", "/v1/node/restart", "", [5]int{401, 401, 401, 403, 409}},
		{"PUT", "/v1/cluster/nodes/b/maintenance", `{"reason":"x"}`, [5]int{401, 401, 401, 403, 503}},
		{"DELETE", "/v1/cluster/nodes/b/maintenance", "", [5]int{401, 401, 401, 403, 503}},
		// No target: the operator's request is refused before Consul is asked.
		{"POST", "/v1/cluster/failover", `{"target":""}`, [5]int{401, 401, 401, 403, 400}},
		{"GET", "/nothing", "", [5]int{401, 401, 401, 404, 404}},
	}
	for _, e := range endpoints {
		for i, c := range callers {
			req := httptest.NewRequest(e.method, e.path, strings.NewReader(e.body))
			req.TLS = &tls.ConnectionState{PeerCertificates: c.chain}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != e.want[i] {
				t.Errorf("%s %s as %s: %d %s, want %d", e.method, e.path, c.name, w.Code, strings.TrimSpace(w.Body.String()), e.want[i])
			}
			if w.Code == 401 || w.Code == 403 {
				var body map[string]string
				if json.Unmarshal(w.Body.Bytes(), &body) != nil || !strings.Contains(body["error"], "understudy certs operator") {
					t.Errorf("%s %s as %s: %d %s; want a JSON error naming understudy certs operator", e.method, e.path, c.name, w.Code, w.Body)
				}
			}
		}
	}
}

func TestBasicAuthFileMustBeUserColonPassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(file, []byte("just-a-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadBasicAuth(file); err == nil || !strings.Contains(err.Error(), "user:password") {
		t.Fatalf("loadBasicAuth = %v, want an error naming the form user:password", err)
	}
}

func TestCandidateNeedsALiveStreamingStandby(t *testing.T) {
	ok := nodeapi.NodeStatus{Role: nodeapi.RoleStandby, HasSession: true, Priority: 100,
		Postgres: nodeapi.PGStatus{Running: true, InRecovery: true, Timeline: 2, ReceiveLSN: 300, ReplayLSN: 200}}
	tests := []struct {
		name    string
		change  func(st *nodeapi.NodeStatus)
		err     error
		passed  bool
		healthy bool
	}{
		{"streaming standby", func(*nodeapi.NodeStatus) {}, nil, false, true},
		{"did not answer", func(*nodeapi.NodeStatus) {}, errTest, false, false},
		{"no session", func(st *nodeapi.NodeStatus) { st.HasSession = false }, nil, false, false},
		{"postgres down", func(st *nodeapi.NodeStatus) { st.Postgres.Running = false }, nil, false, false},
		{"a primary", func(st *nodeapi.NodeStatus) { st.Postgres.InRecovery = false }, nil, false, false},
		{"rejoining", func(st *nodeapi.NodeStatus) { st.Role = nodeapi.RoleRejoining }, nil, false, false},
		{"passed over", func(*nodeapi.NodeStatus) {}, nil, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := ok
			tc.change(&st)
			c := candidate("b", st, tc.err, tc.passed)
			if c.Healthy != tc.healthy || c.LSN != 300 || c.Timeline != 2 {
				t.Fatalf("candidate = %+v, want healthy %v at LSN 300 on timeline 2", c, tc.healthy)
			}
		})
	}
}

var errTest = &json.SyntaxError{}

// FuzzAPI sends arbitrary requests to the API of a TLS node, as a caller
// with no certificate, a node's or an operator's: it must answer every one
// with a status and JSON, never panic or hang.
func FuzzAPI(f *testing.F) {
	f.Add("POST", "/v1/cluster/switchover", `{"target":"b","timeout":"1s"}`, uint8(2))
	f.Add("GET", "/replica?lag=10", "", uint8(0))
	f.Add("GET", "/v1/events?limit=5", "", uint8(1))
	f.Add("PUT", "/status", "x", uint8(0))
	f.Add("OPTIONS", "/", "", uint8(0))
	f.Add("HEAD", "/replica?lag=1", "", uint8(1))
	f.Add("POST", "/v1/cluster/join", `{"token":"ust1.x","node":"b","address":"10.0.0.6","version":"1"}`, uint8(0))
	f.Add("POST", "/v1/cluster/join", `{"token":`, uint8(0))
	f.Add("PUT", "/v1/cluster/nodes/b/options", `{"nofailover":true}`, uint8(2))
	f.Add("POST", "/v1/lease/grant", `{"session":"s","holder":"a"}`, uint8(1))
	r := testRunner(f, "")
	r.cfg.Consul.Scheme = "https" // a TLS node: the join call is served
	ca, err := certs.NewCA("t", time.Now())
	if err != nil {
		f.Fatal(err)
	}
	node, err := ca.IssueNode("b", "dc1", nil, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	operator, err := ca.IssueOperator("alice", 0, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	r.clientCAs = x509.NewCertPool()
	r.clientCAs.AddCert(ca.Cert)
	chains := [][]*x509.Certificate{nil, {node.Cert}, {operator.Cert}}
	h := r.handler()
	f.Fuzz(func(t *testing.T, method, path, body string, who uint8) {
		if _, err := url.ParseRequestURI(path); err != nil || !strings.HasPrefix(path, "/") || len(path) > 200 || strings.HasPrefix(path, "/metrics") {
			return // not a request a client could send, or not JSON by design
		}
		switch method {
		case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS":
		default:
			return
		}
		if path == "/health" || path == "/v1/status/node" || strings.HasPrefix(path, "/health?") || strings.HasPrefix(path, "/v1/status/node?") {
			return // these ask PostgreSQL, which does not exist here
		}
		req, err := http.NewRequest(method, "https://node"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.TLS = &tls.ConnectionState{PeerCertificates: chains[int(who)%len(chains)]}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusMovedPermanently || w.Code == http.StatusTemporaryRedirect || w.Code == http.StatusPermanentRedirect {
			return // ServeMux sends unclean paths ("/.", "//x") to their clean form
		}
		if (method == "HEAD" || method == "OPTIONS") && w.Body.Len() == 0 && w.Code != http.StatusNotFound {
			return // a check's answer: its status only
		}
		if w.Code < 200 || w.Code > 599 || !json.Valid(w.Body.Bytes()) {
			t.Fatalf("%s %s %q: %d %q", method, path, body, w.Code, w.Body)
		}
	})
}

// TestJoinSaysNothingBeforeTheToken: a join whose token cannot be checked
// (this node's Consul agent does not answer) learns nothing of the cluster,
// not even its version; one from an address that failed too often is held
// off without a look at its token.
func TestJoinSaysNothingBeforeTheToken(t *testing.T) {
	r := testRunner(t, "")
	r.cfg.Consul.Scheme = "https" // a TLS node
	join := func(body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/cluster/join", strings.NewReader(body))
		req.TLS = &tls.ConnectionState{}
		w := httptest.NewRecorder()
		r.handler().ServeHTTP(w, req)
		return w
	}
	w := join(`{"token":"ust1.x","node":"b","address":"10.0.0.6","version":"0.9.0"}`)
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "test") || strings.Contains(w.Body.String(), "join-token") {
		t.Fatalf("join from another version, token unchecked: %d %s", w.Code, w.Body)
	}

	for range joinFailMax {
		r.joinFails.fail("192.0.2.1", time.Now()) // httptest's RemoteAddr
	}
	w = join(`{"token":"ust1.x","node":"b","address":"10.0.0.6"}`)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "too many failed joins") {
		t.Fatalf("join after %d failures: %d %v %s", joinFailMax, w.Code, w.Header(), w.Body)
	}
}

func TestFailLimiter(t *testing.T) {
	t0 := time.Now()
	l := newFailLimiter(3, time.Minute, 2)
	for i := range 3 {
		if d := l.wait("a", t0); d != 0 {
			t.Fatalf("after %d failures: wait %v", i, d)
		}
		l.fail("a", t0.Add(time.Duration(i)*time.Second))
	}
	if d := l.wait("a", t0.Add(10*time.Second)); d != 50*time.Second {
		t.Fatalf("after 3 failures in 3 s: wait %v, want 50s (until the first leaves the window)", d)
	}
	if d := l.wait("b", t0.Add(10*time.Second)); d != 0 {
		t.Fatalf("another address waits %v", d)
	}
	if d := l.wait("a", t0.Add(61*time.Second)); d != 0 {
		t.Fatalf("a minute after the first failure: wait %v", d)
	}
	// Past maxKeys addresses, the newcomers share one count.
	l.fail("b", t0)
	for _, k := range []string{"c", "d", "e"} {
		l.fail(k, t0)
	}
	if d := l.wait("f", t0); d == 0 {
		t.Fatal("a new address past the key limit does not share the newcomers' count")
	}
	if len(l.fails) > 3 {
		t.Fatalf("%d keys kept, want at most maxKeys and the shared one", len(l.fails))
	}
	// Old failures are forgotten, and with them the keys.
	l.fail("g", t0.Add(2*time.Minute))
	if _, ok := l.fails["a"]; ok {
		t.Fatal("a's old failures are still kept")
	}
}

// TestLimitAnswers503WhenFull: past maxInFlight requests the API answers at
// once with 503 and Retry-After, and serves again when one ends.
func TestLimitAnswers503WhenFull(t *testing.T) {
	sem := make(chan struct{}, 2)
	h := limit(sem, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, map[string]any{}) })
	sem <- struct{}{}
	sem <- struct{}{}
	w := httptest.NewRecorder()
	h(w, httptest.NewRequest("GET", "/v1/events", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("full: %d %v %s, want 503 with Retry-After: 1", w.Code, w.Header(), w.Body)
	}
	<-sem
	w = httptest.NewRecorder()
	h(w, httptest.NewRequest("GET", "/v1/events", nil))
	if w.Code != http.StatusOK || len(sem) != 1 {
		t.Fatalf("after one ended: %d, %d in flight; want 200 and the slot given back", w.Code, len(sem))
	}
}
