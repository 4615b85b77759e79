package devcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/understudy-ha/understudy/lifecycle"
)

// running says whether any process of the cluster is alive.
func (s *State) running() bool {
	if s.HAProxy.PID != 0 {
		return true
	}
	for _, n := range s.Nodes {
		p := n.PIDs
		if p.Consul != 0 || p.Postgres != 0 || p.CheckRunner != 0 || p.HandlerRunner != 0 || p.ConsulWatcher != 0 || p.Syncthing != 0 {
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
		stop(n.PIDs.ConsulWatcher, syscall.SIGTERM, 10*time.Second)
		stop(n.PIDs.Syncthing, syscall.SIGTERM, 10*time.Second)
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
	if s.Net != nil {
		if err := s.Net.Remove(); err != nil {
			return fmt.Errorf("remove the nodes' network namespaces: %w", err)
		}
	}
	if keep {
		return s.save()
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", s.Dir, err)
	}
	return nil
}

// StartNode starts node i's processes again after a kill (cluster start's
// and join's own StartProcesses): it rejoins as a standby of the active.
func StartNode(ctx context.Context, s *State, i int, o Options) error {
	if err := o.Defaults(); err != nil {
		return err
	}
	cfg, lo, err := nodeOptions(s.Nodes[i], o)
	if err != nil {
		return err
	}
	defer lo.Services.Close()
	if err := lifecycle.StartProcesses(ctx, cfg, lo); err != nil {
		return err
	}
	s.refresh()
	return s.save()
}
