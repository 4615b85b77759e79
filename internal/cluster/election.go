package cluster

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Candidate is what the election knows of one member at the moment it decides
// (asked of the peer's API, not the stale record).
type Candidate struct {
	Name string
	// Healthy: its Consul checks (serfHealth and the understudy service's)
	// pass and its API answered just now.
	Healthy    bool
	NoFailover bool
	// Maintenance: the node is in maintenance (understudy node
	// maintenance on), never chosen.
	Maintenance bool
	// Timeline is the timeline it receives; 0 when unknown.
	Timeline uint32
	// LSN is the most advanced of received and replayed WAL: what it can
	// serve once it has replayed what it already has.
	LSN      LSN
	Priority int
	// Regaining: the former active, its PostgreSQL still the primary
	// under its lease, taking back a lock it lost to a failure report
	// while it is alive and healthy (a node that was cut off and came back
	// can report it dead). Chosen before any standby: nothing to promote,
	// nothing lost, no writer but the one there was.
	Regaining bool
}

// Exclusion says why one candidate could not be chosen.
type Exclusion struct {
	Name   string
	Reason string
}

// NoCandidateError is ChooseNextMaster's answer when nobody is eligible. It
// lists every member and why it was left out, so the operator sees what to
// fix (a check, nofailover, lag) without reading logs of every node.
type NoCandidateError struct {
	Excluded []Exclusion // sorted by name
}

func (e *NoCandidateError) Error() string {
	if len(e.Excluded) == 0 {
		return "no eligible candidate for next master: no members to choose from"
	}
	parts := make([]string, len(e.Excluded))
	for i, x := range e.Excluded {
		parts[i] = x.Name + ": " + x.Reason
	}
	return "no eligible candidate for next master: " + strings.Join(parts, "; ")
}

// ChooseNextMaster picks the next active deterministically: among healthy
// candidates without NoFailover, within maxLag bytes of lastPrimaryLSN (skip
// that rule when lastPrimaryLSN is 0 / unknown), and when syncSet != nil only
// those in syncSet: the highest (Timeline, LSN), then the highest Priority,
// then the lowest name. It returns the name and a reason string naming why
// ("highest LSN 0/3000060 on timeline 2"), or an error *NoCandidateError
// listing why each member was excluded.
//
// A candidate whose LSN is 0 is never chosen: its position is unknown, and
// promoting it could lose everything the others have. A negative maxLag is
// taken as 0 (only a standby with everything the primary wrote). A non-nil
// but empty syncSet excludes everyone: in synchronous mode with no
// synchronous standby, any choice could lose acknowledged writes.
func ChooseNextMaster(cands []Candidate, lastPrimaryLSN LSN, maxLag int64, syncSet []string) (string, string, error) {
	maxLag = max(maxLag, 0)
	var eligible []Candidate
	var excluded []Exclusion
	for _, c := range cands {
		if why := exclusion(c, lastPrimaryLSN, maxLag, syncSet); why != "" {
			excluded = append(excluded, Exclusion{Name: c.Name, Reason: why})
			continue
		}
		eligible = append(eligible, c)
	}
	if len(eligible) == 0 {
		sort.SliceStable(excluded, func(i, j int) bool { return excluded[i].Name < excluded[j].Name })
		return "", "", &NoCandidateError{Excluded: excluded}
	}
	// Sort a copy, best first, so the result does not depend on the order
	// peers answered in.
	slices.SortStableFunc(eligible, func(a, b Candidate) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	return eligible[0].Name, reason(eligible), nil
}

// exclusion returns why c may not be chosen, or "" when it may.
func exclusion(c Candidate, lastPrimaryLSN LSN, maxLag int64, syncSet []string) string {
	switch {
	case !c.Healthy:
		return "unhealthy (a Consul check is failing or its API did not answer)"
	case c.Maintenance:
		return "in maintenance (understudy node maintenance off " + c.Name + " ends it)"
	case c.NoFailover:
		return "nofailover is set"
	case syncSet != nil && !slices.Contains(syncSet, c.Name):
		return "not in the synchronous standby set (synchronous mode)"
	case c.LSN == 0:
		return "its WAL position is unknown"
	}
	if lastPrimaryLSN != 0 {
		if lag := Lag(lastPrimaryLSN, c.LSN); lag > maxLag {
			return fmt.Sprintf("at %v, %d bytes behind the last primary LSN %v, more than maximum_lag_on_failover (%d bytes)",
				c.LSN, lag, lastPrimaryLSN, maxLag)
		}
	}
	return ""
}

// better reports whether a ranks before b: the former active regaining its
// lock first, then higher (timeline, LSN), then higher priority, then lower
// name.
func better(a, b Candidate) bool {
	if a.Regaining != b.Regaining {
		return a.Regaining
	}
	if a.Timeline != b.Timeline {
		return a.Timeline > b.Timeline
	}
	if a.LSN != b.LSN {
		return a.LSN > b.LSN
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Name < b.Name
}

// reason says which rule decided between the winner and the runner-up.
func reason(ranked []Candidate) string {
	w := ranked[0]
	at := fmt.Sprintf("LSN %v on timeline %d", w.LSN, w.Timeline)
	if len(ranked) == 1 {
		return "only eligible candidate, at " + at
	}
	r := ranked[1]
	switch {
	case w.Regaining:
		return "the former active, taking back its lock with its PostgreSQL still the primary, at " + at
	case w.Timeline != r.Timeline:
		return fmt.Sprintf("highest timeline %d (at LSN %v)", w.Timeline, w.LSN)
	case w.LSN != r.LSN:
		return "highest " + at
	case w.Priority != r.Priority:
		return fmt.Sprintf("highest priority %d among candidates at %s", w.Priority, at)
	default:
		return fmt.Sprintf("first by name among candidates at %s with priority %d", at, w.Priority)
	}
}
