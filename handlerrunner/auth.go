package handlerrunner

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// basicAuth is the API's optional HTTP basic auth. The file holds one line,
// "user:password", readable by the service user only; every node of a
// cluster uses the same one, since peers call each other's API with it.
type basicAuth struct {
	user, password string
}

func loadBasicAuth(path string) (*basicAuth, error) {
	if path == "" {
		return nil, nil
	}
	user, password, err := nodeapi.ReadBasicAuth(path)
	if err != nil {
		return nil, fmt.Errorf("api.basic_auth_file: %w", err)
	}
	return &basicAuth{user: user, password: password}, nil
}

// credentials are the user and password to send to peers, "" without basic
// auth.
func (a *basicAuth) credentials() (user, password string) {
	if a == nil {
		return "", ""
	}
	return a.user, a.password
}

// equal compares in constant time, hashing first so the length does not
// leak either.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
