package xenrest

import (
	"net/http"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Authenticate establishes who is calling. Password calls take Basic
// user:password; every other call takes a token, as Bearer or as the
// password of Basic user:token.
func (s *Surface) Authenticate(r *http.Request, call *rpc.RPC) (auth.Principal, error) {
	if call.Auth == api.AuthPassword {
		user, pw, ok := r.BasicAuth()
		if !ok {
			return auth.Principal{}, unauthorized(api.CodeAuthFailed, "send Basic user:password to obtain a token")
		}
		return s.auth.CheckLogin(user, pw)
	}
	authz := r.Header.Get("Authorization")
	var tok, basicUser string
	switch {
	case authz == "":
		return auth.Principal{}, unauthorized(api.CodeSessionInvalid, "no credentials: send Authorization: Bearer <token> (POST /api/token gives one)")
	case strings.HasPrefix(authz, "Bearer "):
		tok = strings.TrimSpace(strings.TrimPrefix(authz, "Bearer "))
	default:
		u, p, ok := r.BasicAuth()
		if !ok {
			return auth.Principal{}, unauthorized(api.CodeSessionInvalid, "unsupported Authorization scheme: use Bearer <token> or Basic user:token")
		}
		tok, basicUser = p, u
	}
	return s.auth.Authenticate(tok, basicUser)
}

func unauthorized(code, msg string) *api.Error {
	return fault.New(fault.Unauthenticated, code, nil, "%s", msg)
}

func (s *Surface) login(c *rpc.Call, _ *api.NoArgs) (any, error) {
	return s.auth.IssueToken(c.Principal)
}

func (s *Surface) logout(c *rpc.Call, _ *api.NoArgs) (any, error) {
	return nil, s.auth.Logout(c.Token)
}

func userRecord(u auth.User) api.User {
	return api.User{Username: u.Username, Role: u.Role, Created: u.Created}
}

func (s *Surface) userList(c *rpc.Call, a *api.UserListArgs) (any, error) {
	users := s.auth.Users()
	out := make([]api.User, 0, len(users))
	for _, u := range users {
		out = append(out, userRecord(u))
	}
	return page(out, a.PageArgs, "username")
}

func (s *Surface) userGet(c *rpc.Call, a *api.UserRef) (any, error) {
	u, err := s.auth.User(a.Username)
	if err != nil {
		return nil, err
	}
	return userRecord(u), nil
}

func (s *Surface) userCreate(c *rpc.Call, a *api.UserCreateArgs) (any, error) {
	role, _ := api.ParseRole(a.Role)
	u, err := s.auth.CreateUser(a.Username, a.Password, role)
	if err != nil {
		return nil, err
	}
	s.log.Info("user created", "user", a.Username, "role", role, "by", c.User)
	return rpc.Created{Location: "/api/users/" + u.Username, Body: userRecord(u)}, nil
}

func (s *Surface) userUpdate(c *rpc.Call, a *api.UserUpdateArgs) (any, error) {
	var role *api.Role
	if a.Role != nil {
		r, _ := api.ParseRole(*a.Role)
		role = &r
	}
	u, err := s.auth.UpdateUser(a.Username, a.Password, role)
	if err != nil {
		return nil, err
	}
	s.log.Info("user updated", "user", u.Username, "role", u.Role, "password_changed", a.Password != nil, "by", c.User)
	return userRecord(u), nil
}

func (s *Surface) userDelete(c *rpc.Call, a *api.UserRef) (any, error) {
	if err := s.auth.DeleteUser(a.Username); err != nil {
		return nil, err
	}
	s.log.Info("user deleted", "user", a.Username, "by", c.User)
	return nil, nil
}
