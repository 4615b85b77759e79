// Package checkrunner is the check-runner daemon: every interval it looks at
// the node (PostgreSQL, the configured services, the local Consul agent),
// reports each health check as a TTL check of the node's `understudy` service
// in Consul, and publishes the node's member record.
//
// Consul's health of these checks is what the handler-runner's session is
// bound to, so a failing check here is what starts a failover. The package
// observes and reports; it never changes the node's role or touches a process.
package checkrunner
