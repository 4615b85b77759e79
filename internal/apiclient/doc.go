// Package apiclient is the operator's client of the handler-runner HTTP API:
// it finds the active node among the nodes of a cluster profile, asks any
// node that answers for the cluster's state and history, and sends a
// switchover to the active node. It also owns the profile store
// (profiles.json): named lists of node API addresses, with the CA and the
// basic auth file to reach them.
//
// It speaks only HTTP to the nodes; it must not import the Consul client or
// reach into Consul itself, and it renders nothing: output is the CLI's job.
package apiclient
