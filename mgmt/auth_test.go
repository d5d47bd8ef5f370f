package mgmt

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Every declared call has a handler: mounting checks, and refuses a
// table with a call left unbound.
func TestEveryDeclaredCallIsBound(t *testing.T) {
	e := newEnv(t) // mounts every surface
	bs := e.s.rest.Bindings()
	if n := len(bs); n != len(api.All()) {
		t.Fatalf("%d bindings for %d declared calls", n, len(api.All()))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a table with an unbound call was mounted")
		}
	}()
	rpc.NewRouter(rpc.RouterOptions{}).Mount(e.s.rest, api.Table, bs[1:])
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", "", nil)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", "vdt_not-a-token", nil)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:wrong-password", nil)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:nobody:admin-password", nil)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "", nil)
	// A password is not a token: only /api/token takes it.
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", "basic:admin:"+adminPassword, nil)

	// GET /api/token works as POST does (kvol), and the answer is complete.
	var tok api.Token
	e.must(200, "GET", "/api/token", "basic:admin:"+adminPassword, nil, &tok)
	if tok.Username != "admin" || tok.Role != api.PoolAdmin || !tok.ExpiresAt.After(e.clock()) || !strings.HasPrefix(tok.Token, "vdt_") {
		t.Fatalf("token answer %+v", tok)
	}
	// Basic user:token is accepted, but only with the token's own user.
	e.must(200, "GET", "/api/vdis", "basic:admin:"+tok.Token, nil, nil)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", "basic:other:"+tok.Token, nil)

	// Expiry.
	e.advance(25 * time.Hour)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", tok.Token, nil)

	// Revocation.
	t2 := e.login("admin", adminPassword)
	e.must(204, "DELETE", "/api/token", t2, nil, nil)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", t2, nil)

	// The database keeps no token, only its hash; and it is private.
	t3 := e.login("admin", adminPassword)
	db := filepath.Join(e.dataDir, "mgmt.db")
	files, err := os.ReadDir(db)
	if err != nil || len(files) == 0 {
		t.Fatalf("the management database: %v", err)
	}
	for _, f := range files {
		buf, err := os.ReadFile(filepath.Join(db, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(buf), t3) || strings.Contains(string(buf), adminPassword) {
			t.Fatalf("mgmt.db/%s holds a secret in clear", f.Name())
		}
	}
	if fi, _ := os.Stat(db); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mgmt.db mode %v", fi.Mode().Perm())
	}
	// Tokens survive a restart; revoked and expired ones do not come back.
	e.restart()
	e.must(200, "GET", "/api/vdis", t3, nil, nil)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", t2, nil)
}

// Every call refuses a caller one role below its minimum with 403, and
// lets a caller at the minimum through the role check.
func TestEveryCallChecksItsRole(t *testing.T) {
	e := newEnv(t)
	tokens := map[api.Role]string{}
	for _, r := range api.Roles() {
		tokens[r] = e.userWithRole(r)
	}
	vdi := e.createVDI(map[string]any{"name_label": "roles"})
	for _, rpc := range api.All() {
		if rpc.Auth == api.AuthPassword || rpc == &api.TokenDelete.RPC {
			continue // logout would revoke the token the loop uses; TestAuthentication covers it
		}
		path := rpc.Path
		for _, v := range []string{"{uuid}", "{guid}", "{username}"} {
			path = strings.ReplaceAll(path, v, "00000000-0000-0000-0000-000000000000")
		}
		if rpc.Role > api.ReadOnly {
			e.fails(http.StatusForbidden, api.CodePermissionDenied, rpc.Method(), path, tokens[rpc.Role-1], "{}")
		}
		code, body := e.request(rpc.Method(), path, tokens[rpc.Role], "{}")
		if code == 401 || code == 403 || code >= 500 {
			t.Errorf("%s with role %s: %d %s", rpc.Name(), rpc.Role, code, body)
		}
	}
	// A read-only user reads but does not change.
	e.must(200, "GET", "/api/vdis/"+vdi.UUID, tokens[api.ReadOnly], nil, nil)
	e.fails(403, api.CodePermissionDenied, "POST", "/api/vdis/"+vdi.UUID+"/snapshot", tokens[api.VMOperator], nil)
	e.must(200, "POST", "/api/vdis/"+vdi.UUID+"/add_tags", tokens[api.VMOperator], map[string]string{"value": "t"}, nil)
	e.fails(403, api.CodePermissionDenied, "GET", "/api/users", tokens[api.PoolOperator], nil)
}

func TestUsers(t *testing.T) {
	e := newEnv(t)
	var u api.User
	e.must(201, "POST", "/api/users", e.admin, map[string]string{"username": "bob", "password": "bob-password", "role": "vm-admin"}, &u)
	if u.Username != "bob" || u.Role != api.VMAdmin {
		t.Fatalf("created %+v", u)
	}
	e.fails(409, api.CodeNameTaken, "POST", "/api/users", e.admin, map[string]string{"username": "bob", "password": "bob-password", "role": "vm-admin"})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/users", e.admin, map[string]string{"username": "b:ob", "password": "bob-password", "role": "vm-admin"})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/users", e.admin, map[string]string{"username": "carol", "password": "short", "role": "vm-admin"})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/users", e.admin, map[string]string{"username": "carol", "password": "long-enough", "role": "god"})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/users", e.admin, map[string]string{"username": "carol", "password": strings.Repeat("x", 73), "role": "vm-admin"})

	bob := e.login("bob", "bob-password")
	var list api.List[api.User]
	e.must(200, "GET", "/api/users", e.admin, nil, &list)
	if list.Paging.TotalItems != 2 {
		t.Fatalf("users %+v", list)
	}
	// A role change applies to tokens already issued.
	e.must(200, "PATCH", "/api/users/bob", e.admin, map[string]string{"role": "read-only"}, &u)
	e.fails(403, api.CodePermissionDenied, "POST", "/api/vdis", bob, map[string]any{"virtual_size": 1 << 20})
	// A new password revokes the user's tokens.
	e.must(200, "PATCH", "/api/users/bob", e.admin, map[string]string{"password": "new-bob-password"}, &u)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", bob, nil)
	e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:bob:bob-password", nil)
	bob = e.login("bob", "new-bob-password")
	e.fails(400, api.CodeInvalidValue, "PATCH", "/api/users/bob", e.admin, map[string]string{})
	// The last pool-admin stays.
	e.fails(409, api.CodeLastAdmin, "DELETE", "/api/users/admin", e.admin, nil)
	e.fails(409, api.CodeLastAdmin, "PATCH", "/api/users/admin", e.admin, map[string]string{"role": "vm-admin"})
	// Deleting a user revokes its tokens.
	e.must(204, "DELETE", "/api/users/bob", e.admin, nil, nil)
	e.fails(401, api.CodeSessionInvalid, "GET", "/api/vdis", bob, nil)
	e.fails(404, api.CodeUUIDInvalid, "GET", "/api/users/bob", e.admin, nil)
	e.fails(404, api.CodeUUIDInvalid, "DELETE", "/api/users/bob", e.admin, nil)
	// Users survive a restart.
	e.must(201, "POST", "/api/users", e.admin, map[string]string{"username": "dave", "password": "dave-password", "role": "pool-operator"}, nil)
	e.restart()
	e.login("dave", "dave-password")
}

// The first start writes a random admin password, mode 0600, when none is
// given, and later starts leave the user alone.
func TestAdminBootstrapWritesPasswordFile(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	s, err := New(Options{Store: e.store, DataDir: dir, Now: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := filepath.Join(dir, "admin.password")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.password mode %v", fi.Mode().Perm())
	}
	pw, _ := os.ReadFile(path)
	if p, err := s.auth.CheckLogin("admin", strings.TrimSpace(string(pw))); err != nil || p.Role != api.PoolAdmin {
		t.Fatal("the written password does not log in")
	}
	if _, err := s.auth.CheckLogin("admin", ""); err == nil {
		t.Fatal("empty password accepted")
	}
	if _, err := New(Options{Store: e.store, DataDir: t.TempDir(), AdminPassword: "short"}); err == nil {
		t.Fatal("a too-short VDISKD_ADMIN_PASSWORD was accepted")
	}
}

// Over HTTP, a throttled login is 429 with Retry-After in whole seconds
// (mgmt/auth tests the throttle's rules).
func TestLoginThrottleOverHTTP(t *testing.T) {
	e := newEnv(t)
	for range 5 {
		e.fails(401, api.CodeAuthFailed, "POST", "/api/token", "basic:admin:wrong-password", nil)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/token", nil)
	req.SetBasicAuth("admin", adminPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("sixth login: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
