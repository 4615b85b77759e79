// Package nodeapi is the handler-runner's HTTP API as its callers see it:
// the request and response types that cross the wire, and the one client of
// it (TLS with the cluster CA or a pinned one, a client certificate, basic
// auth, a timeout on every call, typed errors). The CLI, the peers'
// election and lease grants, the check-runner's guard and lifecycle's
// cluster start and join all talk to nodes through it. It also owns the
// operator's profile store (profiles.json): named lists of node API
// addresses, with the CA, client certificate and basic auth to reach them.
//
// It is a leaf: it may import internal/cluster, internal/config and certs,
// and must not import the handler-runner, the Consul client, pgx or
// Syncthing (deps_test.go checks), so that whatever talks to a node does
// not carry a daemon with it. It renders nothing: output is the CLI's job.
package nodeapi
