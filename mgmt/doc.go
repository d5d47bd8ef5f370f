// Package mgmt is vdiskd's REST management API on gorilla/mux: XenAPI's VDI
// calls, OpenvStorage's vPools, users, tokens and tasks.
//
// Every call is declared once in package api (name, method, path, minimum
// role, argument struct); routes.go binds a handler to each declaration and
// the router, role checks and docs/api.md all come from that table.
//
// Where things live: a VDI is a block-store volume whose XenAPI fields ride
// in the volume's opaque attributes (vdiAttrs), so a VDI and its record are
// created, snapshotted and destroyed in one store batch. vPools, users and
// tokens are small and rarely written; they live in <data-dir>/mgmt.json,
// replaced atomically (state.go).
package mgmt
