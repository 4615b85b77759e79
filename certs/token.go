package certs

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	tokenPrefix = "ust1."
	hashPrefix  = "sha256:"
)

// NewJoinToken returns a join token, to show the operator once, and the hash
// to store in its place. The token is "ust1." followed by 32 random bytes in
// unpadded base64url, so it survives shells and URLs unquoted; the version
// prefix lets a later format coexist and makes a token easy to recognise in
// a leaked log.
func NewJoinToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("join token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token), nil
}

// VerifyJoinToken reports whether token is the one hash was made from. The
// comparison takes the same time wherever the hashes differ, so response
// times tell a caller nothing about the stored hash.
func VerifyJoinToken(token, hash string) bool {
	if !strings.HasPrefix(token, tokenPrefix) || !strings.HasPrefix(hash, hashPrefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(hash)) == 1
}

// hashToken is a single, fast SHA-256, not a password hash (bcrypt, argon2):
// a slow KDF exists to make guessing low-entropy passwords expensive, but
// the token is 256 random bits, which no amount of guessing recovers from
// its hash, so the stored hash is as good as useless to whoever reads it.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// JoinTokenRecord is what the cluster keeps of its join token, the value of
// the join-token key: the hash of the token, never the token, when it was
// issued and until when it admits a node, and the hashes of the tokens it
// replaced. It is all the active needs to tell a good token from an
// expired, a revoked or a wrong one.
type JoinTokenRecord struct {
	Hash      string    `json:"hash"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// By is the node that issued it (cluster start or cluster token).
	By string `json:"by"`
	// Revoked are the tokens this one replaced, newest first, at most
	// maxRevoked: kept only so that an old token's holder is told it was
	// revoked rather than wrong.
	Revoked []RevokedToken `json:"revoked,omitempty"`
}

// RevokedToken is a join token that a newer one replaced.
type RevokedToken struct {
	Hash      string    `json:"hash"`
	RevokedAt time.Time `json:"revoked_at"`
}

const maxRevoked = 8

// Why a join token is refused. TokenError carries one, and errors.Is
// tells them apart.
var (
	ErrTokenWrong   = errors.New("the join token is not this cluster's")
	ErrTokenExpired = errors.New("the join token expired")
	ErrTokenRevoked = errors.New("the join token was revoked")
)

// TokenError is a refused join token: why, and when it expired or was
// revoked.
type TokenError struct {
	Why error
	At  time.Time
}

func (e *TokenError) Error() string {
	if e.At.IsZero() {
		return e.Why.Error()
	}
	return fmt.Sprintf("%v at %s", e.Why, e.At.UTC().Format(time.RFC3339))
}

func (e *TokenError) Unwrap() error { return e.Why }

// IssueJoinToken makes a new join token valid for ttl from now, and the
// record to store in place of prev (nil for a cluster's first): the token
// prev held is revoked by it.
func IssueJoinToken(prev *JoinTokenRecord, by string, now time.Time, ttl time.Duration) (token string, rec JoinTokenRecord, err error) {
	if ttl <= 0 {
		return "", JoinTokenRecord{}, fmt.Errorf("join token lifetime %v: it must be positive, such as 1h", ttl)
	}
	token, hash, err := NewJoinToken()
	if err != nil {
		return "", JoinTokenRecord{}, err
	}
	now = now.UTC()
	rec = JoinTokenRecord{Hash: hash, IssuedAt: now, ExpiresAt: now.Add(ttl), By: by}
	if prev != nil && prev.Hash != "" {
		rec.Revoked = append([]RevokedToken{{Hash: prev.Hash, RevokedAt: now}}, prev.Revoked...)
		rec.Revoked = rec.Revoked[:min(len(rec.Revoked), maxRevoked)]
	}
	return token, rec, nil
}

// Check says whether token admits a node at now: nil, or a *TokenError
// that wraps ErrTokenExpired, ErrTokenRevoked or ErrTokenWrong. Every
// comparison is a constant-time one of hashes (VerifyJoinToken). A record
// without an expiry (written before tokens expired) admits nobody.
func (r JoinTokenRecord) Check(token string, now time.Time) error {
	if VerifyJoinToken(token, r.Hash) {
		if !now.Before(r.ExpiresAt) {
			return &TokenError{Why: ErrTokenExpired, At: r.ExpiresAt}
		}
		return nil
	}
	for _, old := range r.Revoked {
		if VerifyJoinToken(token, old.Hash) {
			return &TokenError{Why: ErrTokenRevoked, At: old.RevokedAt}
		}
	}
	return &TokenError{Why: ErrTokenWrong}
}
