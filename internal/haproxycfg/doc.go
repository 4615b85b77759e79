// Package haproxycfg renders the HAProxy configuration that sends clients
// to the active node of a cluster: a PostgreSQL frontend (and one for the
// managed application when asked), backends whose servers are checked with
// GET /status over TLS against the cluster CA, and the check timings derived
// from the fencing timings (ChecksFor).
//
// It is pure: a Config in, text out. It does no I/O, asks no node and
// knows no profile; `understudy haproxy-config` and the dev cluster fill the
// Config from what they know and write the text where they need it.
package haproxycfg
