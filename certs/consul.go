package certs

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// ConsulHTTPSPort is Consul's conventional port of the agent's HTTPS API,
// what ConsulTLSHCL is given on a production node. The plain HTTP API is
// switched off there, so clients use "https://127.0.0.1:8501" with ca.pem and
// the node certificate as client certificate.
const ConsulHTTPSPort = 8501

// GossipKey returns a new Consul gossip encryption key: 32 random bytes,
// base64 (standard, padded), exactly what `consul keygen` prints.
func GossipKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ConsulTLSHCL returns the TLS and gossip configuration of a Consul server
// agent, as HCL to drop into its config directory (say tls.hcl); it holds the
// gossip key, so write it 0600 like a key.
//
// What it sets and why:
//   - tls.defaults: our CA, the node certificate, and verify_incoming plus
//     verify_outgoing, so every RPC and HTTPS connection, in or out, is
//     mutually authenticated against the cluster CA (DESIGN: client
//     certificates for the API).
//   - tls.internal_rpc.verify_server_hostname: a server must present
//     "server.<dc>.consul", which IssueNode puts in every node certificate.
//     Without it any certificate of the CA (a CLI's, say) could act as a
//     server.
//   - encrypt with encrypt_verify_incoming/outgoing: gossip is encrypted
//     and unencrypted gossip is refused.
//   - ports: HTTPS on httpsPort and the plain HTTP API off, which
//     would otherwise serve the API to anyone on loopback without a
//     certificate and make verify_incoming pointless.
func ConsulTLSHCL(p Paths, gossipKey string, httpsPort int) string {
	var b strings.Builder
	b.WriteString("# Written by understudy (certs.ConsulTLSHCL): TLS and gossip encryption.\n")
	b.WriteString("# Rewritten when the node joins or its certificate is renewed; do not edit.\n\n")
	fmt.Fprintf(&b, "encrypt                 = %s\n", hclString(gossipKey))
	b.WriteString("encrypt_verify_incoming = true\n")
	b.WriteString("encrypt_verify_outgoing = true\n\n")
	b.WriteString("tls {\n")
	b.WriteString("  defaults {\n")
	fmt.Fprintf(&b, "    ca_file         = %s\n", hclString(p.CA))
	fmt.Fprintf(&b, "    cert_file       = %s\n", hclString(p.Cert))
	fmt.Fprintf(&b, "    key_file        = %s\n", hclString(p.Key))
	b.WriteString("    verify_incoming = true\n")
	b.WriteString("    verify_outgoing = true\n")
	b.WriteString("    tls_min_version = \"TLSv1_2\"\n")
	b.WriteString("  }\n")
	b.WriteString("  internal_rpc {\n")
	b.WriteString("    verify_server_hostname = true\n")
	b.WriteString("  }\n")
	b.WriteString("}\n\n")
	b.WriteString("ports {\n")
	b.WriteString("  http  = -1\n")
	fmt.Fprintf(&b, "  https = %d\n", httpsPort)
	b.WriteString("}\n")
	return b.String()
}

// hclString quotes s for Consul's configuration parser (HCL 1, which has no
// templates and unquotes strings the way Go does).
func hclString(s string) string {
	return strconv.Quote(s)
}
