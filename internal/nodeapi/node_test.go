package nodeapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNodeClientDo(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "secret" {
			reply(w, http.StatusUnauthorized, map[string]any{"error": "basic auth required"})
			return
		}
		switch r.URL.Path {
		case "/v1/lease/grant":
			var g GrantRequest
			if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&g) != nil {
				reply(w, http.StatusBadRequest, map[string]any{"error": "bad body"})
				return
			}
			reply(w, http.StatusOK, GrantReply{Granted: g.Holder == "n1"})
		case "/v1/status/node":
			reply(w, http.StatusOK, NodeStatus{Name: "n2", Role: RoleStandby})
		case "/status":
			reply(w, http.StatusBadRequest, StatusAnswer{Node: "n2", Role: RoleStandby})
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	tc := srv.Client().Transport.(*http.Transport).TLSClientConfig
	ctx := context.Background()
	c := NewNodeClient(tc, "ops", "secret")

	var rep GrantReply
	if err := c.Do(ctx, srv.URL, http.MethodPost, "/v1/lease/grant", GrantRequest{Holder: "n1", Session: "s"}, &rep, time.Second); err != nil || !rep.Granted {
		t.Fatalf("grant: %+v, %v", rep, err)
	}
	if st, err := c.NodeStatus(ctx, srv.URL+"/", time.Second); err != nil || st.Name != "n2" || st.Role != RoleStandby {
		t.Fatalf("NodeStatus: %+v, %v", st, err)
	}

	// A standby's /status is an answer: Alive, not Active.
	if err := c.Alive(ctx, srv.URL, time.Second); err != nil {
		t.Fatalf("Alive of a standby: %v", err)
	}
	a, err := c.Active(ctx, srv.URL, time.Second)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.field("role") != "standby" || ae.URL != srv.URL {
		t.Fatalf("Active of a standby: %+v, %v", a, err)
	}

	// Refusals are typed, with the node's message; they count as alive.
	anon := NewNodeClient(tc, "", "")
	err = anon.Do(ctx, srv.URL, http.MethodGet, "/v1/status/node", nil, nil, time.Second)
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Message != "basic auth required" {
		t.Fatalf("without credentials: %v", err)
	}
	if err := anon.Alive(ctx, srv.URL, time.Second); err != nil {
		t.Fatalf("Alive when refused: %v", err)
	}

	// The timeout is the call's, and said.
	err = c.Do(ctx, srv.URL, http.MethodGet, "/slow", nil, nil, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("slow: %v", err)
	}

	// A client that does not trust the server's CA gets no answer at all.
	untrusting := NewNodeClient(&tls.Config{MinVersion: tls.VersionTLS12}, "ops", "secret")
	if err := untrusting.Alive(ctx, srv.URL, time.Second); err == nil {
		t.Fatal("Alive through an unknown CA")
	}
	srv.Close()
	if err := c.Alive(ctx, srv.URL, time.Second); err == nil {
		t.Fatal("Alive of a closed server")
	}
}
