// Package systemd holds the systemd units of a node's processes, one file
// per process, embedded so that `cluster start` and `cluster join` install
// the very units a package would ship. The files run the default paths
// (/usr/bin/understudy, /etc/understudy/understudy.hcl, node.data_dir =
// /var/lib/understudy); Unit gives a node's own command instead.
package systemd

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed *.service
var files embed.FS

// Unit is the unit of the node process name (understudy-consul, ...) with
// ExecStart= running argv, each argument quoted as systemd reads it.
func Unit(name string, argv []string) ([]byte, error) {
	b, err := files.ReadFile(name + ".service")
	if err != nil {
		return nil, fmt.Errorf("no systemd unit for the process %s", name)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("unit %s: no command", name)
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = Quote(a)
	}
	lines := strings.Split(string(b), "\n")
	n := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "ExecStart=") {
			lines[i] = "ExecStart=" + strings.Join(words, " ")
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("unit %s has %d ExecStart= lines, want 1", name, n)
	}
	return []byte(strings.Join(lines, "\n")), nil
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
