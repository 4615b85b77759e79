// Package testenv starts the real dependencies of understudy for the third
// layer of its tests (see shared/STYLE.md): Consul agents, alone or as a
// cluster, and PostgreSQL primaries and streaming standbys. Each is a real
// process of the installed binary, its output streamed to t.Log with a
// "[name]" prefix and kept for a tail that is printed when the test fails,
// and each is stopped by its PID in t.Cleanup, together with the directories
// it used.
//
// It owns the waits that make such tests readable (Eventually, WaitFor), the
// choice of free loopback ports, and the quirks of running these tools from
// a test binary that may be root: PostgreSQL runs as the postgres OS user,
// from a directory under /tmp that user can reach.
//
// It must never be imported by non-test code: it calls t.Fatalf, starts
// processes nobody supervises and trusts every local connection. All traffic
// stays on loopback (127.0.0.0/8, where Linux answers on every address
// without any setup), so a test never reaches or exposes anything beyond the
// machine. A missing binary fails the test with the command that installs
// it; only `go test -short` skips these tests (RequireIntegration).
package testenv
