// Package devcluster is `understudy dev`: a complete local cluster on
// loopback, for trying understudy and for scripts that drive failures. Each
// node gets a loopback address of its own (127.0.0.11, .12, ...), its own
// Consul server, PostgreSQL, Syncthing and daemons, all under one
// directory, built by the same code as `cluster start` and `cluster join`
// (TLS everywhere, certificate authentication in PostgreSQL); an HAProxy in
// front sends PostgreSQL traffic to the node whose /status answers 200.
//
// The processes are supervised programs that outlive the command; their
// PIDs are read from the nodes' services directories, and `dev down` stops
// them by PID. It must never be used for anything but a local cluster: its
// configuration adds a pg_hba line that trusts loopback, so that the demo
// writes through HAProxy without a certificate.
package devcluster
