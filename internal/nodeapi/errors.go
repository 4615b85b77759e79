package nodeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIError is an answer of a node other than 2xx: the node's own message
// (the "error" field of its JSON body) and the rest of the body, which says
// more for some errors (a 409 of a switchover names the active node).
type APIError struct {
	// URL is the node's API base URL.
	URL    string
	Status int
	// Message is the body's "error", or the status text when the body is
	// not the API's JSON.
	Message string
	Body    map[string]any
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// newAPIError is the error of a node's answer other than 2xx: raw is its
// body, the API's JSON when the node is an understudy node.
func newAPIError(base string, status int, raw []byte) *APIError {
	e := &APIError{URL: base, Status: status}
	if json.Unmarshal(raw, &e.Body) == nil {
		e.Message = e.field("error")
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
		if s := strings.TrimSpace(string(raw)); s != "" && len(s) < 200 && !strings.Contains(s, "\n") {
			e.Message += ": " + s
		}
	}
	return e
}

// field returns a string field of the error body, "" when absent.
func (e *APIError) field(name string) string {
	s, _ := e.Body[name].(string)
	return s
}

// NodesError is the failure of a call that may go to any node: every node
// was tried and none gave an answer. Its message is one line.
type NodesError struct {
	Profile string
	What    string
	Errs    []error
}

func (e *NodesError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("no node of profile %q answered for %s: %s", e.Profile, e.What, strings.Join(msgs, "; "))
}

func (e *NodesError) Unwrap() []error { return e.Errs }

// retryable reports whether another node may answer where this one did not:
// the node was unreachable, timed out or answered 5xx. A 4xx is about the
// request and every node would answer the same.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	return true
}

// transportError turns what net/http returns into a short reason: the URL is
// said once, by the caller's wrapping, not again by *url.Error.
func transportError(err error, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		if timeout <= 0 {
			return fmt.Errorf("no answer in time: %w", err)
		}
		return fmt.Errorf("no answer within %v: %w", timeout, err)
	}
	return err
}
