package certs

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
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
