package nodeapi

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/config"
)

// Profile is a named cluster: the API base URLs of its nodes, and how to
// reach them.
type Profile struct {
	Name string `json:"name"`
	// Nodes are API base URLs, e.g. http://10.0.0.5:8008, tried in order.
	Nodes []string `json:"nodes"`
	// CAFile is a PEM file of the CA that signs the nodes' API certificates
	// (https:// nodes); empty means the system's roots.
	CAFile string `json:"ca_file,omitempty"`
	// BasicAuthFile holds user:password on its first line: the nodes'
	// api.basic_auth_file.
	BasicAuthFile string `json:"basic_auth_file,omitempty"`
	// CertFile and KeyFile are a client certificate of the cluster's CA and
	// its key (understudy certs operator), presented to https:// nodes.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`

	// cert is a client certificate held in memory (the local node's
	// profile, see Local); CertFile and KeyFile win over it.
	cert *tls.Certificate
}

// LocalURL is the API of the node the CLI runs on, with the default
// api.listen.
const LocalURL = "http://127.0.0.1:8008"

// LocalName is the name of the local node's profile (Local).
const LocalName = "local"

// DefaultPort is the API's port when a node is given without one.
const DefaultPort = "8008"

// Local is the profile used when none is named and none is called "dev":
// the handler-runner of this machine. On a node that cluster start or join
// set up (config.DefaultPath, with TLS) it is the node's API over HTTPS,
// trusting the cluster's CA, with a client certificate: an operator
// certificate for the user signed here for an hour when the CA's key is
// readable (root on a node may sign any certificate anyway: see package
// certs), else the node's own certificate when readable (reads only).
// Elsewhere it is LocalURL.
func Local() Profile {
	p := Profile{Name: LocalName, Nodes: []string{LocalURL}}
	cfg, err := config.Load(config.DefaultPath)
	if err != nil || !cfg.TLS() {
		return p
	}
	caFile, certFile, keyFile := cfg.TLSFiles()
	p.Nodes, p.CAFile = []string{cfg.APIURL()}, caFile
	if ca, err := certs.ReadCA(certs.ReadPaths(filepath.Dir(caFile))); err == nil {
		if c, err := ca.IssueOperator(localOperator(cfg.Node.Name), time.Hour, time.Now()); err == nil {
			if pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err == nil {
				p.cert = &pair
				return p
			}
		}
	}
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		p.cert = &pair
	}
	return p
}

// localOperator names the operator certificate Local signs: the user and
// the node, as events then record it ("operator root@n1").
func localOperator(node string) string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + node
}

// ErrUnknownProfile is returned for a profile name the store does not hold.
var ErrUnknownProfile = errors.New("unknown profile")

// Environment variables the store and the selection read.
const (
	// EnvProfiles overrides the path of profiles.json (tests, several
	// operators on one machine).
	EnvProfiles = "UNDERSTUDY_PROFILES"
	// EnvProfile names the profile when --profile does not.
	EnvProfile = "UNDERSTUDY_PROFILE"
)

// ProfilesPath is where the profiles are stored: $UNDERSTUDY_PROFILES, else
// $XDG_CONFIG_HOME/understudy/profiles.json, else
// ~/.config/understudy/profiles.json.
func ProfilesPath() (string, error) {
	if p := os.Getenv(EnvProfiles); p != "" {
		return p, nil
	}
	if dir := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "understudy", "profiles.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the profiles file: %w; set %s=/path/to/profiles.json", err, EnvProfiles)
	}
	return filepath.Join(home, ".config", "understudy", "profiles.json"), nil
}

// profilesFile is the JSON of profiles.json.
type profilesFile struct {
	Profiles []Profile `json:"profiles"`
}

func readProfiles() ([]Profile, string, error) {
	path, err := ProfilesPath()
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("read the profiles: %w", err)
	}
	var f profilesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, path, fmt.Errorf("read the profiles: %s is not valid JSON: %w; fix or remove it", path, err)
	}
	return f.Profiles, path, nil
}

// writeProfiles replaces the file at once (write, then rename), 0600 in a
// 0700 directory: a crash never leaves half a file.
func writeProfiles(path string, ps []Profile) error {
	slices.SortFunc(ps, func(a, b Profile) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(profilesFile{Profiles: ps}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write the profiles: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".profiles-*.json")
	if err != nil {
		return fmt.Errorf("write the profiles: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write the profiles: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write the profiles: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the profiles: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write the profiles: %w", err)
	}
	return nil
}

// ListProfiles returns every stored profile, by name.
func ListProfiles() ([]Profile, error) {
	ps, _, err := readProfiles()
	slices.SortFunc(ps, func(a, b Profile) int { return strings.Compare(a.Name, b.Name) })
	return ps, err
}

// LoadProfile returns the stored profile name, or an error wrapping
// ErrUnknownProfile that says how to add it.
func LoadProfile(name string) (Profile, error) {
	ps, path, err := readProfiles()
	if err != nil {
		return Profile{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("%w %q (not in %s); add it with: understudy profile add %s --nodes HOST:PORT,HOST:PORT",
		ErrUnknownProfile, name, path, name)
}

// SaveProfile checks p, normalises its node URLs and stores it, replacing a
// profile of the same name.
func SaveProfile(p Profile) error {
	if err := ValidName(p.Name); err != nil {
		return err
	}
	if len(p.Nodes) == 0 {
		return fmt.Errorf("profile %q: no nodes; give --nodes HOST:PORT,HOST:PORT", p.Name)
	}
	nodes := make([]string, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		u, err := NormalizeNode(n, p.CAFile != "")
		if err != nil {
			return fmt.Errorf("profile %q: %w", p.Name, err)
		}
		if !slices.Contains(nodes, u) {
			nodes = append(nodes, u)
		}
	}
	p.Nodes = nodes
	ps, path, err := readProfiles()
	if err != nil {
		return err
	}
	ps = slices.DeleteFunc(ps, func(q Profile) bool { return q.Name == p.Name })
	return writeProfiles(path, append(ps, p))
}

// RemoveProfile deletes the stored profile name; it is an error when there
// is none.
func RemoveProfile(name string) error {
	ps, path, err := readProfiles()
	if err != nil {
		return err
	}
	n := len(ps)
	ps = slices.DeleteFunc(ps, func(q Profile) bool { return q.Name == name })
	if len(ps) == n {
		return fmt.Errorf("%w %q; see understudy profile list", ErrUnknownProfile, name)
	}
	return writeProfiles(path, ps)
}

// DefaultProfile is the profile a command uses when neither --profile nor
// UNDERSTUDY_PROFILE names one: the stored profile "dev" when there is one
// (what `understudy dev` writes), else the local node (Local).
func DefaultProfile() (Profile, error) {
	p, err := LoadProfile("dev")
	if errors.Is(err, ErrUnknownProfile) {
		return Local(), nil
	}
	return p, err
}

// SelectProfile is the profile a command uses: flag (--profile) when set,
// else $UNDERSTUDY_PROFILE, else DefaultProfile.
func SelectProfile(flag string) (Profile, error) {
	if flag != "" {
		return LoadProfile(flag)
	}
	if env := os.Getenv(EnvProfile); env != "" {
		p, err := LoadProfile(env)
		if err != nil {
			return p, fmt.Errorf("%s=%s: %w", EnvProfile, env, err)
		}
		return p, nil
	}
	return DefaultProfile()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidName reports whether name can name a profile: letters, digits, '.',
// '_' and '-', starting with a letter or digit.
func ValidName(name string) error {
	if !nameRE.MatchString(name) || len(name) > 64 {
		return fmt.Errorf("profile name %q: use up to 64 letters, digits, '.', '_' or '-', e.g. prod", name)
	}
	return nil
}

// NormalizeNode turns what an operator types into an API base URL:
// "10.0.0.5:8008" becomes http://10.0.0.5:8008 (https:// when tls), a bare
// host gets port 8008, and a trailing slash goes.
func NormalizeNode(s string, tls bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("an empty node address; write HOST:PORT or http://HOST:PORT")
	}
	if !strings.Contains(s, "://") {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("node %q: %w; write HOST:PORT or http://HOST:PORT", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("node %q: the scheme must be http or https", s)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("node %q: write the API's base address only, HOST:PORT or http://HOST:PORT", s)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), DefaultPort)
	}
	return u.Scheme + "://" + host, nil
}

// NodeChanges is what refreshing a profile from its cluster changes: the
// new node list, and the URLs it adds and drops.
type NodeChanges struct {
	Nodes   []string
	Added   []string
	Removed []string
}

// RefreshNodes is p's node list as the cluster status cs names its
// members' API addresses: the nodes p had that are still members keep
// their order, new members follow by name, and nodes that are no longer
// members go. answered names, by member name, the profile's address that
// answered as that member: it is kept rather than the address the member
// publishes, which the operator may not reach (NAT, a DNS name, a
// different network). It is an error when no member has an API address: a
// profile is never emptied.
func RefreshNodes(p Profile, cs ClusterStatus, answered map[string]string) (NodeChanges, error) {
	var fresh []string
	members := slices.Clone(cs.Members)
	slices.SortFunc(members, func(a, b cluster.Member) int { return strings.Compare(a.Name, b.Name) })
	for _, m := range members {
		if u, ok := answered[m.Name]; ok && slices.Contains(p.Nodes, u) {
			if !slices.Contains(fresh, u) {
				fresh = append(fresh, u)
			}
			continue
		}
		if m.APIURL == "" {
			continue
		}
		u, err := NormalizeNode(m.APIURL, p.CAFile != "")
		if err != nil {
			return NodeChanges{}, fmt.Errorf("member %s: %w", m.Name, err)
		}
		if !slices.Contains(fresh, u) {
			fresh = append(fresh, u)
		}
	}
	if len(fresh) == 0 {
		return NodeChanges{}, fmt.Errorf("cluster %s names no member with an API address; profile %q left as it was", cs.Cluster, p.Name)
	}
	var ch NodeChanges
	for _, n := range p.Nodes {
		if slices.Contains(fresh, n) {
			ch.Nodes = append(ch.Nodes, n)
		} else {
			ch.Removed = append(ch.Removed, n)
		}
	}
	for _, u := range fresh {
		if !slices.Contains(ch.Nodes, u) {
			ch.Nodes = append(ch.Nodes, u)
			ch.Added = append(ch.Added, u)
		}
	}
	return ch, nil
}
