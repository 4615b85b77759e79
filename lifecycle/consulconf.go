package lifecycle

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/config"
)

// datacenter is the Consul datacenter of every understudy cluster: one
// cluster is one datacenter, and the node certificates name it
// (server.dc1.consul).
const datacenter = "dc1"

// consulHCL is the agent's own configuration: a server bound to the node's
// address, its HTTPS API where consul.address says, and the timing of the
// consul block (raft_multiplier, gossip_*), which the failover bounds are
// derived from (config.Bounds, README "Failover bounds").
// bootstrap is true on the node that starts the cluster; a joining node
// lists the servers to join instead.
func consulHCL(cfg *config.Config, l layout, o Options, bootstrap bool, join []string) (string, error) {
	host, _, err := net.SplitHostPort(cfg.Consul.Address)
	if err != nil {
		return "", fmt.Errorf("consul.address %q: %w", cfg.Consul.Address, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by understudy cluster %s; do not edit.\n", map[bool]string{true: "start", false: "join"}[bootstrap])
	fmt.Fprintf(&b, "node_name            = %q\n", cfg.Node.Name)
	fmt.Fprintf(&b, "datacenter           = %q\n", datacenter)
	fmt.Fprintf(&b, "data_dir             = %q\n", l.consulData())
	b.WriteString("server               = true\n")
	if bootstrap {
		b.WriteString("bootstrap_expect     = 1\n")
	}
	fmt.Fprintf(&b, "bind_addr            = %q\n", cfg.Node.Address)
	fmt.Fprintf(&b, "advertise_addr       = %q\n", cfg.Node.Address)
	fmt.Fprintf(&b, "client_addr          = %q\n", host)
	b.WriteString("disable_update_check = true\n")
	b.WriteString("log_level            = \"INFO\"\n")
	if len(join) > 0 {
		quoted := make([]string, len(join))
		for i, j := range join {
			quoted[i] = strconv.Quote(j)
		}
		fmt.Fprintf(&b, "retry_join           = [%s]\n", strings.Join(quoted, ", "))
		b.WriteString("retry_interval       = \"2s\"\n")
	}
	fmt.Fprintf(&b, "ports {\n  serf_lan = %d\n  server   = %d\n  serf_wan = -1\n  dns      = -1\n  grpc     = -1\n  grpc_tls = -1\n}\n", o.SerfPort, o.ServerPort)
	perf, gossip := timingHCL(cfg)
	b.WriteString(perf)
	// A joined server votes once autopilot has seen it stable for this
	// long (10 s by default): cluster join waits for it.
	b.WriteString("autopilot { server_stabilization_time = \"5s\" }\n")
	b.WriteString(gossip)
	return b.String(), nil
}

// writeConsulConfig writes consul.hcl, tls.hcl (which holds the gossip
// key, hence 0600) and acl.hcl (the agent's token, 0600 too) into the
// agent's config directory, and the copies of the node's TLS files the
// agent reads; on a systemd host the agent's directory is then
// ConsulUser's, whose unit it runs as.
func writeConsulConfig(cfg *config.Config, l layout, o Options, paths certs.Paths, gossipKey, agentToken string, bootstrap bool, join []string) error {
	main, err := consulHCL(cfg, l, o, bootstrap, join)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(cfg.Consul.Address)
	httpsPort, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("consul.address %q: %w", cfg.Consul.Address, err)
	}
	for _, d := range []string{l.consulConfig(), l.consulData()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// The agent reads copies of the node's TLS files, its own: as a unit
	// it runs as ConsulUser, which must not read the CA key beside them.
	copies, err := certs.CopyFiles(paths, cfg.ConsulAgentTLSDir())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.consulConfig(), "consul.hcl"), []byte(main), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.consulConfig(), "acl.hcl"), []byte(aclHCL(agentToken)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.consulConfig(), "tls.hcl"), []byte(certs.ConsulTLSHCL(copies, gossipKey, httpsPort)), 0o600); err != nil {
		return err
	}
	if !o.Systemd {
		return nil
	}
	uid, gid, err := ensureSystemUser(ConsulUser)
	if err != nil {
		return err
	}
	return giveTo(l.consul(), ConsulUser, uid, gid)
}

// timingHCL is the agent's performance and gossip_lan blocks, from the
// consul block's timing settings.
func timingHCL(cfg *config.Config) (performance, gossip string) {
	c := cfg.Consul
	return fmt.Sprintf("performance { raft_multiplier = %d }\n", c.RaftMultiplier),
		fmt.Sprintf("gossip_lan {\n  probe_interval = %q\n  probe_timeout  = %q\n  suspicion_mult = %d\n}\n",
			c.GossipProbeInterval, c.GossipProbeTimeout, c.GossipSuspicionMult)
}

// timingBlocks are the lines of consul.hcl that follow the consul block's
// timing settings.
var timingBlocks = regexp.MustCompile(`(?m)^performance \{[^}]*\}\n|^gossip_lan \{[^}]*\}\n`)

// syncConsulTiming rewrites the timing of an existing consul.hcl to what the
// consul block says now (raft_multiplier, gossip_*), so that a change of
// them takes effect at the agent's next start (understudy node stop, node
// start). It reports whether the file changed.
func syncConsulTiming(cfg *config.Config, l layout) (bool, error) {
	path := filepath.Join(l.consulConfig(), "consul.hcl")
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read the consul agent's configuration: %w", err)
	}
	blocks := timingBlocks.FindAllString(string(b), -1)
	if len(blocks) != 2 {
		return false, fmt.Errorf("%s has no performance and gossip_lan blocks where understudy wrote them; it was edited by hand: restore them or set up the node again", path)
	}
	perf, gossip := timingHCL(cfg)
	out := timingBlocks.ReplaceAllStringFunc(string(b), func(block string) string {
		if strings.HasPrefix(block, "performance") {
			return perf
		}
		return gossip
	})
	if out == string(b) {
		return false, nil
	}
	return true, os.WriteFile(path, []byte(out), 0o600)
}
