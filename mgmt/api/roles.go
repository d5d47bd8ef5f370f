package api

import "github.com/vdiskd/vdiskd/mgmt/auth"

// Role is one of XenAPI's six RBAC roles (package auth owns them).
type Role = auth.Role

// The roles, ascending.
const (
	ReadOnly     = auth.ReadOnly
	VMOperator   = auth.VMOperator
	VMAdmin      = auth.VMAdmin
	VMPowerAdmin = auth.VMPowerAdmin
	PoolOperator = auth.PoolOperator
	PoolAdmin    = auth.PoolAdmin
)

// Roles lists every role, ascending.
func Roles() []Role { return auth.Roles() }

// ParseRole accepts a role's name, case-insensitively.
func ParseRole(s string) (Role, error) { return auth.ParseRole(s) }
