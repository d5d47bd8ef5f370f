// Package auth is the users and tokens service: who may call, with which
// role. Users and tokens are records of their own in the management
// database (package kv), so a login writes one key and never rewrites what
// other calls read; a call checks its token in memory without I/O.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"golang.org/x/crypto/bcrypt"
)

// MaxTokensPerUser bounds the live tokens of one user; a new login past it
// revokes the oldest.
const MaxTokensPerUser = 64

// tokenPrefix marks vdiskd tokens, so secret scanners and people can tell.
const tokenPrefix = "vdt_"

const (
	userPrefix     = "user/"
	tokenPrefixKey = "token/"
)

// Options configure a Service. DB is required.
type Options struct {
	DB     *kv.DB
	Logger *slog.Logger
	Now    func() time.Time
	// AdminPassword is the first start's admin password
	// (VDISKD_ADMIN_PASSWORD). Empty: a random one is written to
	// <DataDir>/admin.password, mode 0600.
	AdminPassword string
	DataDir       string
	TokenTTL      time.Duration // default 24 h
	BcryptCost    int           // default bcrypt.DefaultCost; tests lower it
	// NBDRole is the least role whose tokens may open NBD exports; their
	// NBD connections end when the user drops below it.
	NBDRole Role
}

// User is an account. Its password hash never leaves the service.
type User struct {
	Username string    `json:"username"`
	Hash     string    `json:"hash"` // bcrypt
	Role     Role      `json:"role"`
	Created  time.Time `json:"created"`
}

// token keeps a token's SHA-256, never the token: a copy of the database
// grants nothing.
type token struct {
	Hash     string    `json:"sha256"`
	Username string    `json:"username"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`

	nbd *nbdSession // NBD connections opened with it watch this; not saved
}

// Principal is who a call is from.
type Principal struct {
	User  string
	Role  Role
	Token string // the token the call carries (empty for password calls)
}

// Token is what a login hands out.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Role      Role      `json:"role"`
	Username  string    `json:"username"`
}

// Service holds the users and the live tokens.
type Service struct {
	opts   Options
	log    *slog.Logger
	logins loginThrottle
	dummy  []byte // bcrypt hash compared against for unknown users

	// change serialises changes to users (create, update, delete), so the
	// last-admin rule holds; logins and calls never take it.
	change sync.Mutex
	// mu guards the maps; it is never held across I/O.
	mu     sync.RWMutex
	users  map[string]*User
	tokens map[string]*token   // by SHA-256 of the token
	byUser map[string][]*token // live tokens of each user, oldest first
}

// New loads users and tokens, dropping expired tokens, and creates user
// admin on first start.
func New(opts Options) (*Service, error) {
	if opts.DB == nil {
		return nil, errors.New("auth: DB is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 24 * time.Hour
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.NBDRole == 0 {
		opts.NBDRole = VMAdmin
	}
	s := &Service{opts: opts, log: opts.Logger, users: map[string]*User{}, tokens: map[string]*token{},
		byUser: map[string][]*token{}}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password of anyone"), opts.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.dummy = dummy
	if err := kv.ScanJSON(opts.DB, userPrefix, func(_ string, u *User) error {
		s.users[u.Username] = u
		return nil
	}); err != nil {
		return nil, err
	}
	now := opts.Now()
	expired := opts.DB.NewBatch()
	if err := kv.ScanJSON(opts.DB, tokenPrefixKey, func(key string, t *token) error {
		if !now.Before(t.Expires) || s.users[t.Username] == nil {
			expired.Delete(key)
			return nil
		}
		s.tokens[t.Hash] = t
		s.byUser[t.Username] = append(s.byUser[t.Username], t)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := expired.Commit(); err != nil {
		return nil, err
	}
	for _, ts := range s.byUser {
		slices.SortFunc(ts, func(a, b *token) int { return a.Created.Compare(b.Created) })
	}
	if err := s.bootstrap(); err != nil {
		return nil, err
	}
	return s, nil
}

// bootstrap creates user admin when there are no users.
func (s *Service) bootstrap() error {
	if len(s.users) > 0 {
		if s.opts.AdminPassword != "" {
			s.log.Info("users exist already; VDISKD_ADMIN_PASSWORD only applies on first start")
		}
		return nil
	}
	pw, where := s.opts.AdminPassword, "VDISKD_ADMIN_PASSWORD"
	if pw == "" {
		pw = RandomSecret(18)
		where = filepath.Join(s.opts.DataDir, "admin.password")
		if err := writeFileSync(where, []byte(pw+"\n"), 0o600); err != nil {
			return fmt.Errorf("auth: write the admin password: %w", err)
		}
	} else if e := CheckPassword(pw); e != nil {
		return fmt.Errorf("auth: VDISKD_ADMIN_PASSWORD: %s", e.Message)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), s.opts.BcryptCost)
	if err != nil {
		return fmt.Errorf("auth: hash the admin password: %w", err)
	}
	u := &User{Username: "admin", Hash: string(hash), Role: PoolAdmin, Created: s.opts.Now().UTC()}
	if err := s.opts.DB.Put(userPrefix+u.Username, u); err != nil {
		return err
	}
	s.users[u.Username] = u
	s.log.Info("created user admin (pool-admin)", "password_from", where)
	return nil
}

// CheckPassword enforces bcrypt's 72-byte limit and a floor.
func CheckPassword(p string) *fault.Error {
	if len(p) < 8 || len(p) > 72 {
		return fault.InvalidValue("password", "(hidden)", "must be 8 to 72 bytes, got %d", len(p))
	}
	return nil
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// RandomSecret is n random bytes, base64url.
func RandomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func unauthenticated(code, msg string) *fault.Error {
	return fault.New(fault.Unauthenticated, code, nil, "%s", msg)
}

// CheckLogin verifies user:password, slowing down names that keep
// failing. An unknown user costs the same time as a known one, so timing
// does not tell which names exist.
func (s *Service) CheckLogin(user, pw string) (Principal, error) {
	now := s.opts.Now()
	if wait := s.logins.wait(user, now); wait > 0 {
		secs := int(wait.Round(time.Second) / time.Second)
		e := fault.New(fault.TooMany, fault.CodeAuthFailed, []string{user},
			"too many failed logins for %s: try again in %ds", user, max(secs, 1))
		e.RetryAfter = wait
		return Principal{}, e
	}
	s.mu.RLock()
	u := s.users[user]
	hash, role := s.dummy, Role(0)
	if u != nil {
		hash, role = []byte(u.Hash), u.Role
	}
	s.mu.RUnlock()
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil || u == nil {
		s.logins.failed(user, now)
		s.log.Warn("login failed", "user", user)
		return Principal{}, unauthenticated(fault.CodeAuthFailed, "wrong user name or password")
	}
	s.logins.succeeded(user)
	return Principal{User: user, Role: role}, nil
}

// Authenticate checks a token; basicUser, when not empty, must be its
// owner (Basic user:token).
func (s *Service) Authenticate(tok, basicUser string) (Principal, error) {
	s.mu.RLock()
	t := s.tokens[hashToken(tok)]
	var u *User
	if t != nil {
		u = s.users[t.Username]
	}
	s.mu.RUnlock()
	switch {
	case t == nil:
		return Principal{}, unauthenticated(fault.CodeSessionInvalid, "the token is unknown or revoked")
	case !s.opts.Now().Before(t.Expires):
		s.revoke(func(x *token) bool { return x == t }, ErrTokenExpired)
		return Principal{}, unauthenticated(fault.CodeSessionInvalid, "the token expired at "+t.Expires.UTC().Format("2006-01-02T15:04:05Z"))
	case basicUser != "" && subtle.ConstantTimeCompare([]byte(basicUser), []byte(t.Username)) != 1:
		return Principal{}, unauthenticated(fault.CodeSessionInvalid, "the token belongs to another user")
	case u == nil:
		return Principal{}, unauthenticated(fault.CodeSessionInvalid, "the token's user no longer exists")
	}
	return Principal{User: u.Username, Role: u.Role, Token: tok}, nil
}

// IssueToken hands p (from CheckLogin) a new token. Past MaxTokensPerUser
// live tokens, the oldest are revoked.
func (s *Service) IssueToken(p Principal) (Token, error) {
	tok := tokenPrefix + RandomSecret(32)
	now := s.opts.Now().UTC()
	t := &token{Hash: hashToken(tok), Username: p.User, Created: now, Expires: now.Add(s.opts.TokenTTL)}
	if err := s.opts.DB.Put(tokenPrefixKey+t.Hash, t); err != nil {
		return Token{}, fault.Internalf(nil, "saving the token: %v", err)
	}
	s.mu.Lock()
	if s.users[p.User] == nil { // deleted meanwhile
		s.mu.Unlock()
		_ = s.opts.DB.Delete(tokenPrefixKey + t.Hash)
		return Token{}, unauthenticated(fault.CodeAuthFailed, "wrong user name or password")
	}
	s.tokens[t.Hash] = t
	s.byUser[p.User] = append(s.byUser[p.User], t)
	mine := s.byUser[p.User]
	var expired, extra []*token
	for _, x := range mine {
		if !now.Before(x.Expires) {
			expired = append(expired, x)
		}
	}
	// Bound what one user's logins can pile up: the oldest go first.
	for n, x := len(mine)-len(expired)-MaxTokensPerUser, 0; n > 0; x++ {
		if now.Before(mine[x].Expires) {
			extra = append(extra, mine[x])
			n--
		}
	}
	s.mu.Unlock()
	if len(expired) > 0 {
		_ = s.revoke(func(x *token) bool { return slices.Contains(expired, x) }, ErrTokenExpired)
	}
	if len(extra) > 0 {
		_ = s.revoke(func(x *token) bool { return slices.Contains(extra, x) }, ErrTooManyLogins)
	}
	s.log.Info("token issued", "user", p.User, "expires", t.Expires)
	return Token{Token: tok, ExpiresAt: t.Expires, Role: p.Role, Username: p.User}, nil
}

// Logout revokes one token.
func (s *Service) Logout(tok string) error {
	h := hashToken(tok)
	return s.revoke(func(t *token) bool { return t.Hash == h }, ErrTokenRevoked)
}

// revoke drops the tokens matching drop, ends their NBD connections for
// cause, and deletes them durably.
func (s *Service) revoke(drop func(*token) bool, cause error) error {
	s.mu.Lock()
	var gone []*token
	for h, t := range s.tokens {
		if drop(t) {
			delete(s.tokens, h)
			t.endNBD(cause)
			gone = append(gone, t)
			s.byUser[t.Username] = slices.DeleteFunc(s.byUser[t.Username], func(x *token) bool { return x == t })
			if len(s.byUser[t.Username]) == 0 {
				delete(s.byUser, t.Username)
			}
		}
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return nil
	}
	b := s.opts.DB.NewBatch()
	for _, t := range gone {
		b.Delete(tokenPrefixKey + t.Hash)
	}
	if err := b.Commit(); err != nil {
		// Revoked in memory anyway; a restart would bring them back.
		s.log.Error("saving a token revocation failed", "err", err)
		return fault.Internalf(nil, "saving the revocation: %v", err)
	}
	return nil
}

func writeFileSync(name string, data []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// nbdSession is what ends a token's NBD connections. One per token, made
// when an NBD client first uses it, so a revocation is one cancel however
// many connections the token opened, and a request pays nothing for it.
type nbdSession struct {
	ctx context.Context
	end context.CancelCauseFunc
}

// Why NBD connections end; their clients read these in ESHUTDOWN replies.
var (
	ErrTokenRevoked  = errors.New("the token was revoked")
	ErrTokenExpired  = errors.New("the token expired")
	ErrUserDeleted   = errors.New("the token's user was deleted")
	ErrPasswordReset = errors.New("the user's password changed, which revokes its tokens")
	ErrTooManyLogins = fmt.Errorf("the token was revoked: its user logged in more than %d times since", MaxTokensPerUser)
	ErrRoleLowered   = errors.New("the token's user no longer has the role NBD needs")
)

// endNBD ends the NBD connections t opened. REQUIRES: s.mu held.
func (t *token) endNBD(cause error) {
	if t.nbd != nil {
		t.nbd.end(cause)
		t.nbd = nil
	}
}

// NBDSession checks a token for an NBD export name and answers the
// context the connection watches: it ends when the token stops being good
// enough for NBD (revoked, expired, its user deleted or lowered below
// NBDRole), and context.Cause says which.
func (s *Service) NBDSession(tok string) (Principal, context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tokens[hashToken(tok)]
	if t == nil || !s.opts.Now().Before(t.Expires) {
		return Principal{}, nil, false
	}
	u := s.users[t.Username]
	if u == nil {
		return Principal{}, nil, false
	}
	if t.nbd == nil {
		// Expiry is a deadline on the context, counted from the service's
		// clock (tests move it), so it needs no sweep.
		ctx, end := context.WithCancelCause(context.Background())
		ctx, stop := context.WithDeadlineCause(ctx, time.Now().Add(t.Expires.Sub(s.opts.Now())), ErrTokenExpired)
		t.nbd = &nbdSession{ctx: ctx, end: func(cause error) { end(cause); stop() }}
	}
	return Principal{User: u.Username, Role: u.Role, Token: tok}, t.nbd.ctx, true
}
