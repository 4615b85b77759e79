// Package certs owns the cluster's internal certificate authority and
// everything built from it: node certificates, the TLS files on disk, Consul's
// TLS and gossip configuration, the join token, and the tls.Configs of the
// join API and its clients.
//
// It is pure Go (crypto/x509, crypto/ecdsa) and must not start processes,
// talk to Consul, or decide when to issue or renew: `cluster start`,
// `cluster join` and the check-runner call it and own those decisions. Time
// is always passed in, so tests can move it forward.
//
// # Decisions
//
// ECDSA P-256 everywhere. Consul (its own `consul tls` command generates
// P-256), Go, OpenSSL, Syncthing and every TLS stack a node talks to accept
// it. Ed25519 would be smaller and simpler, but it is not accepted by every
// TLS peer (some Consul/Envoy paths and older OpenSSL builds refuse Ed25519
// certificates), and RSA keys are slow to generate and large for no gain.
//
// The CA key goes to every node. DESIGN.md: "the CA moves with the cluster".
// Whichever node is active must be able to sign a joiner's certificate, and
// the cluster must survive the loss of the node that ran `cluster start`, so
// the CA cannot live on one machine. The price is that root on any node can
// mint certificates for the cluster; root on a node can already read the
// gossip key, the data and Consul's state, so this adds no new trust.
//
// File modes: keys (ca-key.pem, node-key.pem) and node.pem are 0600, owned by
// the uid/gid that runs the agents; ca.pem is 0644 because a CA certificate
// is public and tools run by other users (the CLI, curl) need it to verify
// the cluster. Files are replaced atomically (temp file, fsync, rename, fsync
// of the directory), so a reader sees the old file or the new one, never half
// of either.
//
// `server.<datacenter>.consul` is a SAN of every node certificate because
// every node runs a Consul server, and with verify_server_hostname Consul
// checks exactly that name on the server side of internal RPC. Without it a
// node certificate from our own CA would still be refused: the check exists
// so that a client certificate cannot pose as a server.
//
// "syncthing" is a SAN too: the node certificate is also the node's Syncthing
// identity, and Syncthing checks that a peer's certificate is valid for the
// name "syncthing" unless the device is configured with another certName.
// For the same reason node.pem holds the leaf alone, never a chain: Syncthing
// drops a peer that presents more than one certificate.
package certs
