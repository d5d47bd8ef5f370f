package auth

import (
	"fmt"
	"strings"
)

// Role is one of XenAPI's six RBAC roles. Roles are ordered: each includes
// every permission of the roles below it.
type Role int

// The roles, ascending.
const (
	ReadOnly Role = iota + 1
	VMOperator
	VMAdmin
	VMPowerAdmin
	PoolOperator
	PoolAdmin
)

var roleNames = [...]string{
	ReadOnly:     "read-only",
	VMOperator:   "vm-operator",
	VMAdmin:      "vm-admin",
	VMPowerAdmin: "vm-power-admin",
	PoolOperator: "pool-operator",
	PoolAdmin:    "pool-admin",
}

// Roles lists every role, ascending.
func Roles() []Role {
	return []Role{ReadOnly, VMOperator, VMAdmin, VMPowerAdmin, PoolOperator, PoolAdmin}
}

func (r Role) String() string {
	if r < ReadOnly || r > PoolAdmin {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// Allows reports whether a caller holding r may make a call that needs min.
func (r Role) Allows(min Role) bool { return r >= min }

// ParseRole accepts a role's name, case-insensitively.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if strings.EqualFold(s, r.String()) {
			return r, nil
		}
	}
	names := make([]string, 0, len(roleNames))
	for _, r := range Roles() {
		names = append(names, r.String())
	}
	return 0, fmt.Errorf("unknown role %q (one of %s)", s, strings.Join(names, ", "))
}

// MarshalText writes the role's name.
func (r Role) MarshalText() ([]byte, error) {
	if r < ReadOnly || r > PoolAdmin {
		return nil, fmt.Errorf("invalid role %d", int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads a role's name.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
