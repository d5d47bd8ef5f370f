package mgmt

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/crypto/bcrypt"
)

// maxTokensPerUser bounds the live tokens of one user; a new login past it
// revokes the oldest.
const maxTokensPerUser = 64

// tokenPrefix marks vdiskd tokens, so secret scanners and people can tell.
const tokenPrefix = "vdt_"

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// authenticate establishes who is calling. Password calls take Basic
// user:password; every other call takes a token, as Bearer or as the
// password of Basic user:token.
func (s *Server) authenticate(c *call) *api.Error {
	r := c.r
	authz := r.Header.Get("Authorization")
	if c.rpc.Auth == api.AuthPassword {
		user, pw, ok := r.BasicAuth()
		if !ok {
			return unauthorized(api.CodeAuthFailed, "send Basic user:password to obtain a token")
		}
		now := s.opts.Now()
		if wait := s.logins.wait(user, now); wait > 0 {
			secs := int(wait.Round(time.Second) / time.Second)
			e := api.Errorf(http.StatusTooManyRequests, api.CodeAuthFailed, []string{user},
				"too many failed logins for %s: try again in %ds", user, max(secs, 1))
			e.RetryAfter = wait
			return e
		}
		role, ok := s.checkPassword(user, pw)
		if !ok {
			s.logins.failed(user, now)
			s.log.Warn("login failed", "user", user)
			return unauthorized(api.CodeAuthFailed, "wrong user name or password")
		}
		s.logins.succeeded(user)
		c.user, c.role = user, role
		return nil
	}
	var tok, basicUser string
	switch {
	case authz == "":
		return unauthorized(api.CodeSessionInvalid, "no credentials: send Authorization: Bearer <token> (POST /api/token gives one)")
	case strings.HasPrefix(authz, "Bearer "):
		tok = strings.TrimSpace(strings.TrimPrefix(authz, "Bearer "))
	default:
		u, p, ok := r.BasicAuth()
		if !ok {
			return unauthorized(api.CodeSessionInvalid, "unsupported Authorization scheme: use Bearer <token> or Basic user:token")
		}
		tok, basicUser = p, u
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[hashToken(tok)]
	if t == nil {
		return unauthorized(api.CodeSessionInvalid, "the token is unknown or revoked")
	}
	if !s.opts.Now().Before(t.Expires) {
		delete(s.tokens, t.Hash)
		endNBDLocked(t, errTokenExpired)
		return unauthorized(api.CodeSessionInvalid, "the token expired at "+t.Expires.UTC().Format("2006-01-02T15:04:05Z"))
	}
	if basicUser != "" && subtle.ConstantTimeCompare([]byte(basicUser), []byte(t.Username)) != 1 {
		return unauthorized(api.CodeSessionInvalid, "the token belongs to another user")
	}
	u := s.st.user(t.Username)
	if u == nil {
		return unauthorized(api.CodeSessionInvalid, "the token's user no longer exists")
	}
	c.user, c.role, c.token = u.Username, u.Role, tok
	return nil
}

func unauthorized(code, msg string) *api.Error {
	return api.Errorf(http.StatusUnauthorized, code, nil, "%s", msg)
}

// checkPassword compares with bcrypt; an unknown user costs the same time
// as a known one, so timing does not tell which names exist.
func (s *Server) checkPassword(user, pw string) (api.Role, bool) {
	s.mu.Lock()
	u := s.st.user(user)
	hash, role := s.dummy, api.Role(0)
	if u != nil {
		hash, role = []byte(u.Hash), u.Role
	}
	s.mu.Unlock()
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	return role, err == nil && u != nil
}

// TokenUser reports whose a token is and its role, for the NBD server's
// export names (/<uuid>?session_id=<token>).
func (s *Server) TokenUser(tok string) (string, api.Role, bool) {
	user, role, _, ok := s.tokenSession(tok)
	return user, role, ok
}

// tokenSession is TokenUser plus the context an NBD connection opened
// with the token watches: it ends when the token stops being good enough
// for NBD (revoked, expired, its user deleted or lowered below vm-admin),
// and context.Cause says which.
func (s *Server) tokenSession(tok string) (string, api.Role, context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[hashToken(tok)]
	if t == nil || !s.opts.Now().Before(t.Expires) {
		return "", 0, nil, false
	}
	u := s.st.user(t.Username)
	if u == nil {
		return "", 0, nil, false
	}
	if t.nbd == nil {
		t.nbd = s.newTokenSession(t)
	}
	return u.Username, u.Role, t.nbd.ctx, true
}

// tokenSession is what ends a token's NBD connections. One per token, made
// when an NBD client first uses it, so a revocation is one cancel however
// many connections the token opened, and a request pays nothing for it.
type tokenSession struct {
	ctx context.Context
	end context.CancelCauseFunc
}

// Why NBD connections end; their clients read these in ESHUTDOWN replies.
var (
	errTokenRevoked  = errors.New("the token was revoked")
	errTokenExpired  = errors.New("the token expired")
	errUserDeleted   = errors.New("the token's user was deleted")
	errPasswordReset = errors.New("the user's password changed, which revokes its tokens")
	errTooManyLogins = errors.New("the token was revoked: its user logged in more than 64 times since")
	errRoleLowered   = fmt.Errorf("the token's user no longer has the %s role NBD needs", nbdRole)
)

// newTokenSession starts t's session. Expiry is a deadline on the
// context, counted from the server's clock (tests move it), so it needs
// no sweep.
func (s *Server) newTokenSession(t *tokenState) *tokenSession {
	ctx, end := context.WithCancelCause(context.Background())
	ctx, stop := context.WithDeadlineCause(ctx, time.Now().Add(t.Expires.Sub(s.opts.Now())), errTokenExpired)
	return &tokenSession{ctx: ctx, end: func(cause error) { end(cause); stop() }}
}

// endNBDLocked ends the NBD connections t opened. REQUIRES: s.mu held.
func endNBDLocked(t *tokenState, cause error) {
	if t.nbd != nil {
		t.nbd.end(cause)
		t.nbd = nil
	}
}

func (s *Server) login(c *call, _ *api.NoArgs) (any, error) {
	tok := tokenPrefix + randomSecret(32)
	now := s.opts.Now().UTC()
	t := &tokenState{Hash: hashToken(tok), Username: c.user, Created: now, Expires: now.Add(s.opts.TokenTTL)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(func(x *tokenState) bool { return !now.Before(x.Expires) }, errTokenExpired)
	// Bound what one user's logins can pile up: the oldest go first.
	var mine []*tokenState
	for _, x := range s.st.Tokens {
		if x.Username == c.user {
			mine = append(mine, x)
		}
	}
	if extra := len(mine) - (maxTokensPerUser - 1); extra > 0 {
		old := mine[:extra]
		s.revokeLocked(func(x *tokenState) bool { return slices.Contains(old, x) }, errTooManyLogins)
	}
	s.tokens[t.Hash] = t
	s.st.Tokens = append(s.st.Tokens, t)
	if err := s.saveLocked(); err != nil {
		delete(s.tokens, t.Hash)
		s.st.Tokens = s.st.Tokens[:len(s.st.Tokens)-1]
		return nil, err
	}
	s.log.Info("token issued", "user", c.user, "expires", t.Expires)
	return api.Token{Token: tok, ExpiresAt: t.Expires, Role: c.role, Username: c.user}, nil
}

func (s *Server) logout(c *call, _ *api.NoArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(func(t *tokenState) bool { return t.Hash == hashToken(c.token) }, errTokenRevoked)
	return nil, s.saveLocked()
}

// revokeLocked drops the tokens matching drop and ends their NBD
// connections for cause. REQUIRES: s.mu held.
func (s *Server) revokeLocked(drop func(*tokenState) bool, cause error) {
	s.st.Tokens = slices.DeleteFunc(s.st.Tokens, drop)
	for h, t := range s.tokens {
		if drop(t) {
			delete(s.tokens, h)
			endNBDLocked(t, cause)
		}
	}
}

func userRecord(u *userState) api.User {
	return api.User{Username: u.Username, Role: u.Role, Created: u.Created}
}

func (s *Server) userList(c *call, a *api.UserListArgs) (any, error) {
	s.mu.Lock()
	users := make([]api.User, 0, len(s.st.Users))
	for _, u := range s.st.Users {
		users = append(users, userRecord(u))
	}
	s.mu.Unlock()
	return page(users, a.PageArgs, "username")
}

func (s *Server) userGet(c *call, a *api.UserRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.st.user(a.Username)
	if u == nil {
		return nil, api.NotFound("user", a.Username)
	}
	return userRecord(u), nil
}

func (s *Server) userCreate(c *call, a *api.UserCreateArgs) (any, error) {
	role, _ := api.ParseRole(a.Role)
	hash, err := bcrypt.GenerateFromPassword([]byte(a.Password), s.opts.BcryptCost)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.user(a.Username) != nil {
		return nil, api.Conflict(api.CodeNameTaken, []string{"user", a.Username}, "user %q exists", a.Username)
	}
	u := &userState{Username: a.Username, Hash: string(hash), Role: role, Created: s.opts.Now().UTC()}
	s.st.Users = append(s.st.Users, u)
	if err := s.saveLocked(); err != nil {
		s.st.Users = s.st.Users[:len(s.st.Users)-1]
		return nil, err
	}
	s.log.Info("user created", "user", a.Username, "role", role, "by", c.user)
	return created{location: "/api/users/" + u.Username, body: userRecord(u)}, nil
}

func (s *Server) userUpdate(c *call, a *api.UserUpdateArgs) (any, error) {
	var hash []byte
	if a.Password != nil {
		h, err := bcrypt.GenerateFromPassword([]byte(*a.Password), s.opts.BcryptCost)
		if err != nil {
			return nil, err
		}
		hash = h
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.st.user(a.Username)
	if u == nil {
		return nil, api.NotFound("user", a.Username)
	}
	old := *u
	if a.Role != nil {
		role, _ := api.ParseRole(*a.Role)
		if u.Role == api.PoolAdmin && role != api.PoolAdmin && s.poolAdminsLocked() == 1 {
			return nil, api.Conflict(api.CodeLastAdmin, []string{u.Username}, "%s is the last pool-admin", u.Username)
		}
		u.Role = role
	}
	if hash != nil {
		u.Hash = string(hash)
	}
	if hash != nil {
		s.revokeLocked(func(t *tokenState) bool { return t.Username == u.Username }, errPasswordReset)
	}
	if u.Role < nbdRole {
		// The tokens stay good for REST at the new role; the NBD
		// connections they opened needed more.
		for _, t := range s.tokens {
			if t.Username == u.Username {
				endNBDLocked(t, errRoleLowered)
			}
		}
	}
	if err := s.saveLocked(); err != nil {
		*u = old // the revoked tokens stay revoked: safer than back
		return nil, err
	}
	s.log.Info("user updated", "user", u.Username, "role", u.Role, "password_changed", hash != nil, "by", c.user)
	return userRecord(u), nil
}

func (s *Server) userDelete(c *call, a *api.UserRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.st.user(a.Username)
	if u == nil {
		return nil, api.NotFound("user", a.Username)
	}
	if u.Role == api.PoolAdmin && s.poolAdminsLocked() == 1 {
		return nil, api.Conflict(api.CodeLastAdmin, []string{u.Username}, "%s is the last pool-admin", u.Username)
	}
	// Drop the user and its tokens in one save, so no restart brings the
	// tokens back; if the save fails they stay revoked in memory anyway.
	s.st.Users = slices.DeleteFunc(s.st.Users, func(x *userState) bool { return x == u })
	s.revokeLocked(func(t *tokenState) bool { return t.Username == u.Username }, errUserDeleted)
	if err := s.saveLocked(); err != nil {
		return nil, err
	}
	s.log.Info("user deleted", "user", u.Username, "by", c.user)
	return nil, nil
}

func (s *Server) poolAdminsLocked() int {
	n := 0
	for _, u := range s.st.Users {
		if u.Role == api.PoolAdmin {
			n++
		}
	}
	return n
}
