package devcluster

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// running says whether any process of the cluster is alive.
func (s *State) running() bool {
	if s.HAProxy.PID != 0 {
		return true
	}
	for _, n := range s.Nodes {
		p := n.PIDs
		if p.Consul != 0 || p.Postgres != 0 || p.CheckRunner != 0 || p.HandlerRunner != 0 {
			return true
		}
	}
	return false
}

// Down stops every process of the cluster by PID, the handler-runners first
// (they would restart PostgreSQL), and removes the directory unless keep.
func Down(s *State, keep bool) error {
	s.refresh()
	for _, n := range s.Nodes {
		stop(n.PIDs.HandlerRunner, syscall.SIGTERM, 30*time.Second)
	}
	for _, n := range s.Nodes {
		stop(n.PIDs.CheckRunner, syscall.SIGTERM, 10*time.Second)
	}
	s.refresh()
	for _, n := range s.Nodes {
		// SIGINT is PostgreSQL's fast shutdown.
		stop(n.PIDs.Postgres, syscall.SIGINT, 30*time.Second)
	}
	for _, n := range s.Nodes {
		stop(n.PIDs.Consul, syscall.SIGTERM, 10*time.Second)
	}
	stop(s.HAProxy.PID, syscall.SIGTERM, 5*time.Second)
	s.refresh()
	if s.running() {
		return errors.New("some processes of the dev cluster did not stop; see `understudy dev status`")
	}
	if keep {
		return s.save()
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", s.Dir, err)
	}
	return nil
}

// StartNode starts node i's Consul server and daemons again, after a kill:
// it rejoins the cluster as a standby of the active node.
func StartNode(s *State, i int, o Options) error {
	if err := o.Defaults(); err != nil {
		return err
	}
	s.refresh()
	n := s.Nodes[i]
	if n.PIDs.Consul == 0 {
		if err := startConsul(s, i, o.Consul); err != nil {
			return err
		}
	}
	if n.PIDs.CheckRunner != 0 || n.PIDs.HandlerRunner != 0 {
		return fmt.Errorf("%s still runs its daemons (pids %d, %d)", n.Name, n.PIDs.CheckRunner, n.PIDs.HandlerRunner)
	}
	if err := startDaemons(s, i, o.Understudy); err != nil {
		return err
	}
	return s.save()
}
