package certs

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJoinTokenRecord(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	first, rec1, err := IssueJoinToken(nil, "a", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !rec1.IssuedAt.Equal(t0) || !rec1.ExpiresAt.Equal(t0.Add(time.Hour)) || rec1.By != "a" || len(rec1.Revoked) != 0 {
		t.Fatalf("first record %+v", rec1)
	}
	// cluster token, ten minutes later: the first is revoked.
	t1 := t0.Add(10 * time.Minute)
	second, rec2, err := IssueJoinToken(&rec1, "b", t1, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec2.Revoked) != 1 || rec2.Revoked[0].Hash != rec1.Hash || !rec2.Revoked[0].RevokedAt.Equal(t1) {
		t.Fatalf("second record %+v", rec2)
	}
	stranger, _, _ := NewJoinToken()

	tests := []struct {
		name  string
		rec   JoinTokenRecord
		token string
		at    time.Time
		want  error // nil: admitted
	}{
		{"valid", rec1, first, t0.Add(59 * time.Minute), nil},
		{"at its expiry", rec1, first, t0.Add(time.Hour), ErrTokenExpired},
		{"after its expiry", rec1, first, t0.Add(2 * time.Hour), ErrTokenExpired},
		{"another cluster's", rec1, stranger, t0, ErrTokenWrong},
		{"empty", rec1, "", t0, ErrTokenWrong},
		{"the hash as the token", rec1, rec1.Hash, t0, ErrTokenWrong},
		{"the new one", rec2, second, t1, nil},
		{"the replaced one, though not expired", rec2, first, t1, ErrTokenRevoked},
		{"the new one, expired", rec2, second, t1.Add(30 * time.Minute), ErrTokenExpired},
		{"a record without expiry", JoinTokenRecord{Hash: rec1.Hash}, first, t0, ErrTokenExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rec.Check(tc.token, tc.at)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var te *TokenError
			if !errors.Is(err, tc.want) || !errors.As(err, &te) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	// The revoked list is bounded, newest first.
	rec := rec2
	for i := range 20 {
		_, next, err := IssueJoinToken(&rec, "a", t1.Add(time.Duration(i+1)*time.Minute), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if next.Revoked[0].Hash != rec.Hash {
			t.Fatalf("issue %d: revoked[0] is not the token it replaced", i)
		}
		rec = next
	}
	if len(rec.Revoked) != maxRevoked {
		t.Fatalf("%d revoked tokens kept, want %d", len(rec.Revoked), maxRevoked)
	}

	if _, _, err := IssueJoinToken(nil, "a", t0, 0); err == nil {
		t.Fatal("a token without lifetime was issued")
	}

	// What is stored holds no token.
	b, _ := json.Marshal(rec2)
	for _, tok := range []string{first, second, strings.TrimPrefix(first, tokenPrefix), strings.TrimPrefix(second, tokenPrefix)} {
		if strings.Contains(string(b), tok) {
			t.Fatalf("the stored record %s holds a token", b)
		}
	}
	// The error says when.
	if err := rec1.Check(first, t0.Add(2*time.Hour)); !strings.Contains(err.Error(), "expired at 2025-01-02T04:04:05Z") {
		t.Fatalf("expired token error %q does not say when", err)
	}
}
