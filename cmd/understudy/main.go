// Command understudy is one binary for every part of understudy: the three
// daemons (check-runner, handler-runner, consul-watcher) and the operator's
// CLI. This package only wires commands to the packages that do the work.
package main

import (
	"os"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}
