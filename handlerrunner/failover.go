package handlerrunner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// An operator's failover (understudy cluster failover --to NODE) is for a
// cluster whose active is gone or unhealthy: paused (nothing is elected
// then), or with no standby the election may choose (all too far behind).
// It promotes nothing itself. It writes next-master for the current term
// naming NODE, marked Operator, and the election's own guarantees do the
// rest:
//
//   - a live active that still holds the lock reads next-master naming
//     another node for its term and fences at once (checkActive), releasing
//     the lock, or loses its session (a hung one: the check-runner's guard);
//   - NODE takes the free lock as any chosen node does (takeOver), and
//     promotes only after it has waited out the old active's lease or has
//     its word that it fenced (waitOldLease): never two writers;
//   - the other candidates agree on NODE (agreeOnNextMaster reads the
//     record for this term first), and a paused cluster's standbys stay
//     put: only the node named stands for that election (runStandby).
//
// It is refused while a healthy active holds the lock (a switchover loses
// nothing), when NODE cannot take over, and, without force, when NODE is
// behind the former active's last known write position or either position
// is unknown (cluster.FailoverGap).

// handleFailover serves POST /v1/cluster/failover.
func (r *Runner) handleFailover(w http.ResponseWriter, req *http.Request) {
	var in nodeapi.FailoverRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, `request body: %v; send {"target": "NODE", "force": false, "dry_run": false, "timeout": "60s"}`, err)
		return
	}
	if in.Target == "" {
		writeError(w, http.StatusBadRequest, `no target; send {"target": "NODE"} with the name of a standby`)
		return
	}
	timeout, err := parseTimeout(in.Timeout)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second))
	ans, code, err := r.failover(req.Context(), in, timeout)
	if err != nil {
		writeErrorBody(w, code, err.Error(), map[string]any{"plan": ans.FailoverPlan})
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// failover plans the failover in asks for and, unless it is a dry run or
// refused, writes next-master and waits until the target holds the lock.
func (r *Runner) failover(ctx context.Context, in nodeapi.FailoverRequest, timeout time.Duration) (nodeapi.FailoverAnswer, int, error) {
	plan, ks, code, err := r.planFailover(ctx, in.Target)
	ans := nodeapi.FailoverAnswer{FailoverPlan: plan}
	switch {
	case err != nil:
		return ans, code, err
	case in.DryRun:
		return ans, http.StatusOK, nil
	case plan.Refused != "":
		return ans, http.StatusConflict, fmt.Errorf("failover to %s refused: %s", in.Target, plan.Refused)
	case plan.LosesData && !in.Force:
		return ans, http.StatusConflict, fmt.Errorf("failover to %s refused: it would lose data (%v); pass --force to accept that loss", in.Target, plan.Gap)
	}
	who := caller(ctx)
	cur, found, index, err := r.readNextMaster(ctx)
	if err != nil {
		return ans, http.StatusServiceUnavailable, fmt.Errorf("cannot read next-master: %w", err)
	}
	if !found {
		index = 0
	}
	// An election (or switchover) already chose for this term: its choice
	// stands, and the operator looks again rather than overriding it.
	if found && cur.Term == ks.LockIndex && !cur.Operator && cur.Node != in.Target {
		return ans, http.StatusConflict, fmt.Errorf("the election of this term already chose %s (%s); look at understudy cluster status and retry", cur.Node, cur.Reason)
	}
	reason := fmt.Sprintf("failover to %s requested by %s: %v", in.Target, orAPI(who, r.name), plan.Gap)
	nm := cluster.NextMaster{Node: in.Target, By: r.name, Reason: reason, At: time.Now().UTC(),
		Term: ks.LockIndex, RequestedBy: who, Operator: true}
	// CAS on what was read: an election that writes between the read and
	// this write wins, and the operator is told to look again.
	ok, err := r.cc.CASJSON(ctx, r.keys.NextMaster(), nm, index)
	if err != nil {
		return ans, http.StatusServiceUnavailable, fmt.Errorf("cannot write next-master: %w", err)
	}
	if !ok {
		return ans, http.StatusConflict, fmt.Errorf("next-master changed meanwhile (an election or a switchover); look at understudy cluster status and retry")
	}
	r.log.Warn("failover requested", "target", in.Target, "by", who, "former_active", plan.FormerActive,
		"last_known_lsn", plan.Gap.LastKnown, "target_lsn", plan.Gap.Target, "gap_bytes", plan.GapBytes, "forced", in.Force)
	r.record(ctx, cluster.Event{Kind: cluster.EventFailoverRequest, From: plan.FormerActive, To: in.Target, By: who, LSN: plan.Gap.Target,
		Reason: reason, Details: map[string]string{
			"last_known_lsn": plan.Gap.LastKnown.String(), "target_lsn": plan.Gap.Target.String(),
			"gap_bytes": fmt.Sprint(plan.GapBytes), "forced": fmt.Sprint(in.Force), "paused": fmt.Sprint(plan.Paused)}})
	holder, took, err := r.waitForHolder(ctx, in.Target, ks.Session, time.Now(), timeout)
	ans.Active, ans.Took = holder, took.Round(time.Millisecond).String()
	switch {
	case err != nil:
		return ans, http.StatusGatewayTimeout, err
	case holder != in.Target:
		return ans, http.StatusConflict, fmt.Errorf("%s could not take over and %s holds the lock; see understudy cluster history for why", in.Target, holder)
	}
	return ans, http.StatusOK, nil
}

func orAPI(who, node string) string {
	if who == "" {
		return "node " + node + "'s API"
	}
	return who
}

// planFailover reads what a failover to target would do: who holds the
// lock and whether it is a healthy active, the target's live state, and the
// gap. A refusal that force cannot override is in plan.Refused; err is for
// what could not be read (code is its HTTP status).
func (r *Runner) planFailover(ctx context.Context, target string) (nodeapi.FailoverPlan, consul.KeyState, int, error) {
	plan := nodeapi.FailoverPlan{Target: target, GapBytes: -1}
	ks, l, err := r.readLeaderPatiently(ctx)
	if err != nil {
		return plan, ks, http.StatusServiceUnavailable, fmt.Errorf("cannot read the leader key: %w; is consul up and has it a leader?", err)
	}
	plan.FormerActive, plan.FormerActiveHolds = l.Node, ks.Session != ""
	var p cluster.Pause
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Paused(), &p); err != nil {
		return plan, ks, http.StatusServiceUnavailable, fmt.Errorf("cannot read the paused key: %w", err)
	} else {
		plan.Paused = found
	}
	var mt cluster.Maintenance
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Maintenance(target), &mt); err != nil {
		return plan, ks, http.StatusServiceUnavailable, fmt.Errorf("cannot read the maintenance key of %s: %w", target, err)
	} else if found {
		plan.Refused = fmt.Sprintf("%s is in maintenance (by %s); understudy node maintenance off %s first", target, mt.By, target)
	}
	members := r.members(ctx)
	var tm, former *cluster.Member
	for i := range members {
		switch members[i].Name {
		case target:
			tm = &members[i]
		case l.Node:
			former = &members[i]
		}
	}
	if tm == nil || tm.Address == "" && target != r.name {
		return plan, ks, http.StatusNotFound, fmt.Errorf("no member named %q; see understudy cluster nodes list for the members", target)
	}
	if ks.Session != "" && l.Node == target {
		plan.Refused = target + " is the active node already"
		return plan, ks, 0, nil
	}
	plan.FormerActiveState = r.formerActiveState(ctx, ks, l, former)
	if ks.Session != "" && plan.FormerActiveState == "" {
		plan.Refused = fmt.Sprintf("%s is a healthy active holding the lock and can hand over: use a switchover, which loses nothing: understudy cluster set-active %s", l.Node, target)
		if plan.Paused {
			plan.Refused += " (after understudy cluster resume)"
		}
	}
	var st nodeapi.NodeStatus
	if target == r.name {
		st = r.nodeStatus(ctx)
	} else {
		st, err = r.askPeer(ctx, *tm)
	}
	plan.Gap = cluster.FailoverGap{LastKnown: r.lastPrimaryLSN(ctx, l), Target: st.Postgres.Position(), TargetReplay: st.Postgres.ReplayLSN}
	r.widenGap(ctx, &plan, ks, l, members)
	plan.GapBytes, plan.LosesData = plan.Gap.Bytes(), plan.Gap.LosesData()
	if plan.Refused == "" {
		plan.Refused = targetRefusal(target, st, err)
	}
	return plan, ks, 0, nil
}

// formerActiveState is why the node the leader key names is not a healthy
// active that could hand over, "" when it is one.
func (r *Runner) formerActiveState(ctx context.Context, ks consul.KeyState, l cluster.Leader, m *cluster.Member) string {
	switch {
	case l.Node == "":
		return "no node has held the lock yet"
	case ks.Session == "":
		return "gone: its session ended and the lock is free"
	case m == nil:
		return "holds the lock but publishes no member record"
	}
	var st nodeapi.NodeStatus
	var err error
	if l.Node == r.name {
		st = r.nodeStatus(ctx)
	} else {
		st, err = r.askPeer(ctx, *m)
	}
	switch {
	case err != nil:
		return "holds the lock but does not answer: " + err.Error()
	case st.Role != nodeapi.RoleActive || !st.Serving:
		return fmt.Sprintf("holds the lock but is not serving (role %s)", st.Role)
	case !st.HasSession:
		return "holds the lock but has no consul session"
	case !st.Postgres.Running || st.Postgres.InRecovery:
		return "holds the lock but its postgres is not a running primary"
	}
	return ""
}

// targetRefusal is why a node in state st (err: it did not answer) cannot
// take over, "" when it can: what an election asks of a candidate.
func targetRefusal(target string, st nodeapi.NodeStatus, err error) string {
	switch {
	case err != nil:
		return target + " does not answer: " + err.Error()
	case st.Maintenance != nil:
		return target + " is in maintenance; understudy node maintenance off " + target + " first"
	case st.NoFailover:
		return target + " has nofailover set (or stepped down moments ago); clear it with understudy cluster nodes update " + target + " --option nofailover=false"
	case !st.Postgres.Running:
		return target + "'s postgres is not running"
	case !st.Postgres.InRecovery:
		return target + "'s postgres is not a standby"
	case !st.HasSession:
		return target + " has no consul session (a bound check is failing): it cannot take the lock"
	case st.Role != nodeapi.RoleStandby && st.Role != nodeapi.RoleCandidate:
		return fmt.Sprintf("%s is %s, not a standby", target, st.Role)
	}
	return ""
}

// waitForHolder waits until a session other than former (the one that held
// the lock when the failover was asked for, "" for none) holds the leader
// key, up to timeout, and returns its node and how long that took from
// start.
func (r *Runner) waitForHolder(ctx context.Context, target, former string, start time.Time, timeout time.Duration) (string, time.Duration, error) {
	deadline := start.Add(timeout)
	var idx uint64
	for time.Now().Before(deadline) {
		ks, next, err := r.cc.WatchKey(ctx, r.keys.Leader(), idx, time.Until(deadline))
		if ctx.Err() != nil {
			return "", time.Since(start), ctx.Err()
		}
		if err != nil {
			idx = 0
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		idx = next
		if ks.Session != "" && ks.Session != former {
			return decodeLeader(ks).Node, time.Since(start), nil
		}
	}
	return "", time.Since(start), fmt.Errorf("failover to %s did not complete within %v; see understudy cluster history", target, timeout)
}

// widenGap makes the gap say what the target may lack that the cluster
// acknowledged, beyond the former active's last published position:
//
//   - a former active that still holds the lock (it does not answer, or
//     does not serve) may have taken writes after the position it last
//     published, which only it knows: the gap is unknown, and only force
//     goes ahead;
//   - another standby that received more than the target has writes the
//     target lacks (and the former active acknowledged them, in
//     synchronous mode certainly): the known position is the highest any
//     answering standby has;
//   - in synchronous mode a member of the synchronous set that does not
//     answer may hold commits acknowledged after the last publication:
//     unknown, unless the target is that member.
func (r *Runner) widenGap(ctx context.Context, plan *nodeapi.FailoverPlan, ks consul.KeyState, l cluster.Leader, members []cluster.Member) {
	if ks.Session != "" {
		plan.Gap.LastKnown = 0
		plan.FormerActiveState += "; it may have taken writes after the position it last published, so the gap is unknown"
		return
	}
	answered := map[string]bool{}
	for _, m := range members {
		if m.Name == plan.Target || m.Name == l.Node || m.Address == "" {
			continue
		}
		st, err := r.askPeer(ctx, m)
		if err != nil {
			continue
		}
		answered[m.Name] = true
		if p := st.Postgres.Position(); plan.Gap.LastKnown != 0 && p > plan.Gap.LastKnown {
			plan.Gap.LastKnown = p
		}
	}
	if !r.cfg.Postgres.Synchronous {
		return
	}
	var sync cluster.SyncState
	if _, found, err := r.cc.GetJSON(ctx, r.keys.Sync(), &sync); err != nil || !found {
		plan.Gap.LastKnown = 0
		return
	}
	if sync.Leader != l.Node || slices.Contains(sync.Standbys, plan.Target) {
		return
	}
	for _, s := range sync.Standbys {
		if !answered[s] {
			plan.Gap.LastKnown = 0
			return
		}
	}
}
