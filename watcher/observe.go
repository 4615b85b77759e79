package watcher

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
)

// known is what the watcher remembers between rounds, so that a round in
// which the local Consul does not answer (its server cut off, or down)
// still probes the servers and APIs it knew of.
type known struct {
	// servers are the Consul node names of the Raft configuration (in
	// active-minority, while recovered, those the side was cut from);
	// config is the local Raft configuration as this round read it, nil
	// when the read failed.
	servers []string
	config  []consul.RaftServer
	// gossip are the gossip pool's members, by Consul node name.
	gossip map[string]consul.GossipMember
	// members are the member records, by member name.
	members map[string]cluster.Member
}

// reads are one round's reads of the local Consul.
type reads struct {
	gossip  []consul.GossipMember
	gErr    error
	config  []consul.RaftServer
	sErr    error
	raft    consul.RaftState
	rErr    error
	members map[string]cluster.Member
	mErr    error
}

// observe makes one round's observations, each read and probe under the
// round's timeout, all at once: the probes go where the servers and APIs
// were as last read, so that a local Consul that hangs (its server cut
// off) does not add its timeout to the probes' and the round stays within
// one timeout, under the interval.
func (r *Runner) observe(ctx context.Context, now time.Time) Observation {
	var wg sync.WaitGroup
	run := func(f func(ctx context.Context)) {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			f(rctx)
		})
	}
	var rd reads
	readAll := func() {
		run(func(ctx context.Context) { rd.gossip, rd.gErr = r.cc.GossipMembers(ctx) })
		run(func(ctx context.Context) { rd.config, rd.sErr = r.cc.RaftConfigStale(ctx) })
		run(func(ctx context.Context) { rd.raft, rd.rErr = r.cc.LocalRaft(ctx) })
		run(func(ctx context.Context) { rd.members, rd.mErr = r.readMembers(ctx) })
	}
	if len(r.known.gossip) == 0 {
		// Nothing known yet: learn where the servers are first.
		readAll()
		wg.Wait()
		r.remember(rd)
		rd = reads{}
	}
	targets := r.nodes()
	for i := range targets {
		n := &targets[i]
		_, addr, apiURL := r.whereIs(n.Name)
		// Every node with a Consul server is probed, in the Raft
		// configuration or not: the majority's Consul removes a server
		// cut off for long (autopilot's dead server cleanup), and the
		// view must still say that node is unreachable.
		if addr != "" {
			run(func(ctx context.Context) { n.Probe, n.RTT = probe(ctx, addr) })
		}
		if !n.Self && apiURL != "" {
			run(func(ctx context.Context) { n.API = r.api.Alive(ctx, apiURL, r.timeout) == nil })
		}
	}
	readAll()
	wg.Wait()
	r.remember(rd)

	o := Observation{At: now, Raft: cluster.RaftState{LastContactMS: -1}}
	if rd.rErr == nil {
		o.Raft.State, o.Raft.Voters = rd.raft.State, voters(r.known.config)
		if rd.raft.LastContact >= 0 {
			o.Raft.LastContactMS = rd.raft.LastContact.Milliseconds()
		}
	}
	probed := map[string]NodeObs{}
	for _, n := range targets {
		probed[n.Name] = n
	}
	// The nodes as this round read them. A server first seen now (a node
	// that joined, or came back into the Raft configuration) is probed
	// now: unprobed, it would count as missed for a round.
	o.Nodes = r.nodes()
	for i := range o.Nodes {
		n := &o.Nodes[i]
		p := probed[n.Name]
		n.Probe, n.RTT, n.API = p.Probe, p.RTT, p.API
		g, addr, _ := r.whereIs(n.Name)
		n.Gossip = g
		if p.Probe == ProbeNone && addr != "" {
			run(func(ctx context.Context) { n.Probe, n.RTT = probe(ctx, addr) })
		}
	}
	wg.Wait()
	sortNodes(o.Nodes)
	return o
}

// readMembers reads the member records, from the local server's state.
func (r *Runner) readMembers(ctx context.Context) (map[string]cluster.Member, error) {
	out := map[string]cluster.Member{}
	err := r.cc.ListJSONStale(ctx, r.keys.Members(), func(_ string, raw []byte) error {
		var m cluster.Member
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		out[m.Name] = m
		return nil
	})
	return out, err
}

// remember keeps what this round read; what it could not read is kept
// from the rounds before.
func (r *Runner) remember(rd reads) {
	if rd.gErr == nil {
		// Merged, not replaced: a node pruned from the gossip pool keeps
		// the address it had, so that it is still probed while it has a
		// member record.
		seen := map[string]bool{}
		for _, g := range rd.gossip {
			r.known.gossip[g.Name], seen[g.Name] = g, true
		}
		for name, g := range r.known.gossip {
			if !seen[name] {
				g.Status = ""
				r.known.gossip[name] = g
			}
		}
	} else if r.consulUp {
		r.log.Warn("cannot list consul's gossip members; probing the servers known before", "err", rd.gErr)
	}
	// The configuration is this round's or none: a read that failed while
	// the agent restarts must not pass for the one before the restart
	// (wholeAgain, the recovery); the servers to observe are kept.
	r.known.config = nil
	if rd.sErr == nil {
		r.known.config = rd.config
	}
	if len(r.known.config) > 0 {
		r.known.servers = nil
		for _, s := range r.known.config {
			r.known.servers = append(r.known.servers, s.Node)
		}
	}
	if r.min != nil && r.min.state != nil {
		// Recovered in the minority: the local Raft configuration is the
		// side's; the partition lasts until the servers it was cut from
		// are reached again.
		r.known.servers = r.min.state.Servers
	}
	if rd.mErr == nil {
		r.known.members = rd.members
	}
	r.consulUp = rd.gErr == nil
	if len(r.known.servers) == 0 {
		// No Raft configuration read yet: the gossip pool's servers.
		for _, g := range r.known.gossip {
			if g.Server && g.Status != "left" {
				r.known.servers = append(r.known.servers, g.Name)
			}
		}
	}
}

// nodes are the nodes to observe: every member record and every Raft
// server, by member name (a server's Consul node name is mapped to the
// member whose record names it).
func (r *Runner) nodes() []NodeObs {
	all := map[string]*NodeObs{}
	add := func(name string) *NodeObs {
		if all[name] == nil {
			all[name] = &NodeObs{Name: name, Self: name == r.cfg.Node.Name}
		}
		return all[name]
	}
	add(r.cfg.Node.Name)
	byConsul := map[string]string{}
	for _, m := range r.known.members {
		add(m.Name)
		if m.ConsulNode != "" {
			byConsul[m.ConsulNode] = m.Name
		}
	}
	for _, s := range r.known.servers {
		add(cmp.Or(byConsul[s], s)).Server = true
	}
	out := make([]NodeObs, 0, len(all))
	for _, n := range all {
		out = append(out, *n)
	}
	return out
}

// whereIs is a node's gossip status, its server's RPC address and its
// API's URL, as far as known.
func (r *Runner) whereIs(name string) (gossip, rpc, apiURL string) {
	apiURL = r.known.members[name].APIURL
	if g, ok := r.gossipMember(name); ok {
		gossip = g.Status
		if g.Server && g.Addr != "" && g.RPCPort > 0 {
			rpc = net.JoinHostPort(g.Addr, strconv.Itoa(g.RPCPort))
		}
	}
	return gossip, rpc, apiURL
}

// gossipMember is a node's member of the gossip pool as last read, found
// by its Consul node name (its member record's, else its own name).
func (r *Runner) gossipMember(name string) (consul.GossipMember, bool) {
	consulName := name
	if m, ok := r.known.members[name]; ok && m.ConsulNode != "" {
		consulName = m.ConsulNode
	}
	g, ok := r.known.gossip[consulName]
	return g, ok
}

// serfAddr is the gossip (serf LAN) address of a node's Consul, "" when not
// known.
func (r *Runner) serfAddr(name string) string {
	if g, ok := r.gossipMember(name); ok && g.Addr != "" && g.Port > 0 {
		return net.JoinHostPort(g.Addr, strconv.Itoa(g.Port))
	}
	return ""
}

// probe opens a TCP connection to a server's RPC port and closes it at
// once: Consul reads the first byte to choose the protocol and takes the
// end of the stream quietly.
func probe(ctx context.Context, addr string) (Probe, time.Duration) {
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	rtt := time.Since(start)
	if err == nil {
		_ = c.Close()
		return ProbeOK, rtt
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ProbeRefused, rtt
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ProbeTimeout, rtt
	}
	return ProbeError, rtt
}

// voters counts the voters of a Raft configuration.
func voters(config []consul.RaftServer) int {
	n := 0
	for _, s := range config {
		if s.Voter {
			n++
		}
	}
	return n
}
