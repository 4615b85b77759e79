// Package consulrecovery changes a stopped Consul server's data directory
// for the two moves of a partition in partition_mode "active-minority"
// (DESIGN.md, Partitions):
//
//   - Recover: Consul's documented outage recovery. The servers a node
//     still reaches take a Raft configuration of their own (raft/peers.json,
//     which the agent reads at its next start, applies and deletes), so a
//     minority has a quorum and a leader again, with the KV store, sessions
//     and catalog it had.
//   - Reset: the side that loses the heal forgets its Raft and gossip
//     state and starts as a new server that joins the surviving cluster
//     (retry_join) and takes its data from that cluster's leader.
//
// Both work on the files of an agent that is not running: Consul reads
// peers.json only at its start, and a running agent holds its Raft files
// open. Who stops and starts the agent (systemd, a supervisor, a test) is
// the caller's.
//
// Isolation: Rekey replaces the gossip keyring of the side that recovers,
// so that when the network heals its gossip pool and the other side's
// cannot merge (serf drops what it cannot decrypt) before the heal is
// decided: two Raft clusters that meet in one pool fight for leadership.
// The other side's leader no longer sends it Raft traffic either:
// autopilot removed the cut-off server from that configuration while it was
// unreachable, and gossip never shows it alive again.
package consulrecovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Server is one voter of a recovered Raft configuration.
type Server struct {
	// ID is the server's node ID (its data directory's node-id file).
	ID string `json:"id"`
	// Address is the server's RPC (and Raft) address, host:port.
	Address  string `json:"address"`
	NonVoter bool   `json:"non_voter"`
}

// NodeID reads the node ID a Consul agent made for itself at its first
// start: the ID a recovered configuration must name it by.
func NodeID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "node-id"))
	if err != nil {
		return "", fmt.Errorf("read the consul node id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if len(id) != 36 {
		return "", fmt.Errorf("the consul node id in %s is %q, not a UUID", filepath.Join(dataDir, "node-id"), id)
	}
	return id, nil
}

// Recover writes raft/peers.json into the data directory of a stopped
// server: at its next start the agent takes servers as its whole Raft
// configuration (Raft protocol 3: IDs and addresses). Every server of
// servers must be given the same list before any of them starts.
func Recover(dataDir string, servers []Server) error {
	if len(servers) == 0 {
		return errors.New("recover consul: no server to recover with")
	}
	seen := map[string]bool{}
	for _, s := range servers {
		if len(s.ID) != 36 || !strings.Contains(s.Address, ":") || seen[s.ID] {
			return fmt.Errorf("recover consul: server %+v has no node id, no host:port address, or is listed twice", s)
		}
		seen[s.ID] = true
	}
	raft := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(raft); err != nil {
		return fmt.Errorf("recover consul: %w: this agent was never a server, nothing to recover", err)
	}
	b, err := json.MarshalIndent(servers, "", "  ")
	if err != nil {
		return err
	}
	return WriteOwned(filepath.Join(raft, "peers.json"), b, raft)
}

// Reset removes the Raft and gossip state of a stopped server (raft/,
// serf/ and the checkpoint signature): it starts as a new server, joins
// the servers of its retry_join and takes the surviving cluster's data. It
// keeps node-id, so it rejoins as the same node, and writes keyring as its
// gossip keyring when there is one (the surviving side's keys, primary
// first): with a keyring file Consul ignores the encrypt line of its
// configuration, which may name a key the surviving side no longer uses.
func Reset(dataDir string, keyring []string) error {
	if _, err := NodeID(dataDir); err != nil {
		return fmt.Errorf("reset consul: %s is not a consul data directory: %w", dataDir, err)
	}
	for _, d := range []string{"raft", "serf"} {
		if err := os.RemoveAll(filepath.Join(dataDir, d)); err != nil {
			return fmt.Errorf("reset consul: %w", err)
		}
	}
	if len(keyring) == 0 {
		return nil
	}
	return Rekey(dataDir, keyring)
}

// Rekey replaces the gossip keyring of a stopped agent (serf/local.keyring)
// with keys, the first the one it encrypts with.
func Rekey(dataDir string, keys []string) error {
	if len(keys) == 0 {
		return errors.New("rekey consul: no key")
	}
	serf := filepath.Join(dataDir, "serf")
	if err := os.MkdirAll(serf, 0o700); err != nil {
		return fmt.Errorf("rekey consul: %w", err)
	}
	if err := chownLike(serf, dataDir); err != nil {
		return err
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	return WriteOwned(filepath.Join(serf, "local.keyring"), b, dataDir)
}

// Keyring reads an agent's gossip keyring: nil, no error, when it has none
// (gossip not encrypted).
func Keyring(dataDir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "serf", "local.keyring"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the consul keyring: %w", err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("read the consul keyring: %w", err)
	}
	return keys, nil
}

// WriteOwned replaces path (0600, by a rename) and gives it the owner of
// like: the agent runs as its own user (lifecycle.ConsulUser) and must read
// what a root daemon wrote for it.
func WriteOwned(path string, b []byte, like string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := chownLike(tmp, like); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
