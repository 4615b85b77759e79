package watcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/consulrecovery"
	"github.com/understudy-ha/understudy/internal/jsonfile"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// Agent is the node's Consul agent as partition_mode "active-minority"
// changes it: stopped, its data directory changed, started again
// (lifecycle.ConsulAgent).
type Agent interface {
	DataDir() string
	Restart(ctx context.Context, change func(dataDir string) error) error
	JoinOnly(join []string) error
}

// leaderStale is how long a server may not have heard from its Raft leader
// and still count as having one: a node whose agent has none (a server the
// cut left out of every quorum, such as one that had not become a voter
// yet) is no side of a heal; it joins the side that stays.
const leaderStale = 5 * time.Second

// retryEvery spaces the attempts of a recovery or reset that failed: each
// restarts the Consul agent.
const retryEvery = 15 * time.Second

// RecoverAfter is how long a node must have been cut from the majority
// before its side recovers a Consul quorum of its own, minority_timeout
// or more. The other side's Raft leader keeps trying to replicate to the
// cut-off server after autopilot removed it from its configuration (a
// replication that is dialing when it is told to stop finishes its dial
// and one more: Consul's Raft transport times out after 10 s), and an
// AppendEntries that reaches the recovered server once the network heals
// is taken (a leader of a higher term) before the heal is decided:
// measured, a heal 12 s after the removal had the recovered server follow
// the other side's leader. Serf calls the server failed within about 3 s
// (the gossip timing), autopilot removes it within about 5 s more, and
// two dials of 10 s follow: 35 s leaves none in flight.
const RecoverAfter = 35 * time.Second

// minority is the consul-watcher's part of partition_mode
// "active-minority" (DESIGN.md, Partitions). In the minority, once the
// node has been cut from a majority for RecoverAfter and its Consul has no
// leader, it recovers a quorum of the servers it still reaches
// (Consul's outage recovery: peers.json) under a gossip key of the side's
// own, so that the handler-runners of the side elect an active among them.
// When nodes of two Consul clusters meet again, one node (the first by
// name among those that answer) decides which side stays: the one whose
// database was written last (cluster.ChooseSurvivor). The nodes of the
// other sides reset their agents to join it; their handler-runners then
// lose their sessions, fence, and follow its active, rewinding PostgreSQL
// with the diverged writes kept aside.
type minority struct {
	agent Agent
	// state is the side this node runs on while recovered (kept in
	// cluster.MinorityFile), nil otherwise.
	state *cluster.Minority
	// heal is the decision of the meeting in progress, made or followed.
	heal *cluster.Heal
	// keys is the agent's gossip keyring as last read, id its cluster ID.
	keys []string
	id   string
	// apart are the peers whose agents are in another Consul cluster:
	// not to be joined through (rejoin) before the heal is decided.
	apart map[string]bool
	// tried is when a recovery or a reset was last tried.
	tried time.Time
}

func newMinority(dataDir string, agent Agent) (*minority, error) {
	m := &minority{agent: agent}
	var st cluster.Minority
	found, err := jsonfile.Read(cluster.MinorityFile(dataDir), &st)
	if err != nil {
		return nil, err
	}
	if found {
		m.state = &st
	}
	return m, nil
}

// minorityRound is the active-minority part of a round: it reads the
// agent's keyring, looks for nodes in another Consul cluster, and
// recovers a quorum, decides a heal or resets the agent, filling v's
// Cluster, Minority and Heal.
func (r *Runner) minorityRound(ctx context.Context, o Observation, v *cluster.Partition) {
	m := r.min
	r.readKeyring()
	v.Cluster = m.id
	if m.state != nil && r.wholeAgain() {
		r.log.Info("the side recovered in the minority is whole again: every server of the cluster is in its raft configuration", "cluster", m.id)
		r.setMinority(nil)
	}
	views := r.peerViews(ctx, o)
	m.apart = map[string]bool{}
	for name, pv := range views {
		if pv.Cluster != "" && m.id != "" && pv.Cluster != m.id {
			m.apart[name] = true
		}
	}
	if len(m.apart) == 0 {
		m.heal = nil
		cut := r.model.CutSince()
		if v.State == cluster.PartitionMinority && m.state == nil && !cut.IsZero() && o.At.Sub(cut) >= max(RecoverAfter, r.cfg.Cluster.MinorityTimeout) &&
			o.At.Sub(m.tried) >= retryEvery && !v.Raft.HasLeader(leaderStale) {
			m.tried = o.At
			if err := r.recoverQuorum(ctx, o, v); err != nil {
				r.log.Error("cannot recover a consul quorum in the minority (partition_mode active-minority); this side takes no writes until the partition heals", "err", err)
			}
		}
	} else {
		r.decideHeal(ctx, o, v, views)
		stray := !v.Raft.HasLeader(leaderStale)
		if m.heal != nil && m.heal.Winner != m.id && (m.heal.Loses(m.id) || stray) && o.At.Sub(m.tried) >= retryEvery {
			m.tried = o.At
			if err := r.resetToJoin(ctx, *m.heal); err != nil {
				r.log.Error("cannot reset the consul agent to join the side that stays; retrying", "winner", m.heal.Winner, "err", err)
			}
		}
	}
	v.Cluster, v.Minority, v.Heal = m.id, m.state, m.heal
}

// readKeyring reads the agent's gossip keyring and keeps it for the
// handler-runner to give to a node that joins this cluster.
func (r *Runner) readKeyring() {
	m := r.min
	keys, err := consulrecovery.Keyring(m.agent.DataDir())
	if err != nil || len(keys) == 0 {
		r.warnOnce("keyring", "cannot read the consul agent's gossip keyring: active-minority needs gossip encryption, which cluster start and join set up", "err", err)
		return
	}
	id := cluster.ConsulClusterID(keys)
	if id == m.id {
		return // kept already: m.id is set once the file is written
	}
	if err := jsonfile.WriteMode(cluster.ConsulKeyringFile(r.cfg.Node.DataDir), nodeapi.ConsulKeyring{Cluster: id, Keys: keys}, 0o600); err != nil {
		r.log.Error("cannot keep the consul keyring for the other nodes", "err", err)
		return
	}
	m.keys, m.id = keys, id
}

// wholeAgain says whether every server the recovered side was cut from is
// in the local Raft configuration again (as this round read it): the other
// sides reset and joined.
func (r *Runner) wholeAgain() bool {
	for _, s := range r.min.state.Servers {
		if !slices.ContainsFunc(r.known.config, func(c consul.RaftServer) bool { return c.Node == s }) {
			return false
		}
	}
	return true
}

// peerViews asks every peer whose API answered this round for its view.
func (r *Runner) peerViews(ctx context.Context, o Observation) map[string]cluster.Partition {
	var mu sync.Mutex
	out := map[string]cluster.Partition{}
	var wg sync.WaitGroup
	for _, n := range o.Nodes {
		url := r.known.members[n.Name].APIURL
		if n.Self || !n.API || url == "" {
			continue
		}
		wg.Go(func() {
			p, err := r.api.Partition(ctx, url, r.timeout)
			if err != nil || p.Stale {
				return
			}
			mu.Lock()
			out[n.Name] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// consulName is a member's node name in Consul.
func (r *Runner) consulName(member string) string {
	return cmp.Or(r.known.members[member].ConsulNode, member)
}

// recoverQuorum gives the servers this node reaches a Raft configuration of
// their own under the side's gossip key and restarts the agent.
func (r *Runner) recoverQuorum(ctx context.Context, o Observation, v *cluster.Partition) error {
	m := r.min
	if len(m.keys) == 0 {
		return errors.New("no gossip keyring: the recovered side could not be kept apart from the other")
	}
	raft := r.known.config // this round's read
	side, _ := v.Sides()
	reached := map[string]bool{}
	for _, name := range side {
		reached[r.consulName(name)] = true
	}
	reached[r.consulName(r.cfg.Node.Name)] = true
	var servers []consulrecovery.Server
	var ids, all []string
	for _, s := range raft {
		all = append(all, s.Node)
		if reached[s.Node] {
			servers = append(servers, consulrecovery.Server{ID: s.ID, Address: s.Address})
			ids = append(ids, s.ID)
		}
	}
	if !slices.ContainsFunc(raft, func(s consul.RaftServer) bool { return s.Node == r.consulName(r.cfg.Node.Name) }) {
		return fmt.Errorf("this node's consul server %s is not in the raft configuration %v", r.consulName(r.cfg.Node.Name), all)
	}
	key := cluster.MinorityKey(m.keys[0], ids)
	r.log.Warn("partition: recovering a consul quorum of this side's servers (partition_mode active-minority): this side elects an active and takes writes, which may be thrown away when the partition heals",
		"side", side, "servers", len(servers), "of", len(raft))
	start := time.Now()
	err := m.agent.Restart(ctx, func(dir string) error {
		return errors.Join(consulrecovery.Recover(dir, servers), consulrecovery.Rekey(dir, []string{key}))
	})
	if err != nil {
		return err
	}
	st := &cluster.Minority{At: o.At.UTC(), Side: side, Servers: all, Cluster: cluster.ConsulClusterID([]string{key})}
	r.setMinority(st)
	r.readKeyring()
	r.log.Warn("partition: this side runs on a consul quorum of its own", "side", side, "cluster", st.Cluster, "took", time.Since(start).Round(time.Millisecond))
	r.queue(r.minorityEvent(cluster.PartitionMinority, "recovered",
		fmt.Sprintf("partition: %s recovered a consul quorum of its own with %s (partition_mode active-minority); it elects an active on its side, whose writes may be thrown away when the partition heals",
			r.cfg.Node.Name, strings.Join(side, ", ")),
		map[string]string{"this_side": strings.Join(side, ","), "servers": strings.Join(all, ","), "cluster": st.Cluster}))
	return nil
}

// setMinority keeps st (nil: none) in memory and in the node's file.
func (r *Runner) setMinority(st *cluster.Minority) {
	r.min.state = st
	path := cluster.MinorityFile(r.cfg.Node.DataDir)
	var err error
	if st == nil {
		if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		err = jsonfile.Write(path, st)
	}
	if err != nil {
		r.log.Error("cannot keep the minority side's state", "err", err)
	}
}

// decideHeal makes the heal's decision when this node is the first by name
// among those that answered, and otherwise takes the decider's.
func (r *Runner) decideHeal(ctx context.Context, o Observation, v *cluster.Partition, views map[string]cluster.Partition) {
	m := r.min
	names := []string{r.cfg.Node.Name}
	for name := range views {
		names = append(names, name)
	}
	slices.Sort(names)
	if decider := names[0]; decider != r.cfg.Node.Name {
		m.heal = views[decider].Heal
		return
	}
	// The sides are the Consul clusters with a leader; a node whose agent
	// has none joins the side that stays.
	ids := map[string][]string{}
	if v.Raft.HasLeader(leaderStale) {
		ids[m.id] = []string{r.cfg.Node.Name}
	}
	for name, pv := range views {
		if pv.Cluster != "" && pv.Raft.HasLeader(leaderStale) {
			ids[pv.Cluster] = append(ids[pv.Cluster], name)
		}
	}
	if len(ids) == 0 {
		r.warnOnce("heal-sides", "nodes of another consul cluster answer, but no consul cluster has a leader; not deciding until one does")
		m.heal = nil
		return
	}
	if m.heal != nil && len(m.heal.Sides) == len(ids) && !slices.ContainsFunc(m.heal.Sides, func(s cluster.HealSide) bool { return ids[s.Cluster] == nil }) {
		return // decided already for these sides
	}
	sides, err := r.sides(ctx, ids)
	if err != nil {
		r.warnOnce("heal-status", "nodes of two consul clusters meet again; not deciding which stays until every one of them answers", "err", err)
		return
	}
	i, why := cluster.ChooseSurvivor(sides)
	m.heal = &cluster.Heal{At: o.At.UTC(), Decider: r.cfg.Node.Name, Winner: sides[i].Cluster, Sides: sides, Reason: why}
	r.log.Warn("partition healed with two sides that took writes (active-minority): the side written last stays, the others reset their consul agents and follow its active",
		"winner", sides[i].Cluster, "winner_nodes", sides[i].Nodes, "why", why)
	r.queue(r.minorityEvent(cluster.PartitionMajority, "heal", "heal decided: "+why,
		map[string]string{"winner": sides[i].Cluster, "winner_nodes": strings.Join(sides[i].Nodes, ","), "winner_active": sides[i].Active}))
}

// sides asks every node of ids (cluster ID to its nodes) for its status and
// makes each Consul cluster's side of them.
func (r *Runner) sides(ctx context.Context, ids map[string][]string) ([]cluster.HealSide, error) {
	var sides []cluster.HealSide
	for id, nodes := range ids {
		slices.Sort(nodes)
		s := cluster.HealSide{Cluster: id, Nodes: nodes}
		for _, name := range nodes {
			url := r.known.members[name].APIURL
			if name == r.cfg.Node.Name {
				url = r.cfg.APIURL()
			}
			st, err := r.api.NodeStatus(ctx, url, r.timeout)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if st.Role == nodeapi.RoleActive && st.Serving {
				s.Active = name
			}
			if pos := st.Postgres.Position(); pos > s.LSN {
				s.LSN, s.Timeline = pos, st.Postgres.Timeline
			}
			if st.Postgres.LastCommit.After(s.LastCommit) {
				s.LastCommit = st.Postgres.LastCommit
			}
		}
		sides = append(sides, s)
	}
	slices.SortFunc(sides, func(a, b cluster.HealSide) int { return strings.Compare(a.Cluster, b.Cluster) })
	return sides, nil
}

// resetToJoin resets the agent so that it joins the winner's Consul
// cluster with the winner's gossip keyring.
func (r *Runner) resetToJoin(ctx context.Context, h cluster.Heal) error {
	w, _ := h.Side(h.Winner)
	var keys []string
	var join []string
	for _, name := range w.Nodes {
		if addr := r.serfAddr(name); addr != "" {
			join = append(join, addr)
		}
		if keys != nil {
			continue
		}
		k, err := r.api.ConsulKeyring(ctx, r.known.members[name].APIURL, r.timeout)
		if err == nil && k.Cluster == h.Winner && len(k.Keys) > 0 {
			keys = k.Keys
		}
	}
	if keys == nil {
		return fmt.Errorf("no node of the side that stays (%s) gave its consul keyring", strings.Join(w.Nodes, ", "))
	}
	if len(join) == 0 {
		return fmt.Errorf("no gossip address known of the side that stays (%s)", strings.Join(w.Nodes, ", "))
	}
	was := r.min.state
	r.log.Warn("heal: resetting this node's consul agent to join the side that stays; the handler-runner then follows its active, keeping this side's diverged writes aside",
		"winner", h.Winner, "winner_nodes", w.Nodes, "join", join)
	err := r.min.agent.Restart(ctx, func(dir string) error {
		return errors.Join(r.min.agent.JoinOnly(join), consulrecovery.Reset(dir, keys))
	})
	if err != nil {
		return err
	}
	r.setMinority(nil)
	r.readKeyring()
	details := map[string]string{"winner": h.Winner, "winner_nodes": strings.Join(w.Nodes, ","), "winner_active": w.Active}
	if was != nil {
		details["recovered_at"] = was.At.Format(time.RFC3339Nano)
		details["this_side"] = strings.Join(was.Side, ",")
	}
	r.queue(r.minorityEvent(cluster.PartitionMajority, "reset",
		fmt.Sprintf("heal: %s reset its consul agent to join the side of %s, which stays (%s); its postgres follows %s, this side's writes since the partition kept aside (see the diverged event)",
			r.cfg.Node.Name, strings.Join(w.Nodes, ", "), h.Reason, cmp.Or(w.Active, "that side's active")),
		details))
	return nil
}

// minorityEvent is a partition event of active-minority's: from the
// minority to state to, with the details' state and the mode.
func (r *Runner) minorityEvent(to, state, reason string, details map[string]string) cluster.Event {
	details["state"], details["mode"] = state, r.cfg.Cluster.PartitionMode
	return cluster.Event{Time: time.Now().UTC(), Node: r.cfg.Node.Name, Kind: cluster.EventPartition,
		From: cluster.PartitionMinority, To: to, Reason: reason, Details: details}
}
