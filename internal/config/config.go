package config

import "time"

// Config is one node's effective configuration: the HCL file after defaults
// and validation. Durations are time.Duration, sizes are bytes.
type Config struct {
	// Path is the file the configuration was loaded from ("" for Default()).
	Path     string
	Cluster  Cluster
	Node     Node
	Consul   Consul
	Postgres Postgres
	Checks   Checks
	API      API
	Services []Service
	Files    []Files
}

type Cluster struct {
	Name          string // required
	KVPrefix      string // default "understudy"
	PartitionMode string // "active-minority" (default) or "fence"
}

type Node struct {
	Name       string // required
	Address    string // required: IP or host name peers use to reach this node
	DataDir    string // default "/var/lib/understudy"
	Priority   int    // default 100, >= 0
	NoFailover bool   // default false
	Tags       []string
}

type Consul struct {
	Address    string        // default "127.0.0.1:8500"
	Scheme     string        // "http" (default) or "https"
	Token      string        // ACL token, default ""
	CAFile     string        // TLS material for the agent's HTTPS API; "" = none
	CertFile   string
	KeyFile    string
	SessionTTL time.Duration // default 10s, Consul accepts 10s..24h
	LockDelay  time.Duration // default 1s, 0..60s
}

type Postgres struct {
	BinDir               string        // default "/usr/lib/postgresql/15/bin"
	DataDir              string        // default "<node.data_dir>/postgres"
	Host                 string        // where checks connect; default node.address
	Port                 int           // default 5432, 1..65535
	User                 string        // default "postgres"
	Database             string        // default "postgres"
	PasswordFile         string        // default "": no password
	OSUser               string        // OS user that runs postgres, default "postgres"
	Synchronous          bool          // default false
	MaximumLagOnFailover int64         // bytes; HCL takes "16MB", "1GB", "0"; default 16 MiB
	ConnectTimeout       time.Duration // default 2s
}

type Checks struct {
	Interval          time.Duration // default 1s, >= 100ms
	HeartbeatInterval time.Duration // default 15s, >= Interval
	TTLMultiplier     int           // default 1, >= 1
	FailFast          bool          // default true
}

type API struct {
	Listen        string // default ":8008"
	BasicAuthFile string // default ""
}

type Service struct {
	Name        string   // the block label
	SystemdUnit string   // either SystemdUnit or Start/Stop/Status, not both
	Start       []string // argv
	Stop        []string
	Status      []string // exit 0 = running
	ActiveOnly  bool
}

type Files struct {
	Name string // the block label
	Path string
}
