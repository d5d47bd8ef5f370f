// Package api is the contract of vdiskd's REST management API: the RPC
// table (every call's name, method, path, minimum role and argument
// struct), the records it answers with, roles and error codes.
//
// It holds no behaviour. The server (package mgmt) binds a handler to each
// declaration and builds its routes and role checks from the table; the CLI
// (cmd/vdiskctl) builds its subcommands from the same table; docs/api.md is
// generated from it. So a call is declared once.
package api
