// Package rpc is the mechanism every API surface of vdiskd is built on:
// a surface declares its calls once, in a Table (name, method, path,
// minimum role, argument struct, docs), binds a handler to each, and
// mounts them on the daemon's one HTTP router. Routes, role checks,
// argument decoding, the generated reference and vdiskctl's commands all
// come from the declarations.
//
// What differs between surfaces is behind the Surface interface: how a
// caller authenticates (XenAPI REST: Bearer token; Cinder: X-Auth-Token;
// kvol: Basic on every call; vStats: vmware-api-session-id), how
// arguments travel (plain JSON members, Cinder's envelopes, XenAPI's
// positional JSON-RPC/XML-RPC params), and how errors, results and tasks
// are encoded (XenAPI REST's {"error":{...}} and 202 + Location:
// /api/tasks/{id}; Cinder's {"itemNotFound":{...}}; kvol's 204 on no
// data). Handlers return values and errors from the services (package
// fault); they never write to the response themselves.
//
// Surfaces never import each other; the services under them never import
// this package or net/http (internal/deptest checks both).
package rpc
