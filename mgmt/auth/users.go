package auth

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"golang.org/x/crypto/bcrypt"
)

// Users lists the users by name.
func (s *Service) Users() []User {
	s.mu.RLock()
	out := make([]User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, *u)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b User) int { return cmp.Compare(a.Username, b.Username) })
	return out
}

// User reads one user.
func (s *Service) User(name string) (User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u := s.users[name]
	if u == nil {
		return User{}, fault.Missing("user", name)
	}
	return *u, nil
}

// CreateUser adds a user with a role.
func (s *Service) CreateUser(name, password string, role Role) (User, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost)
	if err != nil {
		return User{}, fault.Internalf(nil, "hashing the password: %v", err)
	}
	s.change.Lock()
	defer s.change.Unlock()
	if _, err := s.User(name); err == nil {
		return User{}, fault.Conflicts(fault.CodeNameTaken, []string{"user", name}, "user %q exists", name)
	}
	u := &User{Username: name, Hash: string(hash), Role: role, Created: s.opts.Now().UTC()}
	if err := s.opts.DB.Put(userPrefix+name, u); err != nil {
		return User{}, fault.Internalf(nil, "saving user %s: %v", name, err)
	}
	s.mu.Lock()
	s.users[name] = u
	s.mu.Unlock()
	return *u, nil
}

// UpdateUser changes a user's password, role or both (nil: unchanged). A
// new password revokes the user's tokens; a role below NBDRole ends the
// NBD connections its tokens opened.
func (s *Service) UpdateUser(name string, password *string, role *Role) (User, error) {
	var hash []byte
	if password != nil {
		h, err := bcrypt.GenerateFromPassword([]byte(*password), s.opts.BcryptCost)
		if err != nil {
			return User{}, fault.Internalf(nil, "hashing the password: %v", err)
		}
		hash = h
	}
	s.change.Lock()
	defer s.change.Unlock()
	old, err := s.User(name)
	if err != nil {
		return User{}, err
	}
	u := old
	if role != nil {
		if old.Role == PoolAdmin && *role != PoolAdmin && s.poolAdmins() == 1 {
			return User{}, lastAdmin(name)
		}
		u.Role = *role
	}
	if hash != nil {
		u.Hash = string(hash)
	}
	if err := s.opts.DB.Put(userPrefix+name, &u); err != nil {
		return User{}, fault.Internalf(nil, "saving user %s: %v", name, err)
	}
	s.mu.Lock()
	s.users[name] = &u
	s.mu.Unlock()
	if hash != nil {
		if err := s.revoke(func(t *token) bool { return t.Username == name }, ErrPasswordReset); err != nil {
			return User{}, err
		}
	}
	if u.Role < s.opts.NBDRole {
		// The tokens stay good for REST at the new role; the NBD
		// connections they opened needed more.
		s.mu.Lock()
		for _, t := range s.byUser[name] {
			t.endNBD(roleLowered{s.opts.NBDRole})
		}
		s.mu.Unlock()
	}
	return u, nil
}

// DeleteUser removes a user (not the last pool-admin) and revokes its
// tokens.
func (s *Service) DeleteUser(name string) error {
	s.change.Lock()
	defer s.change.Unlock()
	u, err := s.User(name)
	if err != nil {
		return err
	}
	if u.Role == PoolAdmin && s.poolAdmins() == 1 {
		return lastAdmin(name)
	}
	// Out of memory first, so nothing it held works a moment longer
	// whatever the disk says; a restart drops tokens of unknown users.
	s.mu.Lock()
	delete(s.users, name)
	s.mu.Unlock()
	rerr := s.revoke(func(t *token) bool { return t.Username == name }, ErrUserDeleted)
	if err := s.opts.DB.Delete(userPrefix + name); err != nil {
		return fault.Internalf(nil, "deleting user %s: %v", name, err)
	}
	return rerr
}

// roleLowered ends the NBD connections of a user lowered below the role
// NBD needs; it is ErrRoleLowered.
type roleLowered struct{ need Role }

func (e roleLowered) Error() string {
	return fmt.Sprintf("the token's user no longer has the %s role NBD needs", e.need)
}

func (e roleLowered) Is(target error) bool { return target == ErrRoleLowered }

func lastAdmin(name string) *fault.Error {
	return fault.Conflicts(fault.CodeLastAdmin, []string{name}, "%s is the last pool-admin", name)
}

func (s *Service) poolAdmins() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, u := range s.users {
		if u.Role == PoolAdmin {
			n++
		}
	}
	return n
}
