//go:build tools

// Package syncthing pins the Syncthing that understudy runs on every node:
// `make syncthing` builds github.com/syncthing/syncthing/cmd/syncthing from
// this module into bin/syncthing. The version is the one the main module
// imports lib/protocol from (the device ID of a node certificate), so the
// identity understudy computes is the one Syncthing computes; a test in
// replication/files compares the two go.mod files.
package syncthing

import _ "github.com/syncthing/syncthing/cmd/syncthing"
