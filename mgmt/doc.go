// Package mgmt will hold the REST management API: one RPC table driving the
// XenAPI-shaped VDI routes, the OVS vPool routes, role checks and the
// generated API reference.
package mgmt
