package cluster

import "fmt"

// FailoverGap is what an operator's failover (cluster failover --to) would
// lose: the last write position known of the former active against the
// position of the node to promote.
type FailoverGap struct {
	// LastKnown is the former active's last published write position (the
	// leader key's, or its member record's while that shows a primary); 0
	// when unknown. It may be up to one check interval old: writes after
	// the last publication are not seen by anyone but the former active.
	LastKnown LSN `json:"last_known_lsn"`
	// Target is the most advanced of the target's received and replayed
	// positions: promotion replays everything received before it takes
	// writes, so what it received is kept. 0 when unknown.
	Target LSN `json:"target_lsn"`
	// TargetReplay is the target's replay position, shown beside it.
	TargetReplay LSN `json:"target_replay_lsn"`
}

// Bytes is how far the target trails the last known position: 0 when it
// has everything known, -1 when either position is unknown.
func (g FailoverGap) Bytes() int64 { return Lag(g.LastKnown, g.Target) }

// LosesData reports whether promoting the target could lose writes: it is
// behind the last known position, or either position is unknown (nobody
// can then say it is not behind).
func (g FailoverGap) LosesData() bool { return g.Bytes() != 0 }

// String says the gap in a line, as the CLI shows it before it asks.
func (g FailoverGap) String() string {
	last, target := "unknown", "unknown"
	if g.LastKnown != 0 {
		last = g.LastKnown.String()
	}
	if g.Target != 0 {
		target = fmt.Sprintf("%v (replayed %v)", g.Target, g.TargetReplay)
	}
	switch b := g.Bytes(); {
	case b < 0:
		return fmt.Sprintf("last known write position of the former active %s, target at %s: the gap is unknown", last, target)
	case b == 0:
		return fmt.Sprintf("last known write position of the former active %s, target at %s: nothing known is lost", last, target)
	default:
		return fmt.Sprintf("last known write position of the former active %s, target at %s: %d bytes of WAL would be lost", last, target, b)
	}
}
