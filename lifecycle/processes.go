package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/packaging/systemd"
	"github.com/understudy-ha/understudy/replication/files"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// The node's processes are services of internal/services, given here by
// their commands. Options.run turns one into what runs: the same command
// as a program the Manager supervises (restarted when it exits while the
// supervising command lives, left running when it exits:
// services.Manager.Close), or on a systemd host its unit from
// packaging/systemd with that command in ExecStart.
func consulService(l layout, o Options) config.Service {
	return config.Service{Name: ConsulProcess, Command: []string{o.Consul, "agent", "-config-dir=" + l.consulConfig()}}
}

// daemonServices are the processes that start after Consul: Syncthing on a
// node with files blocks (its home prepared first, its identity the node
// certificate), then the check-runner and the handler-runner, which
// configures Syncthing's devices and folders, and the consul-watcher.
func daemonServices(ctx context.Context, cfg *config.Config, o Options) ([]config.Service, error) {
	var svcs []config.Service
	if len(cfg.Files) > 0 {
		bin := cmp.Or(cfg.Syncthing.Binary, o.Syncthing)
		if bin == "" {
			var err error
			if bin, err = FindSyncthing(o.Understudy); err != nil {
				return nil, err
			}
		}
		setup := files.Setup{Home: cfg.SyncthingHome(), NodeName: cfg.Node.Name, Listen: cfg.SyncthingListen(), APIAddress: cfg.SyncthingAPI()}
		if cfg.TLS() {
			_, setup.CertFile, setup.KeyFile = cfg.TLSFiles()
		}
		svc := config.Service{Name: SyncthingProcess, Command: files.Command(bin, setup.Home)}
		// A running Syncthing owns its config.xml (it rewrites it from
		// memory): prepare the home only for one that is about to start.
		if st, err := o.Services.Status(ctx, o.run(svc)); err != nil || !st.Running {
			if err := files.Prepare(setup); err != nil {
				return nil, fmt.Errorf("set up syncthing in %s: %w", setup.Home, err)
			}
		}
		svcs = append(svcs, svc)
	}
	return append(svcs,
		config.Service{Name: CheckRunnerProcess, Command: []string{o.Understudy, "check-runner", "--config", cfg.Path}},
		config.Service{Name: HandlerRunnerProcess, Command: []string{o.Understudy, "handler-runner", "--config", cfg.Path}},
		config.Service{Name: ConsulWatcherProcess, Command: []string{o.Understudy, "consul-watcher", "--config", cfg.Path}},
	), nil
}

// startingWords tells the operator which processes start now.
func startingWords(svcs []config.Service) string {
	if len(svcs) > 3 {
		return "starting Syncthing, the check-runner, the handler-runner and the consul-watcher"
	}
	return "starting the check-runner, the handler-runner and the consul-watcher"
}

// startService starts one of the node's processes, given by its command,
// the way o runs them; undone, it is stopped, and its unit removed.
func (u *undo) startService(ctx context.Context, o Options, svc config.Service) error {
	m, run := o.Services, o.run(svc)
	if o.Systemd {
		unit, err := systemd.Unit(svc.Name, svc.Command)
		if err != nil {
			return err
		}
		if err := m.InstallUnit(ctx, o.UnitDir, run.SystemdUnit, unit); err != nil {
			return err
		}
		u.add("remove the unit "+run.SystemdUnit, func() error {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return m.RemoveUnit(sctx, o.UnitDir, run.SystemdUnit)
		})
	} else {
		u.add("stop "+svc.Name, func() error {
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return m.Stop(sctx, run)
		})
	}
	if err := m.Start(ctx, run); err != nil {
		return fmt.Errorf("start %s: %w", svc.Name, err)
	}
	return nil
}

// run is what runs one of the node's processes, given by its command.
func (o Options) run(svc config.Service) config.Service {
	if !o.Systemd {
		return svc
	}
	return config.Service{Name: svc.Name, SystemdUnit: svc.Name + ".service"}
}

// logs tells the operator where the node's processes write.
func (o Options) logs(l layout) string {
	if o.Systemd {
		return "journalctl -u 'understudy-*'"
	}
	return l.services()
}

// unitDir is what the node's identity keeps of how its processes run.
func (o Options) unitDir() string {
	if o.Systemd {
		return o.UnitDir
	}
	return ""
}

// FindConsul is the Consul agent to run beside the understudy binary at
// understudy: bin/consul next to it (what `make deps` builds, the pinned
// version), else consul on PATH.
func FindConsul(understudy string) (string, error) {
	return findBeside(understudy, "consul", "no consul agent beside understudy nor on PATH; run `make deps`, which builds the pinned one into bin/consul")
}

// FindSyncthing is the Syncthing to run when syncthing.binary is not set:
// bin/syncthing beside understudy (the pinned version `make deps` builds),
// else syncthing on PATH.
func FindSyncthing(understudy string) (string, error) {
	return findBeside(understudy, "syncthing", "no syncthing beside understudy nor on PATH; run `make deps`, which builds the pinned one into bin/syncthing, or set syncthing { binary = \"/path/to/syncthing\" }")
}

func findBeside(understudy, name, missing string) (string, error) {
	beside := filepath.Join(filepath.Dir(understudy), name)
	if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
		return beside, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", errors.New(missing)
}

// asSetUp is o with its defaults and the way the node's processes run as
// cluster start or join set it up, kept in the node's identity: systemd
// units (whatever o says) or supervised programs.
func asSetUp(cfg *config.Config, o Options) (Options, error) {
	o.defaults()
	id, found, err := ReadIdentity(cfg.Node.DataDir)
	if err != nil {
		return o, err
	} else if !found {
		return o, fmt.Errorf("node %s is in no cluster (no %s); use cluster start or cluster join", cfg.Node.Name, layout{cfg.Node.DataDir}.identity())
	}
	o.Systemd, o.UnitDir = id.UnitDir != "", cmp.Or(id.UnitDir, o.UnitDir)
	return o, nil
}

// StartProcesses starts the processes of a node that is in a cluster again,
// after they stopped or were killed: the Consul agent first, then the
// daemons; the handler-runner then brings the node back as a standby of the
// active (rewinding it if needed). Processes that run are left alone. The
// node's identity says whether they are systemd units (then started as
// such, whatever o says) or supervised programs.
func StartProcesses(ctx context.Context, cfg *config.Config, o Options) error {
	o, err := asSetUp(cfg, o)
	if err != nil {
		return err
	}
	if o.Consul == "" && !o.Systemd {
		if o.Consul, err = FindConsul(o.Understudy); err != nil {
			return err
		}
	}
	daemons, err := daemonServices(ctx, cfg, o)
	if err != nil {
		return err
	}
	if changed, err := syncConsulTiming(cfg, layout{cfg.Node.DataDir}); err != nil {
		return err
	} else if changed && o.Out != nil {
		fmt.Fprintln(o.Out, "the consul agent's timing follows the consul block now (raft_multiplier, gossip_*): from its next start")
	}
	for _, svc := range append([]config.Service{consulService(layout{cfg.Node.DataDir}, o)}, daemons...) {
		if err := o.Services.Start(ctx, o.run(svc)); err != nil {
			return fmt.Errorf("start %s: %w", svc.Name, err)
		}
	}
	return nil
}

// StopProcesses stops the node's processes, the way they run (the node's
// identity says), and PostgreSQL: the handler-runner first, which on the
// active stops the active-only services and PostgreSQL and gives up the
// lock, so that another node takes over at once; then PostgreSQL of a
// standby, which the handler-runner leaves running when it exits (a
// restart of the daemon must not stop the standby), the check-runner, the
// consul-watcher, Syncthing and the Consul agent. The Consul server stays a Raft peer, down
// until the node starts again. Systemd units stay enabled: the node
// starts at the next boot. Processes already stopped are skipped.
func StopProcesses(ctx context.Context, cfg *config.Config, o Options) error {
	o, err := asSetUp(cfg, o)
	if err != nil {
		return err
	}
	// Stop finds a supervised process by its name in the state directory;
	// the command is never run.
	stop := func(name string) error {
		if err := o.Services.Stop(ctx, o.run(config.Service{Name: name, Command: []string{name}})); err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
		return nil
	}
	if err := stop(HandlerRunnerProcess); err != nil {
		return err
	}
	pg := postgres.NewInstance(cfg.Postgres, cfg.Node.Name, slog.New(slog.DiscardHandler))
	if err := pg.Stop(ctx, "fast"); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	for _, name := range []string{CheckRunnerProcess, ConsulWatcherProcess, SyncthingProcess, ConsulProcess} {
		if name == SyncthingProcess && len(cfg.Files) == 0 {
			continue
		}
		if err := stop(name); err != nil {
			return err
		}
	}
	return nil
}

// The node's processes, by their names as services.
const (
	ConsulProcess        = "understudy-consul"
	SyncthingProcess     = "understudy-syncthing" // only on a node with files blocks
	CheckRunnerProcess   = "understudy-check-runner"
	HandlerRunnerProcess = "understudy-handler-runner"
	ConsulWatcherProcess = "understudy-consul-watcher"
)

// ProcessNames are the node's processes, in the order they start;
// SyncthingProcess runs only on a node with files blocks.
var ProcessNames = []string{ConsulProcess, SyncthingProcess, CheckRunnerProcess, HandlerRunnerProcess, ConsulWatcherProcess}

// PIDFile is where the supervisor of the node's process name keeps its PID
// (its output goes beside it, NAME.log).
func PIDFile(dataDir, name string) string {
	return filepath.Join(layout{dataDir}.services(), name+".pid")
}
