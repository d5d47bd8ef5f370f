package mgmt

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/nbd"
)

// An NBD export opened with a token is withdrawn (its context ends, with
// the reason as the cause) when the token stops being good enough for
// NBD, and only the connections of that token are.
func TestNBDSessionEndsWithItsToken(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "disk"})
	ex := e.s.NBDExports(NBDAuthToken)
	open := func(token string) context.Context {
		t.Helper()
		x, _, err := ex.Open(&nbd.Conn{}, exportName(v.UUID, token))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		r, ok := x.(nbd.Revocable)
		if !ok {
			t.Fatalf("%T is not nbd.Revocable", x)
		}
		return r.Context()
	}
	live := func(what string, ctx context.Context) {
		t.Helper()
		if ctx.Err() != nil {
			t.Fatalf("%s: the session ended (%v)", what, context.Cause(ctx))
		}
	}
	ended := func(what string, ctx context.Context, why error) {
		t.Helper()
		if ctx.Err() == nil {
			t.Fatalf("%s: the session goes on", what)
		}
		if !errors.Is(context.Cause(ctx), why) {
			t.Fatalf("%s: ended because %v, want %v", what, context.Cause(ctx), why)
		}
	}

	t1 := e.login("admin", adminPassword)
	t2 := e.login("admin", adminPassword)
	a, b, c := open(t1), open(t1), open(t2)
	if a != b {
		t.Error("two connections of one token watch different contexts: a revocation would be a cancel per connection")
	}
	live("t1", a)

	// Logout ends the token's connections, not the same user's others.
	e.must(http.StatusNoContent, "DELETE", "/api/token", t1, nil, nil)
	ended("t1 after DELETE /api/token", a, auth.ErrTokenRevoked)
	live("t2 after t1's logout", c)

	// A role lowered below vm-admin ends the connections; the token goes
	// on for what the new role may do over REST.
	e.must(http.StatusCreated, "POST", "/api/users", e.admin, map[string]any{"username": "op", "password": "op-password", "role": "vm-admin"}, nil)
	op := e.login("op", "op-password")
	o := open(op)
	e.must(http.StatusOK, "PATCH", "/api/users/op", e.admin, map[string]any{"role": "vm-operator"}, nil)
	ended("op after its role was lowered", o, auth.ErrRoleLowered)
	e.must(http.StatusOK, "GET", "/api/vdis", op, nil, nil)
	if _, _, err := ex.Open(&nbd.Conn{}, exportName(v.UUID, op)); err == nil {
		t.Fatal("a vm-operator token opened an export")
	}
	// Raised again, the same token opens a new session; deleting the user
	// ends it.
	e.must(http.StatusOK, "PATCH", "/api/users/op", e.admin, map[string]any{"role": "vm-admin"}, nil)
	o2 := open(op)
	live("op raised again", o2)
	e.must(http.StatusNoContent, "DELETE", "/api/users/op", e.admin, nil, nil)
	ended("op after its user was deleted", o2, auth.ErrUserDeleted)

	// A new password revokes every token of the user.
	e.must(http.StatusCreated, "POST", "/api/users", e.admin, map[string]any{"username": "pw", "password": "pw-password", "role": "vm-admin"}, nil)
	p := open(e.login("pw", "pw-password"))
	e.must(http.StatusOK, "PATCH", "/api/users/pw", e.admin, map[string]any{"password": "another-password"}, nil)
	ended("pw after its password changed", p, auth.ErrPasswordReset)
	live("t2 through all of it", c)

	// With --nbd-auth=none there is no token and nothing to end.
	x, _, err := e.s.NBDExports(NBDAuthNone).Open(&nbd.Conn{}, v.UUID)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if ctx := x.(nbd.Revocable).Context(); ctx.Done() != nil {
		t.Fatal("an export without a token can be withdrawn")
	}
}

// Expiry is a deadline on the session, so it needs no sweep and no
// request: the connection ends when the token does, by the real clock.
// The server's clock (fixed in tests) sets how long is left; whatever
// notices the expiry first by that clock ends the session too.
func TestNBDSessionExpires(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "disk"})
	tok := e.login("admin", adminPassword)
	x, _, err := e.s.NBDExports(NBDAuthToken).Open(&nbd.Conn{}, exportName(v.UUID, tok))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx := x.(nbd.Revocable).Context()
	deadline, ok := ctx.Deadline()
	if want := time.Now().Add(e.s.opts.TokenTTL); !ok || deadline.Sub(want).Abs() > time.Minute {
		t.Fatalf("the session's deadline is %v (set: %v), want about %v", deadline, ok, want)
	}
	e.advance(e.s.opts.TokenTTL + time.Second)
	if ctx.Err() != nil {
		t.Fatal("the session ended before anything noticed the expiry")
	}
	e.login("admin", adminPassword) // a login sweeps expired tokens
	if !errors.Is(context.Cause(ctx), auth.ErrTokenExpired) {
		t.Fatalf("after the sweep the session ended with %v, want %v", context.Cause(ctx), auth.ErrTokenExpired)
	}
}
