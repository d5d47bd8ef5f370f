package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const tokenReply = `{"token":"tok-1","expires_at":"2030-01-02T03:04:05Z","role":"pool-admin","username":"admin"}`

func readConfig(t *testing.T, path string) config {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("config %s: %v\n%s", path, err, b)
	}
	return c
}

func TestLoginStoresTokenAndCallsCarryIt(t *testing.T) {
	f := newFake(t)
	f.on("POST", "/api/token", http.StatusOK, tokenReply)
	f.on("GET", "/api/vdis/U", http.StatusOK, `{"uuid":"U"}`)
	f.on("DELETE", "/api/token", http.StatusNoContent, "")

	res := f.cli(t, "s3cret pass\n", nil, "login", "--user", "admin", "--password-stdin").wantCode(t, 0)
	if !strings.Contains(res.stdout, "Logged in") || strings.Contains(res.stdout+res.stderr, "tok-1") {
		t.Fatalf("login output %q / %q", res.stdout, res.stderr)
	}
	r := f.last(t)
	if r.Method != "POST" || r.Path != "/api/token" {
		t.Fatalf("login sent %s %s", r.Method, r.Path)
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:s3cret pass")); r.Auth != want {
		t.Fatalf("login auth %q, want %q", r.Auth, want)
	}

	st, err := os.Stat(f.config)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if m := st.Mode().Perm(); m != 0o600 {
			t.Fatalf("config mode %v, want 0600", m)
		}
		dst, _ := os.Stat(filepath.Dir(f.config))
		if m := dst.Mode().Perm(); m&0o077 != 0 {
			t.Fatalf("config dir mode %v, want 0700", m)
		}
	}
	c := readConfig(t, f.config)
	want := config{URL: f.srv.URL, Username: "admin", Token: "tok-1", ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	if !c.ExpiresAt.Equal(want.ExpiresAt) || c.URL != want.URL || c.Username != want.Username || c.Token != want.Token {
		t.Fatalf("config %+v, want %+v", c, want)
	}

	// Later calls carry the token, found through the config's URL too.
	f.do(t, "vdi", "get", "U").wantCode(t, 0)
	if a := f.last(t).Auth; a != "Bearer tok-1" {
		t.Fatalf("call auth %q, want Bearer tok-1", a)
	}
	f.cli(t, "", map[string]string{"VDISKCTL_URL": ""}, "vdi", "get", "U").wantCode(t, 0)
	if a := f.last(t).Auth; a != "Bearer tok-1" {
		t.Fatalf("call with the config's URL: auth %q", a)
	}
	// --token and VDISKCTL_TOKEN override it.
	f.cli(t, "", map[string]string{"VDISKCTL_TOKEN": "env-tok"}, "vdi", "get", "U").wantCode(t, 0)
	if a := f.last(t).Auth; a != "Bearer env-tok" {
		t.Fatalf("VDISKCTL_TOKEN: auth %q", a)
	}
	f.cli(t, "", map[string]string{"VDISKCTL_TOKEN": "env-tok"}, "vdi", "get", "U", "--token", "flag-tok").wantCode(t, 0)
	if a := f.last(t).Auth; a != "Bearer flag-tok" {
		t.Fatalf("--token: auth %q", a)
	}

	// The token is never sent to another server.
	other := newFake(t)
	other.on("GET", "/api/vdis/U", http.StatusOK, `{"uuid":"U"}`)
	other.cli(t, "", map[string]string{"VDISKCTL_CONFIG": f.config}, "vdi", "get", "U").wantCode(t, 0)
	if a := other.last(t).Auth; a != "" {
		t.Fatalf("another URL got auth %q", a)
	}

	// logout revokes and forgets.
	f.do(t, "logout").wantCode(t, 0)
	if r := f.last(t); r.Method != "DELETE" || r.Path != "/api/token" || r.Auth != "Bearer tok-1" {
		t.Fatalf("logout sent %s %s auth %q", r.Method, r.Path, r.Auth)
	}
	if c := readConfig(t, f.config); c.Token != "" || c.URL != f.srv.URL || c.Username != "admin" {
		t.Fatalf("config after logout: %+v", c)
	}
	if b, _ := os.ReadFile(f.config); strings.Contains(string(b), "expires_at") {
		t.Fatalf("config after logout keeps expires_at: %s", b)
	}
	f.do(t, "vdi", "get", "U").wantCode(t, 0)
	if a := f.last(t).Auth; a != "" {
		t.Fatalf("call after logout: auth %q", a)
	}
	n := len(f.requests())
	res = f.do(t, "logout").wantCode(t, 0)
	if len(f.requests()) != n || !strings.Contains(res.stderr, "not logged in") {
		t.Fatalf("second logout: %d requests, stderr %q", len(f.requests())-n, res.stderr)
	}
}

func TestLoginPasswordSources(t *testing.T) {
	f := newFake(t)
	f.on("POST", "/api/token", http.StatusOK, tokenReply)
	f.cli(t, "", map[string]string{"VDISKCTL_PASSWORD": "from-env", "VDISKCTL_USER": "ops"}, "login").wantCode(t, 0)
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:from-env")); f.last(t).Auth != want {
		t.Fatalf("auth %q, want %q", f.last(t).Auth, want)
	}
	// Not a terminal, no env, no --password-stdin: refused, nothing sent.
	n := len(f.requests())
	res := f.cli(t, "pw\n", nil, "login").wantCode(t, exitUsage)
	if !strings.Contains(res.stderr, "--password-stdin") || len(f.requests()) != n {
		t.Fatalf("stderr %q, %d requests", res.stderr, len(f.requests())-n)
	}
	f.cli(t, "", nil, "login", "--password-stdin").wantCode(t, exitUsage)
}

func TestLoginRefused(t *testing.T) {
	f := newFake(t)
	f.on("POST", "/api/token", http.StatusUnauthorized,
		`{"error":{"code":"SESSION_AUTHENTICATION_FAILED","params":["admin"],"message":"wrong user or password"}}`)
	res := f.cli(t, "bad\n", nil, "login", "--password-stdin").wantCode(t, exitAPI)
	if !strings.Contains(res.stderr, "SESSION_AUTHENTICATION_FAILED [admin]: wrong user or password") {
		t.Fatalf("stderr %q", res.stderr)
	}
	if _, err := os.Stat(f.config); !os.IsNotExist(err) {
		t.Fatalf("a refused login wrote the config (%v)", err)
	}
}

// Without --config or VDISKCTL_CONFIG the config is in the user's config
// directory.
func TestDefaultConfigPath(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("XDG_CONFIG_HOME is the config directory on Linux")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	f := newFake(t)
	f.on("POST", "/api/token", http.StatusOK, tokenReply)
	f.cli(t, "pw\n", map[string]string{"VDISKCTL_CONFIG": ""}, "login", "--password-stdin").wantCode(t, 0)
	path := filepath.Join(dir, "vdiskctl", "config.json")
	if c := readConfig(t, path); c.Token != "tok-1" {
		t.Fatalf("config %+v", c)
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode().Perm())
	}
	// --config wins.
	other := filepath.Join(t.TempDir(), "c.json")
	f.cli(t, "pw\n", map[string]string{"VDISKCTL_CONFIG": ""}, "login", "--password-stdin", "--config", other).wantCode(t, 0)
	if c := readConfig(t, other); c.Token != "tok-1" {
		t.Fatalf("--config: %+v", c)
	}
}
