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
	// servers are the Consul node names of the Raft configuration.
	servers []string
	// gossip are the gossip pool's members, by Consul node name.
	gossip map[string]consul.GossipMember
	// members are the member records, by member name.
	members map[string]cluster.Member
}

// observe makes one round's observations, each read and probe under the
// round's timeout, the probes in parallel.
func (r *Runner) observe(ctx context.Context, now time.Time) Observation {
	var (
		wg      sync.WaitGroup
		gossip  []consul.GossipMember
		gErr    error
		servers []string
		sErr    error
		raft    consul.RaftState
		rErr    error
		members map[string]cluster.Member
		mErr    error
	)
	read := func(f func(ctx context.Context)) {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			f(rctx)
		})
	}
	read(func(ctx context.Context) { gossip, gErr = r.cc.GossipMembers(ctx) })
	read(func(ctx context.Context) { servers, sErr = r.cc.RaftServersStale(ctx) })
	read(func(ctx context.Context) { raft, rErr = r.cc.LocalRaft(ctx) })
	read(func(ctx context.Context) { members, mErr = r.readMembers(ctx) })
	wg.Wait()
	r.remember(gossip, gErr, servers, sErr, members, mErr)
	o := Observation{At: now, Raft: cluster.RaftState{LastContactMS: -1}}
	if rErr == nil {
		o.Raft = cluster.RaftState{State: raft.State, LastContactMS: raft.LastContact.Milliseconds()}
		if raft.LastContact < 0 {
			o.Raft.LastContactMS = -1
		}
	}
	o.Nodes = r.nodes()
	for i := range o.Nodes {
		n := &o.Nodes[i]
		g, addr, apiURL := r.whereIs(n.Name)
		n.Gossip = g
		if n.Server && addr != "" {
			read(func(ctx context.Context) { n.Probe, n.RTT = probe(ctx, addr) })
		}
		if !n.Self && apiURL != "" {
			read(func(ctx context.Context) { n.API = r.api.Alive(ctx, apiURL, r.timeout) == nil })
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
func (r *Runner) remember(gossip []consul.GossipMember, gErr error, servers []string, sErr error, members map[string]cluster.Member, mErr error) {
	if gErr == nil {
		r.known.gossip = map[string]consul.GossipMember{}
		for _, g := range gossip {
			r.known.gossip[g.Name] = g
		}
	} else if r.consulUp {
		r.log.Warn("cannot list consul's gossip members; probing the servers known before", "err", gErr)
	}
	if sErr == nil && len(servers) > 0 {
		r.known.servers = servers
	}
	if mErr == nil {
		r.known.members = members
	}
	r.consulUp = gErr == nil
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
	consulName := name
	if m, ok := r.known.members[name]; ok {
		apiURL = m.APIURL
		if m.ConsulNode != "" {
			consulName = m.ConsulNode
		}
	}
	if g, ok := r.known.gossip[consulName]; ok {
		gossip = g.Status
		if g.Server && g.Addr != "" && g.RPCPort > 0 {
			rpc = net.JoinHostPort(g.Addr, strconv.Itoa(g.RPCPort))
		}
	}
	return gossip, rpc, apiURL
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
