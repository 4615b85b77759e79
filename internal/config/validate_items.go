package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func (v *validator) services(svcs []Service) {
	first := map[string]string{} // name -> key of its first block
	for i, s := range svcs {
		key := fmt.Sprintf("service.%d", i)
		path := "service." + s.Name
		display := "service " + quote(s.Name)
		v.name(key, "service", s.Name, `"rabbitmq"`, false)
		if k, dup := first[s.Name]; dup {
			v.add(key, "duplicate service %s%s; rename one or merge them", quote(s.Name), v.firstAt(k))
			continue
		}
		first[s.Name] = key
		commands := len(s.Start) > 0 || len(s.Stop) > 0 || len(s.Status) > 0
		// `command = []` reads as no list at all; it still says which
		// backend the operator meant, so it is reported as empty.
		process := s.Command != nil || v.written(key+".command")
		switch {
		case process && s.SystemdUnit != "":
			v.add(key, "%s has both command and systemd_unit; keep command for a program understudy supervises, or systemd_unit for a unit systemd runs, not both",
				display)
		case process && commands:
			v.add(key, "%s has both command and start/stop/status; keep command for a program understudy supervises, or the three commands that manage it, not both",
				display)
		case s.SystemdUnit != "" && commands:
			v.add(key, "%s has both systemd_unit and start/stop/status; keep systemd_unit or the commands, not both", display)
		case s.SystemdUnit == "" && !commands && !process:
			v.add(key, `%s has no command, systemd_unit or start/stop/status; add command = ["/path/to/program", "arg"] for a program understudy supervises, systemd_unit = "%s.service", or the three commands`,
				display, s.Name)
		case process:
			v.processCommand(key, display, path, s.Command)
		case s.SystemdUnit != "":
			if strings.ContainsAny(s.SystemdUnit, "/ \t") {
				v.add(key+".systemd_unit", `%s.systemd_unit = %s is not a unit name; write the name systemctl shows, like "rabbitmq-server.service"`,
					path, quote(s.SystemdUnit))
			}
		default:
			v.command(key, display, "start", s.Start, "a command that starts it")
			v.command(key, display, "stop", s.Stop, "a command that stops it")
			v.command(key, display, "status", s.Status, "a command that exits 0 while it runs")
		}
	}
}

// firstAt says where the first of two duplicates is, when there is a file.
func (v *validator) firstAt(key string) string {
	if v.src == nil {
		return ""
	}
	return fmt.Sprintf(" (the first is on line %d)", v.src.line(key))
}

// processCommand checks the argv of a supervised service.
func (v *validator) processCommand(key, display, path string, argv []string) {
	const example = `["/opt/manager/bin/mgmtworker", "--config", "/etc/mgmtworker.conf"]`
	switch {
	case len(argv) == 0:
		v.add(key+".command", "%s.command = [] is empty; write the program and its arguments, like command = %s", path, example)
	case strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]):
		// A bare name is looked up in PATH; "bin/x" would be relative to the
		// daemon's working directory, "/" under systemd.
		v.add(key+".command", `%s.command starts with %s, a relative path; write the program's absolute path, like "/opt/manager/bin/mgmtworker"`,
			path, quote(argv[0]))
	default:
		v.command(key, display, "command", argv, "the program to run and supervise")
	}
}

// written says whether the file sets key, even to a value that reads as
// empty.
func (v *validator) written(key string) bool {
	if v.src == nil {
		return false
	}
	_, ok := v.src.lines[key]
	return ok
}

// command checks one argv of an exec service.
func (v *validator) command(key, display, field string, argv []string, what string) {
	switch {
	case len(argv) == 0:
		v.add(key, `%s has no %s; add %s = ["/path/to/program", "arg"] (%s)`, display, field, field, what)
	case strings.TrimSpace(argv[0]) == "":
		v.add(key+"."+field, `%s: %s starts with an empty program; write the program first, like %s = ["/path/to/program", "arg"]`,
			display, field, field)
	}
}

func (v *validator) files(c *Config) {
	fs := c.Files
	firstName := map[string]string{}
	var paths []filesPath
	for i, f := range fs {
		key := fmt.Sprintf("files.%d", i)
		v.name(key, "files", f.Name, `"resources"`, false)
		if f.MaxOutOfSync < 0 {
			v.add(key+".max_out_of_sync", "files.%s.max_out_of_sync = %d is negative; write a size like \"10MB\", or \"0\" to warn about any byte missing", f.Name, f.MaxOutOfSync)
		}
		if f.Settle < 0 {
			v.add(key+".settle", "files.%s.settle = %s is negative; write a duration like \"60s\"", f.Name, quote(formatDuration(f.Settle)))
		}
		if k, dup := firstName[f.Name]; dup {
			v.add(key, "duplicate files %s%s; rename one or merge them", quote(f.Name), v.firstAt(k))
			continue
		}
		firstName[f.Name] = key
		if f.Path == "" {
			v.add(key+".path", `missing required field path in files %s; add path = "/opt/manager/resources" to the block`, quote(f.Name))
			continue
		}
		if !filepath.IsAbs(f.Path) {
			v.absPath(key+".path", f.Path, `"/opt/manager/resources"`, true)
			continue
		}
		clean := filepath.Clean(f.Path)
		// One Syncthing folder inside another would be mirrored twice, with
		// two owners; inside the data directory it would mirror PostgreSQL's
		// files or understudy's own state.
		overlap := false
		for _, o := range paths {
			if within(clean, o.path) || within(o.path, clean) {
				what := "is inside"
				switch {
				case clean == o.path:
					what = "is the path of"
				case within(o.path, clean):
					what = "contains"
				}
				v.add(key+".path", "files.%s.path = %s %s files %s%s; mirror each directory once, in one block",
					f.Name, quote(f.Path), what, quote(o.name), v.firstAt(o.key))
				overlap = true
				break
			}
		}
		for _, d := range []struct{ field, dir string }{{"node.data_dir", c.Node.DataDir}, {"postgres.data_dir", c.Postgres.DataDir}} {
			if d.dir == "" || !filepath.IsAbs(d.dir) {
				continue
			}
			if dd := filepath.Clean(d.dir); within(clean, dd) || within(dd, clean) {
				v.add(key+".path", "files.%s.path = %s overlaps %s = %s; mirror a directory outside understudy's and PostgreSQL's data",
					f.Name, quote(f.Path), d.field, quote(d.dir))
				overlap = true
			}
		}
		if !overlap {
			paths = append(paths, filesPath{key, f.Name, clean})
		}
	}
	if len(fs) > 0 {
		st := c.Syncthing
		v.port("syncthing.port", st.Port, "22000")
		v.port("syncthing.api_port", st.APIPort, "8384")
		v.absPath("syncthing.binary", st.Binary, `"/usr/local/bin/syncthing"`, false)
		if st.Port == st.APIPort {
			v.addAt([]string{"syncthing.api_port", "syncthing.port"}, "syncthing.api_port = %d is syncthing.port too; write another port, like 8384", st.APIPort)
		}
		for _, p := range []struct {
			field string
			port  int
		}{{"syncthing.port", st.Port}, {"syncthing.api_port", st.APIPort}} {
			if p.port == c.Postgres.Port {
				v.addAt([]string{p.field, "postgres.port"}, "%s = %d is postgres.port too; write another port", p.field, p.port)
			}
			if _, lp, err := net.SplitHostPort(c.API.Listen); err == nil && lp == strconv.Itoa(p.port) {
				v.addAt([]string{p.field, "api.listen"}, "%s = %d is api.listen's port too; write another port", p.field, p.port)
			}
		}
	}
}

type filesPath struct{ key, name, path string }

// within reports whether path is dir or below it; both are clean.
func within(path, dir string) bool {
	if path == dir {
		return true
	}
	return strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// CheckPaths checks what Validate cannot without looking at the machine:
// each files path is an existing directory. `config check`, the daemons and
// `cluster start`/`join` run it; a Syncthing folder on a missing path would
// look in sync with nothing in it.
func (c *Config) CheckPaths() error {
	v := &validator{src: c.src, file: c.Path}
	if c.src != nil {
		v.file = c.src.file
	}
	for i, f := range c.Files {
		if f.Path == "" || !filepath.IsAbs(f.Path) {
			continue
		}
		key := fmt.Sprintf("files.%d.path", i)
		fi, err := os.Stat(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			v.add(key, "files.%s.path = %s does not exist; create the directory (mkdir -p %s) or correct the path", f.Name, quote(f.Path), f.Path)
		case err != nil:
			v.add(key, "files.%s.path = %s cannot be read: %v", f.Name, quote(f.Path), err)
		case !fi.IsDir():
			v.add(key, "files.%s.path = %s is not a directory; a files block mirrors a directory, write the directory that holds it", f.Name, quote(f.Path))
		}
	}
	return asError(v.problems)
}

// name checks a name that becomes part of Consul keys, a check ID or a
// Syncthing folder ID. For a block label, key is the block's key.
func (v *validator) name(key, block, name, example string, field bool) {
	what := block + " name"
	if field {
		what = key + " ="
	}
	switch {
	case name == "" && field:
		v.add(key, "missing required field %s; add name = %s to the %s block", key, example, block)
	case !validName(name):
		if s := sanitizeName(name); s != "" {
			example = quote(s)
		}
		v.add(key, "%s %s is not a valid name; use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-', like %s",
			what, quote(name), example)
	}
}

// host checks a host name or IP address written without a port.
func (v *validator) host(key, host string) {
	if validHost(host) {
		return
	}
	fix := `write an IP address or a host name, like "10.0.0.5"`
	if h, _, err := net.SplitHostPort(host); err == nil && validHost(h) {
		fix = fmt.Sprintf("write the host without a port: %s", quote(h))
	}
	v.add(key, "%s = %s is not a host; %s", key, quote(host), fix)
}

// absPath checks a path: daemons run from "/", so a relative path would
// silently mean something else under systemd than in a shell.
func (v *validator) absPath(key, path, example string, required bool) {
	switch {
	case path == "" && required:
		v.add(key, "%s is empty; write a path, like %s, or remove the line to use the default", key, example)
	case path != "" && !filepath.IsAbs(path):
		v.add(key, `%s = %s is not an absolute path; write a path from "/", like %s`, key, quote(path), example)
	}
}

func (v *validator) port(key string, port int, example string) {
	if port < 1 || port > 65535 {
		v.add(key, "%s = %d is not a port; write a number from 1 to 65535, like %s", key, port, example)
	}
}

// validName: lowercase DNS label, because node names are Consul node-like
// keys and service and files names end up in IDs that other tools parse.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// sanitizeName proposes the valid name closest to s, or "".
func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-")
	}
	return out
}

func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// validConsulAddress accepts host:port and, as the Consul API client does,
// unix:///path/to/socket.
func validConsulAddress(s string) bool {
	if path, ok := strings.CutPrefix(s, "unix://"); ok {
		return filepath.IsAbs(path)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || !validHost(host) {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func validKVPrefix(s string) bool {
	if strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

func (v *validator) hooks(hs []Hook) {
	first := map[string]string{}
	for i, h := range hs {
		key := fmt.Sprintf("promote_hook.%d", i)
		display := "promote_hook " + quote(h.Name)
		v.name(key, "promote_hook", h.Name, `"notify"`, false)
		if k, dup := first[h.Name]; dup {
			v.add(key, "duplicate promote_hook %s%s; rename one or merge them", quote(h.Name), v.firstAt(k))
			continue
		}
		first[h.Name] = key
		v.command(key, display, "command", h.Command, "the program to run on promotion")
		if h.Timeout < time.Second || h.Timeout > time.Hour {
			v.add(key+".timeout", `promote_hook.%s.timeout = %v is out of range; write a duration from "1s" to "1h", like "30s"`, h.Name, h.Timeout)
		}
	}
}
