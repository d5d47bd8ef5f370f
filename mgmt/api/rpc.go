package api

import "github.com/vdiskd/vdiskd/mgmt/rpc"

// The call declarations are package rpc's; this surface's table is Table.
type (
	RPC         = rpc.RPC
	Decl[A any] = rpc.Decl[A]
	AuthKind    = rpc.AuthKind
	Arg         = rpc.Arg
	Source      = rpc.Source
	Validator   = rpc.Validator
)

// How callers authenticate, and where arguments come from.
const (
	AuthToken    = rpc.AuthToken
	AuthPassword = rpc.AuthPassword
	FromBody     = rpc.FromBody
	FromPath     = rpc.FromPath
	FromQuery    = rpc.FromQuery
)

// Table is the XenAPI-style REST surface's calls: the server mounts it,
// vdiskctl builds its commands from it, docs/api.md is generated from it.
var Table = rpc.NewTable("XenAPI REST")

func declare[A any](r RPC) *Decl[A] { return rpc.Declare[A](Table, r) }

// All returns every declared call, in declaration order.
func All() []*RPC { return Table.All() }

// Lookup finds a call by Name.
func Lookup(name string) *RPC { return Table.Lookup(name) }

// TypeName is an argument type as the reference shows it.
var TypeName = rpc.TypeName
