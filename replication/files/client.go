package files

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Per-call timeouts. A call is bounded by the shorter of its timeout and the
// caller's context.
const (
	// readTimeout bounds reads: Syncthing answers them from memory.
	readTimeout = 10 * time.Second
	// writeTimeout bounds configuration changes, which return only once
	// every affected folder has been stopped and started again, and a
	// stopping folder first finishes the file it is writing.
	writeTimeout = 30 * time.Second
	// scanTimeout bounds Scan, which returns when the scan is done: hashing
	// a large folder from scratch takes minutes.
	scanTimeout = 15 * time.Minute
	// maxResponse caps what is read of an answer: a few folders' status and
	// configuration are kilobytes.
	maxResponse = 8 << 20
)

// ErrUnknownFolder is returned for a folder that Syncthing does not have
// configured: Apply has not run yet, or the folder was removed.
var ErrUnknownFolder = errors.New("folder not configured in syncthing")

// Client talks to one Syncthing's REST API.
type Client struct {
	base   string // http://host:port
	addr   string // host:port, for messages
	apiKey string
	http   *http.Client
}

// NewClient returns a client of the REST API at apiAddress (host:port, plain
// HTTP), authenticating with apiKey.
func NewClient(apiAddress, apiKey string) *Client {
	return &Client{
		base:   "http://" + apiAddress,
		addr:   apiAddress,
		apiKey: apiKey,
		http: &http.Client{Transport: &http.Transport{
			// The API is on the node itself: a proxy from the
			// environment must never see the API key.
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}},
	}
}

// Open returns a client of the Syncthing running from home, with the API
// key Prepare stored there.
func Open(home, apiAddress string) (*Client, error) {
	key, err := ReadAPIKey(home)
	if err != nil {
		return nil, err
	}
	return NewClient(apiAddress, key), nil
}

// Ping checks that Syncthing answers and accepts the API key.
func (c *Client) Ping(ctx context.Context) error {
	var pong struct {
		Ping string `json:"ping"`
	}
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/system/ping", nil, nil, &pong); err != nil {
		return err
	}
	if pong.Ping != "pong" {
		return fmt.Errorf("syncthing at %s: ping answered %q, not pong: is that Syncthing?", c.addr, pong.Ping)
	}
	return nil
}

// MyID returns the device ID of the running Syncthing.
func (c *Client) MyID(ctx context.Context) (string, error) {
	var status struct {
		MyID string `json:"myID"`
	}
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/system/status", nil, nil, &status); err != nil {
		return "", err
	}
	id, err := canonicalID(status.MyID)
	if err != nil {
		return "", fmt.Errorf("syncthing at %s: system status: %w", c.addr, err)
	}
	return id, nil
}

// Override makes this node's version of every file in folder, a send-only
// folder, the global version that the others pull: after a promotion, what
// the new active has wins over what the old one announced last.
// Syncthing does it in the background; this returns once it was asked.
func (c *Client) Override(ctx context.Context, folder string) error {
	if err := c.requireType(ctx, folder, typeSendOnly, "override"); err != nil {
		return err
	}
	return c.call(ctx, writeTimeout, http.MethodPost, "/rest/db/override", url.Values{"folder": {folder}}, nil, nil)
}

// Revert undoes the local changes in folder, a receive-only folder: files
// added here are deleted, changed or deleted ones are pulled again from the
// others. It scans the folder first and so may take as long as Scan:
// Syncthing reverts only the changes it has scanned, and one made in the
// second before (the watcher's delay) would otherwise stay, silently. The
// revert itself runs in the background; FolderStatus shows
// ReceiveOnlyChangedItems drop to 0.
func (c *Client) Revert(ctx context.Context, folder string) error {
	if err := c.requireType(ctx, folder, typeReceiveOnly, "revert"); err != nil {
		return err
	}
	if err := c.Scan(ctx, folder); err != nil {
		return fmt.Errorf("revert: %w", err)
	}
	return c.call(ctx, writeTimeout, http.MethodPost, "/rest/db/revert", url.Values{"folder": {folder}}, nil, nil)
}

// requireType checks that folder is configured with type want before
// action: Syncthing answers an override or revert of a folder it does not
// have, or of another type, with 200 and does nothing.
func (c *Client) requireType(ctx context.Context, folder, want, action string) error {
	var f folderJSON
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/config/folders/"+url.PathEscape(folder), nil, nil, &f); err != nil {
		return fmt.Errorf("%s %q: %w", action, folder, asUnknownFolder(err))
	}
	if f.Type != want {
		return fmt.Errorf("%s %q: syncthing at %s has it %s, not %s; set the folder types first (SetFolderTypes)", action, folder, c.addr, f.Type, want)
	}
	return nil
}

// Scan rescans folder now and returns when the scan is done; the file
// system watcher makes this rarely needed, but a role change can use it to
// know the index is current.
func (c *Client) Scan(ctx context.Context, folder string) error {
	err := c.call(ctx, scanTimeout, http.MethodPost, "/rest/db/scan", url.Values{"folder": {folder}}, nil, nil)
	if err != nil {
		return fmt.Errorf("scan %q: %w", folder, err)
	}
	return nil
}

// FolderStatus is what Syncthing reports about one folder on this node.
type FolderStatus struct {
	// State is "idle", "scanning", "scan-waiting", "syncing",
	// "sync-preparing", "sync-waiting", "cleaning", "error", ...; ""
	// when Syncthing does not say.
	State string
	// NeedBytes and NeedItems are what this node still has to pull from the
	// others to have the global version of every file.
	NeedBytes, NeedItems int64
	// GlobalBytes is the size of the folder's global version, LocalBytes
	// of what this node has.
	GlobalBytes, LocalBytes int64
	// ReceiveOnlyChangedItems and -Bytes are local changes in a
	// receive-only folder: files written on a standby, which Revert undoes.
	ReceiveOnlyChangedItems, ReceiveOnlyChangedBytes int64
	// Errors counts files that failed to sync; Error is why the whole
	// folder stopped, if it did ("" otherwise).
	Errors int64
	Error  string
}

// FolderStatus returns the status of folder; ErrUnknownFolder when
// Syncthing does not have it.
func (c *Client) FolderStatus(ctx context.Context, folder string) (FolderStatus, error) {
	var raw json.RawMessage
	if err := c.call(ctx, readTimeout, http.MethodGet, "/rest/db/status", url.Values{"folder": {folder}}, nil, &raw); err != nil {
		return FolderStatus{}, fmt.Errorf("status of folder %q: %w", folder, asUnknownFolder(err))
	}
	st, err := decodeFolderStatus(raw)
	if err != nil {
		return FolderStatus{}, fmt.Errorf("syncthing at %s: status of folder %q: %w", c.addr, folder, err)
	}
	return st, nil
}

// folderStatusJSON is the part of /rest/db/status (lib/model.FolderSummary)
// that FolderStatus reports.
type folderStatusJSON struct {
	State                   string `json:"state"`
	NeedBytes               int64  `json:"needBytes"`
	NeedTotalItems          int64  `json:"needTotalItems"`
	GlobalBytes             int64  `json:"globalBytes"`
	LocalBytes              int64  `json:"localBytes"`
	ReceiveOnlyTotalItems   int64  `json:"receiveOnlyTotalItems"`
	ReceiveOnlyChangedBytes int64  `json:"receiveOnlyChangedBytes"`
	Errors                  int64  `json:"errors"`
	Error                   string `json:"error"`
}

// decodeFolderStatus decodes an answer of /rest/db/status.
func decodeFolderStatus(data []byte) (FolderStatus, error) {
	var s folderStatusJSON
	if err := decodeJSON(data, &s); err != nil {
		return FolderStatus{}, err
	}
	return FolderStatus{
		State:     s.State,
		NeedBytes: s.NeedBytes, NeedItems: s.NeedTotalItems,
		GlobalBytes: s.GlobalBytes, LocalBytes: s.LocalBytes,
		ReceiveOnlyChangedItems: s.ReceiveOnlyTotalItems, ReceiveOnlyChangedBytes: s.ReceiveOnlyChangedBytes,
		Errors: s.Errors, Error: s.Error,
	}, nil
}

// decodeJSON decodes one JSON value, which must be an object or array.
func decodeJSON(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		return fmt.Errorf("answer is not a JSON object: %.80q", data)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// statusError is a non-2xx answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// asUnknownFolder turns Syncthing's 404 into ErrUnknownFolder.
func asUnknownFolder(err error) error {
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return fmt.Errorf("%w (%s)", ErrUnknownFolder, se.msg)
	}
	return err
}

// call sends one request with body (JSON, unless nil) and decodes the answer
// into out (unless nil; a *json.RawMessage gets the bytes).
func (c *Client) call(ctx context.Context, timeout time.Duration, method, path string, query url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("syncthing %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("syncthing %s %s: %w", method, path, err)
	}
	req.Header.Set("X-API-Key", c.apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("syncthing at %s: %s %s: %w; is Syncthing running and listening there?", c.addr, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("syncthing at %s: %s %s: read answer: %w", c.addr, method, path, err)
	}
	if len(data) > maxResponse {
		return fmt.Errorf("syncthing at %s: %s %s: answer larger than %d bytes", c.addr, method, path, maxResponse)
	}
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("syncthing at %s: %s %s: %s: %s", c.addr, method, path, resp.Status, strings.TrimSpace(string(truncate(data, 300))))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			msg += "; the API key is not Syncthing's: run Prepare and restart Syncthing"
		}
		return &statusError{code: resp.StatusCode, msg: msg}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	if err := decodeJSON(data, out); err != nil {
		return fmt.Errorf("syncthing at %s: %s %s: %w", c.addr, method, path, err)
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
