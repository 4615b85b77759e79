// Package config owns the node's configuration file,
// /etc/understudy/understudy.hcl: its schema (the blocks cluster, node,
// consul, postgres, checks, api, service "NAME" and files "NAME" and their
// fields), the defaults, and validation, including the rules between fields.
//
// Load and Parse return either a valid *Config or an *Error that lists every
// problem as "FILE:LINE: what is wrong; what to write instead", so that a
// daemon can refuse to start with a message an operator can act on. HCL
// renders a Config back into a file that parses to the same Config.
//
// It must not do I/O beyond reading the one file: it does not check that
// paths exist, resolve host names, or talk to Consul or PostgreSQL. What
// depends on the machine or the cluster is checked by the code that uses it.
package config
