package lifecycle

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consul"
)

// IssueToken issues a new join token for the cluster the node cfg
// describes is in, valid for ttl, and revokes the one before: it replaces
// the join-token key through the node's Consul agent (CAS, so that two
// issuers at once cannot both believe theirs is the token) and records the
// issue as an event.
// Warnings go to out.
func IssueToken(ctx context.Context, cfg *config.Config, ttl time.Duration, out io.Writer) (Result, error) {
	id, found, err := ReadIdentity(cfg.Node.DataDir)
	if err != nil {
		return Result{}, err
	} else if !found {
		return Result{}, fmt.Errorf("node %s is in no cluster (no %s): run cluster token on a node that cluster start or join set up", cfg.Node.Name, layout{cfg.Node.DataDir}.identity())
	}
	cc, err := consul.New(cfg.Consul)
	if err != nil {
		return Result{}, err
	}
	keys := cluster.NewKeys(cfg.Cluster.KVPrefix, cfg.Cluster.Name)
	for range 5 {
		var prev certs.JoinTokenRecord
		index, _, err := cc.GetJSON(ctx, keys.JoinToken(), &prev)
		if err != nil {
			return Result{}, fmt.Errorf("read the join token: %w; is the node's Consul agent running (understudy node start)?", err)
		}
		now := time.Now()
		token, rec, err := certs.IssueJoinToken(&prev, cfg.Node.Name, now, ttl)
		if err != nil {
			return Result{}, err
		}
		ok, err := cc.CASJSON(ctx, keys.JoinToken(), rec, index)
		if err != nil {
			return Result{}, fmt.Errorf("write the join token: %w", err)
		}
		if !ok {
			continue // another issuer wrote first: revoke theirs too
		}
		ev := cluster.Event{Time: now.UTC(), Node: cfg.Node.Name, Kind: cluster.EventJoinToken,
			Reason: fmt.Sprintf("a new join token, valid until %s; the one before is revoked", rec.ExpiresAt.Format(time.RFC3339))}
		if _, err := cc.AppendEvent(ctx, keys.Events(), cfg.Node.Name, ev); err != nil {
			// The token is issued: the missing event is the lesser loss.
			fmt.Fprintf(out, "warning: the new token is issued, but its event was not recorded: %v\n", err)
		}
		return Result{Token: token, TokenExpires: rec.ExpiresAt, CAFingerprint: id.CAFingerprint}, nil
	}
	return Result{}, fmt.Errorf("write the join token: another node kept writing it at the same time; run cluster token again")
}
