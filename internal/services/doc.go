// Package services starts, stops and asks the state of the services a node
// runs beside PostgreSQL: systemd units through systemd's D-Bus API
// (go-systemd), commands given in the configuration (exec), or a program
// it runs and supervises itself (a supervised process: restarted when it
// exits, its pid, state and output kept in files of a state directory so
// that another daemon on the node can ask whether it runs).
//
// It acts on one service at a time and never decides which services should
// run: that follows from the node's role, which the daemons own.
package services
