package files

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestRESTNeedsAPIKey: Syncthing's REST API answers only a request that
// carries the API key. Without a GUI user, Syncthing v1.30.0 hands a CSRF
// cookie to any request outside /rest (GET /), and that cookie with its
// header opens every /rest endpoint: any local user could add a device and
// a folder of / to a Syncthing that runs as root. The GUI user Prepare
// sets closes that route; understudy's own client (the API key) still
// configures devices and folders.
func TestRESTNeedsAPIKey(t *testing.T) {
	testenv.RequireIntegration(t)
	n := startNode(t, "node-a", "", "")
	ctx := context.Background()
	base := "http://" + n.setup.APIAddress
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hostile := &http.Client{Jar: jar, Transport: &http.Transport{Proxy: nil}}
	do := func(method, path, body string, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hostile.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(data)
	}
	refused := func(code int) bool { return code == http.StatusUnauthorized || code == http.StatusForbidden }

	// The route of the report: GET / for the cookie, then /rest with the
	// cookie and its value in the header.
	if code, _ := do(http.MethodGet, "/", "", nil); code != http.StatusOK {
		t.Fatalf("GET / answered %d, want 200 (the GUI's page, open to anyone)", code)
	}
	var csrf *http.Cookie
	for _, c := range jar.Cookies(mustURL(t, base)) {
		if strings.HasPrefix(c.Name, "CSRF-Token-") {
			csrf = c
		}
	}
	withCSRF := http.Header{}
	if csrf != nil {
		withCSRF.Set("X-"+csrf.Name, csrf.Value)
	} else {
		t.Log("GET / handed out no CSRF cookie; trying the route without it")
	}
	peer := fmt.Sprintf(`{"deviceID":%q,"name":"intruder","addresses":["tcp://127.0.0.1:1"]}`, idB)
	folder := `{"id":"root","path":"/","type":"sendreceive","devices":[{"deviceID":"` + idB + `"}]}`
	for _, tc := range []struct {
		name               string
		method, path, body string
		header             http.Header
	}{
		{"read the configuration through the CSRF cookie", http.MethodGet, "/rest/system/config", "", withCSRF},
		{"read the configuration (/rest/config) through the CSRF cookie", http.MethodGet, "/rest/config", "", withCSRF},
		{"add a device through the CSRF cookie", http.MethodPost, "/rest/config/devices", peer, withCSRF},
		{"add a folder of / through the CSRF cookie", http.MethodPost, "/rest/config/folders", folder, withCSRF},
		{"read the configuration with nothing", http.MethodGet, "/rest/system/config", "", nil},
		{"a wrong API key", http.MethodGet, "/rest/system/config", "", http.Header{"X-Api-Key": {"wrong"}}},
		{"a wrong bearer token", http.MethodGet, "/rest/system/config", "", http.Header{"Authorization": {"Bearer wrong"}}},
		{"a guessed user and password", http.MethodGet, "/rest/system/config", "", http.Header{
			"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(guiUser+":"+guiUser))}}},
		{"the debug endpoints", http.MethodGet, "/rest/debug/peerCompletion", "", withCSRF},
		{"the metrics", http.MethodGet, "/metrics", "", withCSRF},
	} {
		if code, body := do(tc.method, tc.path, tc.body, tc.header); !refused(code) {
			t.Errorf("%s: %s %s answered %d, want 401 or 403:\n%.300s", tc.name, tc.method, tc.path, code, body)
		}
	}

	// What stays open says nothing about devices or folders.
	if code, body := do(http.MethodGet, "/rest/noauth/health", "", nil); code != http.StatusOK {
		t.Errorf("GET /rest/noauth/health answered %d, want 200:\n%.300s", code, body)
	}

	// Nothing the refused calls tried is in the configuration, and the
	// API key still does everything understudy needs.
	devices, folders, err := n.client.Configured(ctx)
	if err != nil {
		t.Fatalf("understudy's client with the API key: %v", err)
	}
	if len(devices) != 0 || len(folders) != 0 {
		t.Errorf("after refused calls: devices %+v folders %+v, want none", devices, folders)
	}
	n.apply(t, []Device{{ID: idB, Name: "peer", Addresses: []string{"tcp://127.0.0.1:1"}}}, true)
	if devices, folders, err = n.client.Configured(ctx); err != nil || len(devices) != 1 || len(folders) != 1 {
		t.Errorf("Apply with the API key: devices %+v folders %+v (%v), want the peer and the folder", devices, folders, err)
	}
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
