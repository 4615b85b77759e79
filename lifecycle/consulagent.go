package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/understudy-ha/understudy/internal/config"
	"github.com/understudy-ha/understudy/internal/consulrecovery"
)

// ConsulAgent is the node's Consul agent as the consul-watcher handles it
// in partition_mode "active-minority": stopped, its data directory changed
// (internal/consulrecovery), started again, the way the node's identity
// says its processes run. A systemd unit is stopped and started through
// systemd; a supervised program is stopped by its pid file and started
// again under the caller's supervision (the consul-watcher's, while it
// lives), as `node start` would.
type ConsulAgent struct {
	cfg *config.Config
	o   Options
}

// NewConsulAgent returns the agent of the node cfg describes; o needs
// Services and, for a supervised agent, Understudy or Consul. How the
// agent runs is read from the node's identity when it is restarted: the
// consul-watcher starts before cluster start writes it.
func NewConsulAgent(cfg *config.Config, o Options) *ConsulAgent {
	return &ConsulAgent{cfg: cfg, o: o}
}

// DataDir is the agent's data directory.
func (a *ConsulAgent) DataDir() string { return layout{a.cfg.Node.DataDir}.consulData() }

// Restart stops the agent, calls change with its data directory while it is
// stopped, and starts it again, also when change failed: a node is never
// left without its agent.
func (a *ConsulAgent) Restart(ctx context.Context, change func(dataDir string) error) error {
	o, err := asSetUp(a.cfg, a.o)
	if err != nil {
		return err
	}
	if o.Consul == "" && !o.Systemd {
		if o.Consul, err = FindConsul(o.Understudy); err != nil {
			return err
		}
	}
	svc := o.run(consulService(layout{a.cfg.Node.DataDir}, o))
	if err := o.Services.Stop(ctx, svc); err != nil {
		return fmt.Errorf("stop the consul agent: %w", err)
	}
	cerr := change(a.DataDir())
	if err := o.Services.Start(ctx, svc); err != nil {
		return errors.Join(cerr, fmt.Errorf("start the consul agent again: %w", err))
	}
	return cerr
}

// joinLines are the lines of consul.hcl that say how the agent finds its
// cluster at its start.
var joinLines = regexp.MustCompile(`(?m)^(bootstrap_expect|retry_join|retry_interval) .*\n`)

// JoinOnly rewrites the agent's consul.hcl so that it never bootstraps a
// cluster of its own (no bootstrap_expect, which the node that started the
// cluster has) and joins the servers at join (host:serf port) at its start:
// an agent whose Raft state was reset must join the surviving cluster, not
// elect itself. Call it while the agent is stopped.
func (a *ConsulAgent) JoinOnly(join []string) error {
	if len(join) == 0 {
		return errors.New("the consul agent must be given a server to join")
	}
	path := filepath.Join(layout{a.cfg.Node.DataDir}.consulConfig(), "consul.hcl")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the consul agent's configuration: %w", err)
	}
	quoted := make([]string, len(join))
	for i, j := range join {
		quoted[i] = strconv.Quote(j)
	}
	out := joinLines.ReplaceAllString(string(b), "")
	out = strings.TrimRight(out, "\n") + "\n" +
		fmt.Sprintf("retry_join           = [%s]\nretry_interval       = \"2s\"\n", strings.Join(quoted, ", "))
	// consul.hcl is 0600 and, on a systemd host, the agent's user's.
	return consulrecovery.WriteOwned(path, []byte(out), path)
}
