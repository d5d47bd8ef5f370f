// Package mgmt is vdiskd's management plane, assembled: it opens the
// management database (mgmt/kv, importing an older mgmt.json once), starts
// the services (mgmt/volume, mgmt/auth, mgmt/task) and mounts the API
// surfaces (mgmt/xenrest; the NBD exports of mgmt/nbdexport) on one
// router built by mgmt/rpc. It holds no handlers and owns no invariant of
// its own; docs/architecture.md says which package does.
package mgmt
