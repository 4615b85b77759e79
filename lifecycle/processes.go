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
	"slices"
	"strings"
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
		if o.Systemd {
			// Its unit runs as SyncthingUser; supervised, Syncthing runs
			// as whoever ran the command. Given every time: a home that
			// an older understudy made is root's.
			uid, gid, err := ensureSystemUser(SyncthingUser)
			if err != nil {
				return nil, err
			}
			if err := chownTree(setup.Home, uid, gid); err != nil {
				return nil, fmt.Errorf("give the syncthing home %s to %s: %w", setup.Home, SyncthingUser, err)
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
func (u *undo) startService(ctx context.Context, cfg *config.Config, o Options, svc config.Service) error {
	m, run := o.Services, o.run(svc)
	if o.Systemd {
		writable := writablePaths(cfg, svc.Name)
		// The file system is read-only for the unit but for these, which
		// must exist when it starts: a mirrored directory the application
		// has not made yet, say.
		for _, d := range writable {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("unit %s: %w", svc.Name, err)
			}
		}
		unit, err := systemd.Unit(svc.Name, systemd.Spec{Argv: svc.Command, Writable: writable, Reads: nodePaths(cfg)})
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

// writablePaths are what the unit of the node's process name may write
// (ReadWritePaths=; the rest of the file system is read-only to it): the
// Consul agent its directory; Syncthing its home and the mirrored
// directories; the check-runner node.data_dir (renewed certificates and
// the copies PostgreSQL and Consul read), logging.dir (cluster.log), and
// the TLS directories when they are elsewhere. The handler-runner's unit protects /usr and /etc
// only (ProtectSystem=full): none.
func writablePaths(cfg *config.Config, name string) []string {
	switch name {
	case ConsulProcess:
		return []string{layout{cfg.Node.DataDir}.consul()}
	case SyncthingProcess:
		w := []string{cfg.SyncthingHome()}
		for _, f := range cfg.Files {
			w = append(w, f.Path)
		}
		return w
	case CheckRunnerProcess:
		w := []string{cfg.Node.DataDir}
		// cluster.log: the check-runner writes its guard's fencing and its
		// renewals there, beside the handler-runner.
		if cfg.Logging.Dir != "" && !within(cfg.Logging.Dir, cfg.Node.DataDir) {
			w = append(w, cfg.Logging.Dir)
		}
		_, cert, _ := cfg.TLSFiles()
		for _, d := range []string{filepath.Dir(cert), cfg.Postgres.TLSDir} {
			if cert != "" && d != "" && !within(d, cfg.Node.DataDir) {
				w = append(w, d)
			}
		}
		return w
	}
	return nil
}

// nodePaths are the paths of the node its processes read, whichever
// process: a unit's sandbox must not hide any of them (PrivateTmp= hides a
// mirrored directory under /tmp from the check-runner that looks at it).
func nodePaths(cfg *config.Config) []string {
	ca, cert, key := cfg.TLSFiles()
	paths := []string{cfg.Path, cfg.Node.DataDir, cfg.Postgres.DataDir, cfg.Postgres.BinDir, cfg.Postgres.TLSDir, ca, cert, key, cfg.Syncthing.Binary}
	for _, f := range cfg.Files {
		paths = append(paths, f.Path)
	}
	return slices.DeleteFunc(paths, func(p string) bool { return p == "" })
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
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

// PackageBinDir is where the Debian package puts the pinned Consul and
// Syncthing, relative to the directory of the understudy binary
// (/usr/bin/understudy: /usr/lib/understudy/bin).
const PackageBinDir = "../lib/understudy/bin"

// FindConsul is the Consul agent to run beside the understudy binary at
// understudy: the package's (PackageBinDir), else bin/consul next to it
// (what `make deps` builds, the pinned version), else consul on PATH.
func FindConsul(understudy string) (string, error) {
	return findBeside(understudy, "consul", "no consul agent beside understudy nor on PATH; run `make deps`, which builds the pinned one into bin/consul")
}

// FindSyncthing is the Syncthing to run when syncthing.binary is not set:
// the package's (PackageBinDir), else bin/syncthing beside understudy (the
// pinned version `make deps` builds), else syncthing on PATH.
func FindSyncthing(understudy string) (string, error) {
	return findBeside(understudy, "syncthing", "no syncthing beside understudy nor on PATH; run `make deps`, which builds the pinned one into bin/syncthing, or set syncthing { binary = \"/path/to/syncthing\" }")
}

// findBeside prefers the package's pinned program to one that happens to
// be beside understudy or on PATH: an installed node must run the version
// it was tested with, not a consul of another package in /usr/bin.
func findBeside(understudy, name, missing string) (string, error) {
	dir := filepath.Dir(understudy)
	for _, p := range []string{filepath.Join(dir, PackageBinDir, name), filepath.Join(dir, name)} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return filepath.Clean(p), nil
		}
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
