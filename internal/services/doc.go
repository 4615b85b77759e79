// Package services starts, stops and asks the state of the services a node
// runs beside PostgreSQL: systemd units through systemd's D-Bus API
// (go-systemd), or commands given in the configuration (exec).
//
// It acts on one service at a time and never decides which services should
// run: that follows from the node's role, which the daemons own.
package services
