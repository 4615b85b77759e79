# understudy's configuration on this node: /etc/understudy/understudy.hcl.
#
# An example, every line commented out: uncomment and edit what this node
# needs, then check it with
#
#   understudy config check --config /etc/understudy/understudy.hcl
#
# which prints every field with the default it takes. Then create the
# cluster on one node (understudy cluster start) and join the others
# (understudy cluster join); those commands install and enable the systemd
# units the package ships (the package itself enables none).
# Documentation: man understudy, /usr/share/doc/understudy/README.md.gz.

# cluster {
#   name      = "prod"          # the same on every node
#   kv_prefix = "understudy"    # Consul KV prefix of the cluster's state
# }

# node {
#   name     = "mgr-1"          # unique in the cluster
#   address  = "10.0.0.5"       # where peers reach this node
#   data_dir = "/var/lib/understudy"
#   priority = 100              # higher wins a tie in the choice of the next active
# }

# TLS everywhere: Consul over HTTPS with the certificates cluster start and
# join write under node.data_dir/tls. outage: while Consul has no leader but
# the nodes reach each other, "failsafe" keeps the active serving as long as
# every other member confirms it; "fence" stops its writes after a leader
# election's worth (README, "Fencing").
# consul {
#   scheme = "https"
#   outage = "failsafe"
# }

# postgres {
#   bin_dir  = "/usr/lib/postgresql/15/bin"
#   data_dir = "/var/lib/understudy/postgres"
#   port     = 5432
# }

# api {
#   listen = ":8008"            # /status for HAProxy, the node API
# }

# A service run on the active node only (a systemd unit of this host):
# service "app" {
#   systemd_unit = "app.service"
#   active_only  = true
# }

# A directory mirrored from the active node to the standbys by Syncthing:
# files "uploads" {
#   path = "/srv/app/uploads"
# }
