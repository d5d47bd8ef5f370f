package xenapi

import (
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

func init() {
	declare(
		&Message{Class: "session", Name: "login_with_password", Params: []string{"uname", "pwd", "version", "originator"},
			Optional: 2, NoSession: true, Summary: "Log in: answers the session ref (the last two parameters are optional)",
			Handle: login},
		&Message{Class: "session", Name: "logout", Role: auth.ReadOnly,
			Summary: "Log out: the session, and the NBD connections opened with it, end",
			Handle:  func(c *Ctx, _ []any) (any, error) { return "", c.S.opts.Auth.Logout(c.Token) }},
		&Message{Class: "session", Name: "get_this_host", Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "The host the session is on: this daemon",
			Handle:  func(c *Ctx, _ []any) (any, error) { return Ref(c.S.hostUUID()), nil }},
		&Message{Class: "session", Name: "get_this_user", Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "The session's user, as a subject ref (NULL: a local user)",
			Handle:  func(c *Ctx, _ []any) (any, error) { return NullRef, nil }},
		&Message{Class: "system", Name: "listMethods", NoSession: true, Summary: "Every message this server answers",
			Handle: func(*Ctx, []any) (any, error) {
				names := MethodNames()
				out := make([]any, len(names))
				for i, n := range names {
					out[i] = n
				}
				return out, nil
			}},
	)
}

// login checks a user's password and opens a session: a vdiskd token,
// whose ref is OpaqueRef:<token>. XenAPI.py sends two parameters, the
// xen-api client four (version, originator), both are taken.
func login(c *Ctx, args []any) (any, error) {
	user, err := str(args, 0, "uname")
	if err != nil {
		return nil, err
	}
	pw, err := str(args, 1, "pwd")
	if err != nil {
		return nil, err
	}
	p, err := c.S.opts.Auth.CheckLogin(user, pw)
	if err != nil {
		if f, ok := fault.As(err); ok && f.Kind == fault.TooMany {
			return nil, f
		}
		return nil, xenError(fault.CodeAuthFailed, user, "Authentication failure")
	}
	t, err := c.S.opts.Auth.IssueToken(p)
	if err != nil {
		return nil, err
	}
	return Ref(t.Token), nil
}
