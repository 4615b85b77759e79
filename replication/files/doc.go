// Package files is understudy's hand on a node's Syncthing, which mirrors the
// configured directories from the active node to the standbys.
//
// Prepare lays out the node's Syncthing home before every start: the node
// certificate as Syncthing's identity (so the device ID that check-runner
// publishes is the one Syncthing uses), an API key, and a config.xml that
// keeps Syncthing to the cluster's own network: one TCP listen address, no
// discovery, relays, NAT traversal, usage or crash reporting, no upgrades.
// Command is the argv of the long-running process.
//
// Client drives the running Syncthing through its REST API only: Apply makes
// the configured devices and folders exactly the desired ones and writes
// nothing when they already are, SetFolderTypes flips every folder between
// send-only (active) and receive-only (standby), Override and Revert settle
// the differences a role change leaves behind, FolderStatus reports progress.
//
// It carries out a role it is given and reports facts about one Syncthing; it
// does not decide roles, does not supervise the process, and never deletes
// files in a folder itself (Revert asks Syncthing to).
package files
