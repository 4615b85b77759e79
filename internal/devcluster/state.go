package devcluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/understudy-ha/understudy/handlerrunner"
	"github.com/understudy-ha/understudy/internal/jsonfile"
	"github.com/understudy-ha/understudy/internal/netns"
	"github.com/understudy-ha/understudy/internal/services"
	"github.com/understudy-ha/understudy/lifecycle"
)

// stateFile is where a dev cluster describes itself, in its directory.
const stateFile = "dev.json"

// State is what `dev status -o json` prints: where everything is and the
// PIDs of its processes, so scripts can drive failures.
type State struct {
	Dir     string `json:"dir"`
	Cluster string `json:"cluster"`
	// PartitionMode is the nodes' cluster.partition_mode.
	PartitionMode string `json:"partition_mode,omitempty"`
	// CAFile is the cluster CA's certificate: clients of the nodes' HTTPS
	// APIs trust it (the CLI's dev profile does).
	CAFile string `json:"ca_file"`
	// OperatorCert and OperatorKey are an operator certificate of the
	// cluster's CA ("dev"): the dev profile's, and what the dev tooling
	// presents to the nodes' APIs.
	OperatorCert string  `json:"operator_cert,omitempty"`
	OperatorKey  string  `json:"operator_key,omitempty"`
	Nodes        []Node  `json:"nodes"`
	HAProxy      HAProxy `json:"haproxy"`
	// Net is the nodes' network namespaces and the bridge between them;
	// nil for a cluster on loopback.
	Net *netns.Net `json:"network,omitempty"`
}

// Node is one node of the dev cluster.
type Node struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Netns is the node's network namespace (`ip netns exec NETNS ...`
	// runs a command on the node); "" on loopback.
	Netns        string `json:"netns,omitempty"`
	Dir          string `json:"dir"`
	Config       string `json:"config"`
	APIURL       string `json:"api_url"`
	PostgresHost string `json:"postgres_host"`
	PostgresPort int    `json:"postgres_port"`
	PostgresData string `json:"postgres_data_dir"`
	ConsulAPI    string `json:"consul_api"`
	SerfPort     int    `json:"consul_serf_port"`
	ServerPort   int    `json:"consul_server_port"`
	// Files maps each files block to its directory on this node: write in
	// the active node's, watch it appear in the others'.
	Files         map[string]string `json:"files"`
	SyncthingPort int               `json:"syncthing_port"`
	SyncthingAPI  string            `json:"syncthing_api"`
	PIDs          PIDs              `json:"pids"`
}

// PIDs of a node's processes; 0 when not running. PostgreSQL's is read from
// its postmaster.pid each time: the handler-runner restarts it.
type PIDs struct {
	Consul        int `json:"consul"`
	Postgres      int `json:"postgres"`
	CheckRunner   int `json:"check_runner"`
	HandlerRunner int `json:"handler_runner"`
	ConsulWatcher int `json:"consul_watcher"`
	Syncthing     int `json:"syncthing"`
	// Watchdog is the fencing watchdog the handler-runner supervises.
	Watchdog int `json:"watchdog"`
}

// HAProxy is the frontend that follows the active node.
type HAProxy struct {
	Frontend string `json:"frontend"`
	Config   string `json:"config"`
	PID      int    `json:"pid"`
}

func (s *State) save() error {
	if err := jsonfile.Write(filepath.Join(s.Dir, stateFile), s); err != nil {
		return fmt.Errorf("dev cluster state: %w", err)
	}
	return nil
}

// ErrNoCluster is returned when the directory holds no dev cluster.
var ErrNoCluster = errors.New("no dev cluster here")

// Load reads the state of the dev cluster in dir and refreshes its PIDs:
// a process that is gone reads 0.
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s; start one with `understudy dev up --dir %s`", ErrNoCluster, dir, stateFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read dev cluster state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, stateFile), err)
	}
	s.refresh()
	return &s, nil
}

// refresh reads the PIDs of every process from the files its supervisor
// and PostgreSQL keep: 0 for a process that is gone.
func (s *State) refresh() {
	for i := range s.Nodes {
		n := &s.Nodes[i]
		n.PIDs = PIDs{
			Consul:        pidFile(lifecycle.PIDFile(n.Dir, lifecycle.ConsulProcess)),
			CheckRunner:   pidFile(lifecycle.PIDFile(n.Dir, lifecycle.CheckRunnerProcess)),
			HandlerRunner: pidFile(lifecycle.PIDFile(n.Dir, lifecycle.HandlerRunnerProcess)),
			ConsulWatcher: pidFile(lifecycle.PIDFile(n.Dir, lifecycle.ConsulWatcherProcess)),
			Syncthing:     pidFile(lifecycle.PIDFile(n.Dir, lifecycle.SyncthingProcess)),
			Postgres:      postmasterPID(n.PostgresData),
			Watchdog:      pidFile(handlerrunner.WatchdogPIDFile(n.Dir)),
		}
	}
	if !services.PIDAlive(s.HAProxy.PID) {
		s.HAProxy.PID = 0
	}
}
