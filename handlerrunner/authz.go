package handlerrunner

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"
	"time"

	"github.com/understudy-ha/understudy/certs"
)

// access is who may call an endpoint.
type access int

const (
	// accessOpen: the load balancer's checks, answered without credentials
	// when api.open names them (else as accessNode).
	accessOpen access = iota
	// accessToken: the join call, which carries its own credential.
	accessToken
	// accessNode: a node certificate or an operator certificate: what
	// peers call of each other, and the reads.
	accessNode
	// accessOperator: an operator certificate: what changes the cluster.
	accessOperator
)

// maxInFlight caps the API's concurrent requests of callers with
// credentials: a flood of calls must not starve the role loop of PostgreSQL
// connections and Consul reads, and the load balancer's checks (not
// capped) must still be answered while it lasts.
const maxInFlight = 32

// maxJoinsInFlight caps concurrent join calls, which anyone may make.
const maxJoinsInFlight = 4

// Server limits. The write timeout is the budget of every answer but a
// switchover's, which waits for the target to take over and sets its own
// deadline (handleSwitchover).
const (
	apiReadHeaderTimeout = 5 * time.Second
	apiReadTimeout       = 10 * time.Second
	apiWriteTimeout      = 30 * time.Second
	apiIdleTimeout       = 60 * time.Second
	apiMaxHeaderBytes    = 64 << 10
)

type callerKey struct{}

type operatorKey struct{}

// operatorCaller tells whether the request may change the cluster: an
// operator certificate on a TLS node; anyone the API lets in elsewhere (a
// node without TLS asks for basic auth at most).
func operatorCaller(ctx context.Context) bool {
	op, _ := ctx.Value(operatorKey{}).(bool)
	return op
}

// caller is who made the request, as events record it: "operator alice",
// "node n2", "basic auth user admin", "" when the API asks nobody (a node
// without TLS or basic auth).
func caller(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// authorize wraps h with the checks need asks for. On a TLS node every call
// but the open and join ones needs a client certificate of the cluster's
// CA, checked here rather than in the handshake (see certs.ServerTLS), and
// basic auth, when configured, comes on top. A node without TLS (tests, a
// dev cluster on loopback) asks for basic auth only, when configured.
func (r *Runner) authorize(need access, path string, h http.HandlerFunc) http.HandlerFunc {
	if need == accessOpen && !slices.Contains(r.cfg.API.Open, path) {
		need = accessNode
	}
	if need == accessOpen || need == accessToken {
		return h
	}
	return func(w http.ResponseWriter, req *http.Request) {
		var who string
		operator := r.clientCAs == nil
		if r.clientCAs != nil {
			var chain []*x509.Certificate
			if req.TLS != nil {
				chain = req.TLS.PeerCertificates
			}
			if len(chain) == 0 {
				writeError(w, http.StatusUnauthorized, "%s needs a client certificate of this cluster's CA; on a node, issue one with: understudy certs operator NAME, then: understudy profile add PROFILE --nodes ... --ca ca.pem --cert NAME.pem --key NAME-key.pem", req.URL.Path)
				return
			}
			c, err := certs.VerifyClient(r.clientCAs, chain, time.Now())
			if err != nil {
				writeError(w, http.StatusUnauthorized, "%v; on a node, issue an operator certificate with: understudy certs operator NAME", err)
				return
			}
			if need == accessOperator && c.Role != certs.RoleOperator {
				writeError(w, http.StatusForbidden, "%s %s needs an operator certificate; %s may only read; on a node, issue one with: understudy certs operator NAME", req.Method, req.URL.Path, c)
				return
			}
			who, operator = c.String(), c.Role == certs.RoleOperator
		}
		if r.auth != nil {
			u, p, ok := req.BasicAuth()
			if !ok || !equal(u, r.auth.user) || !equal(p, r.auth.password) {
				w.Header().Set("WWW-Authenticate", `Basic realm="understudy"`)
				writeError(w, http.StatusUnauthorized, "basic auth required; use the user and password of api.basic_auth_file")
				return
			}
			if who == "" {
				who = "basic auth user " + u
			}
		}
		ctx := context.WithValue(req.Context(), operatorKey{}, operator)
		if who != "" {
			ctx = context.WithValue(ctx, callerKey{}, who)
		}
		req = req.WithContext(ctx)
		h(w, req)
	}
}

// limit answers 503 while maxInFlight requests are being served.
func limit(sem chan struct{}, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			h(w, req)
		default:
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "the API is serving %d such requests already; retry in a second", cap(sem))
		}
	}
}
