// Package systemd holds the systemd units of a node's processes, one file
// per process, embedded so that `cluster start` and `cluster join` install
// the very units a package would ship. The files run the default paths
// (/usr/bin/understudy, /etc/understudy/understudy.hcl, node.data_dir =
// /var/lib/understudy); Unit gives a node's own command instead.
package systemd

import (
	"embed"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

//go:embed *.service
var files embed.FS

// Spec is what a node's unit runs and touches.
type Spec struct {
	Argv     []string // ExecStart=
	Writable []string // ReadWritePaths=: the only paths it may write
	// Reads are the other paths of the node the process reads (its
	// configuration's data directory, mirrored directories, TLS files):
	// they only decide whether the sandbox may hide /tmp and /home.
	Reads []string
}

// Unit is the unit of the node process name (understudy-consul, ...) with
// ExecStart= running s.Argv and ReadWritePaths= naming s.Writable, each
// argument and path quoted as systemd reads it. A unit that ships
// ReadWritePaths= (its file system is read-only but for those) must be
// given at least one; one that does not, none. A node with a path (of
// s's) under /tmp or /var/tmp gets PrivateTmp=no, and one under /home,
// /root or /run/user ProtectHome=no: the sandbox would hide its own files
// from it (a trial node, the tests' nodes).
func Unit(name string, s Spec) ([]byte, error) {
	b, err := files.ReadFile(name + ".service")
	if err != nil {
		return nil, fmt.Errorf("no systemd unit for the process %s", name)
	}
	argv, writable := s.Argv, s.Writable
	if len(argv) == 0 {
		return nil, fmt.Errorf("unit %s: no command", name)
	}
	all := slices.Concat(argv, writable, s.Reads)
	var exec, rw int
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		key, _, _ := strings.Cut(l, "=")
		switch key {
		case "ExecStart":
			lines[i] = "ExecStart=" + quoteAll(argv)
			exec++
		case "ReadWritePaths":
			lines[i] = "ReadWritePaths=" + quoteAll(writable)
			rw++
		case "PrivateTmp":
			if under(all, "/tmp/", "/var/tmp/") {
				lines[i] = "PrivateTmp=no"
			}
		case "ProtectHome":
			if under(all, "/home/", "/root/", "/run/user/") {
				lines[i] = "ProtectHome=no"
			}
		}
	}
	if exec != 1 {
		return nil, fmt.Errorf("unit %s has %d ExecStart= lines, want 1", name, exec)
	}
	if rw > 1 || (rw == 1) != (len(writable) > 0) {
		return nil, fmt.Errorf("unit %s has %d ReadWritePaths= lines and was given %d writable paths", name, rw, len(writable))
	}
	return []byte(strings.Join(lines, "\n")), nil
}

func quoteAll(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = Quote(a)
	}
	return strings.Join(words, " ")
}

// under reports whether a path among args lies under one of the
// directories dirs (each ending in /); arguments such as
// -config-dir=/tmp/x count by what follows their =.
func under(args []string, dirs ...string) bool {
	for _, a := range args {
		if i := strings.IndexByte(a, '='); i >= 0 && !strings.HasPrefix(a, "/") {
			a = a[i+1:]
		}
		for _, d := range dirs {
			if strings.HasPrefix(filepath.Clean(a)+"/", d) {
				return true
			}
		}
	}
	return false
}

// Quote writes one argument of a command line as systemd.service(5) reads
// it: % and $ doubled (they start specifiers and variables), and in double
// quotes with \ and " escaped when it holds a space, a quote, a backslash
// or a semicolon (which would end the command), or is empty.
func Quote(arg string) string {
	arg = strings.NewReplacer("%", "%%", "$", "$$").Replace(arg)
	if arg != "" && !strings.ContainsAny(arg, " \t\n\"'\\;") {
		return arg
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(arg) + `"`
}
