package devcluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/understudy-ha/understudy/internal/netns"
	"github.com/understudy-ha/understudy/internal/services"
)

// The faults an operator can make in a dev cluster to watch understudy
// handle them: partitions between nodes in network namespaces, and frozen
// processes (SIGSTOP), as a hung process or a paused VM looks to the rest.

// needNet is what partitions answer on a cluster without namespaces.
func (s *State) needNet() error {
	if s.Net == nil {
		return fmt.Errorf("the dev cluster in %s runs on loopback, where nodes cannot be cut off from each other; "+
			"start it in network namespaces (`understudy dev up --netns on`, as root with iproute2 and nftables)", s.Dir)
	}
	return nil
}

func (s *State) host(name string) (netns.Host, error) {
	if err := s.needNet(); err != nil {
		return netns.Host{}, err
	}
	return s.Net.Host(name)
}

// Partition cuts the named nodes off from the others, both ways (one-way:
// they receive nothing from the others, who still receive what they send).
// The machine keeps its access to every node: HAProxy, psql and the CLI
// work as before.
func Partition(s *State, names []string, oneWay bool) error {
	if len(names) == 0 {
		return errors.New("name the nodes to cut off, e.g. `understudy dev partition n1`")
	}
	var side []netns.Host
	for _, name := range names {
		h, err := s.host(name)
		if err != nil {
			return err
		}
		side = append(side, h)
	}
	var rest []netns.Host
	for _, h := range s.Net.Hosts {
		if !slices.ContainsFunc(side, func(x netns.Host) bool { return x.Name == h.Name }) {
			rest = append(rest, h)
		}
	}
	if len(rest) == 0 {
		return errors.New("that is every node: name the side to cut off from the others")
	}
	if oneWay {
		return s.Net.OneWay(side, rest)
	}
	return s.Net.Partition(side, rest)
}

// Heal removes every partition of the dev cluster.
func Heal(s *State) error {
	if err := s.needNet(); err != nil {
		return err
	}
	return s.Net.Heal()
}

// Partitions says, per node, which nodes it cannot hear now; nil on
// loopback.
func Partitions(s *State) (map[string][]string, error) {
	if s.Net == nil {
		return nil, nil
	}
	return s.Net.Cut()
}

// Freezable are the groups of a node's processes Freeze stops.
var Freezable = []string{"consul", "daemons", "postgres", "node"}

// Freeze SIGSTOPs a group of node name's processes: its Consul agent, its
// daemons (check-runner, handler-runner and consul-watcher), its PostgreSQL (the postmaster
// and every process it started), or the whole node (those, Syncthing and
// the fencing watchdog: a paused machine). It returns the PIDs it stopped.
func Freeze(s *State, name, what string) ([]int, error) {
	n, err := s.node(name)
	if err != nil {
		return nil, err
	}
	var pids []int
	switch what {
	case "consul":
		pids = []int{n.PIDs.Consul}
	case "daemons":
		pids = []int{n.PIDs.CheckRunner, n.PIDs.HandlerRunner, n.PIDs.ConsulWatcher}
	case "postgres":
		pids = services.WithChildren(n.PIDs.Postgres)
	case "node":
		pids = nodePIDs(n)
	default:
		return nil, fmt.Errorf("--what %q: write one of %s", what, strings.Join(Freezable, ", "))
	}
	pids = slices.DeleteFunc(pids, func(pid int) bool { return pid == 0 })
	if len(pids) == 0 {
		return nil, fmt.Errorf("no %s process of %s runs", what, name)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("SIGSTOP %d: %w", pid, err)
		}
	}
	return pids, nil
}

// Thaw SIGCONTs every process of node name, whichever were frozen.
func Thaw(s *State, name string) ([]int, error) {
	n, err := s.node(name)
	if err != nil {
		return nil, err
	}
	pids := slices.DeleteFunc(nodePIDs(n), func(pid int) bool { return pid == 0 })
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	return pids, nil
}

func (s *State) node(name string) (Node, error) {
	s.refresh()
	var names []string
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, nil
		}
		names = append(names, n.Name)
	}
	return Node{}, fmt.Errorf("no node %q in the dev cluster (nodes: %s)", name, strings.Join(names, ", "))
}

// nodePIDs is every process of a node.
func nodePIDs(n Node) []int {
	p := n.PIDs
	return append([]int{p.Consul, p.CheckRunner, p.HandlerRunner, p.ConsulWatcher, p.Syncthing, p.Watchdog}, services.WithChildren(p.Postgres)...)
}
