package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/services"
)

// The node's processes, as services of internal/services: programs it
// supervises, each restarted when it exits while the supervising process
// lives. The command that starts them (cluster start, dev up) leaves them
// running when it exits (services.Manager.Close); on a systemd host the
// units in packaging/systemd are the way to keep them supervised across
// reboots (left for the packaging work).
func consulService(l layout, o Options) config.Service {
	return config.Service{Name: ConsulProcess, Command: []string{o.Consul, "agent", "-config-dir=" + l.consulConfig()}}
}

func daemonServices(cfg *config.Config, o Options) []config.Service {
	return []config.Service{
		{Name: CheckRunnerProcess, Command: []string{o.Understudy, "check-runner", "--config", cfg.Path}},
		{Name: HandlerRunnerProcess, Command: []string{o.Understudy, "handler-runner", "--config", cfg.Path}},
	}
}

// undo collects what a step did so that a failure takes the node back to
// where it was, last step first.
type undo struct {
	log   io.Writer
	steps []undoStep
}

type undoStep struct {
	what string
	do   func() error
}

func (u *undo) add(what string, do func() error) { u.steps = append(u.steps, undoStep{what, do}) }

func (u *undo) startService(ctx context.Context, m *services.Manager, svc config.Service) error {
	if err := m.Start(ctx, svc); err != nil {
		return fmt.Errorf("start %s: %w", svc.Name, err)
	}
	u.add("stop "+svc.Name, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return m.Stop(sctx, svc)
	})
	return nil
}

func (u *undo) run() {
	for i := len(u.steps) - 1; i >= 0; i-- {
		s := u.steps[i]
		if err := s.do(); err != nil {
			fmt.Fprintf(u.log, "undo: %s: %v\n", s.what, err)
		}
	}
}

// FindConsul is the Consul agent to run beside the understudy binary at
// understudy: bin/consul next to it (what `make deps` builds, the pinned
// version), else consul on PATH.
func FindConsul(understudy string) (string, error) {
	beside := filepath.Join(filepath.Dir(understudy), "consul")
	if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
		return beside, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	return "", errors.New("no consul agent beside understudy nor on PATH; run `make deps`, which builds the pinned one into bin/consul")
}

// StartProcesses starts the processes of a node that is in a cluster again,
// after they stopped or were killed: the Consul agent first, then the
// daemons; the handler-runner then brings the node back as a standby of the
// active (rewinding it if needed). Processes that run are left alone.
func StartProcesses(ctx context.Context, cfg *config.Config, o Options) error {
	o.defaults()
	if _, found, err := ReadIdentity(cfg.Node.DataDir); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("node %s is in no cluster (no %s); use cluster start or cluster join", cfg.Node.Name, layout{cfg.Node.DataDir}.identity())
	}
	for _, svc := range append([]config.Service{consulService(layout{cfg.Node.DataDir}, o)}, daemonServices(cfg, o)...) {
		if err := o.Services.Start(ctx, svc); err != nil {
			return fmt.Errorf("start %s: %w", svc.Name, err)
		}
	}
	return nil
}

// The node's processes, by their names as services.
const (
	ConsulProcess        = "understudy-consul"
	CheckRunnerProcess   = "understudy-check-runner"
	HandlerRunnerProcess = "understudy-handler-runner"
)

// ProcessNames are the node's processes, in the order they start.
var ProcessNames = []string{ConsulProcess, CheckRunnerProcess, HandlerRunnerProcess}

// PIDFile is where the supervisor of the node's process name keeps its PID
// (its output goes beside it, NAME.log).
func PIDFile(dataDir, name string) string {
	return filepath.Join(layout{dataDir}.services(), name+".pid")
}
