package mgmt

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

// syncBuffer is a log sink tests read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inZone makes a daemon of zone name, whose peers are probed only when
// registered, logging everything into log.
func inZone(name string, log *syncBuffer) func(*Options) {
	return func(o *Options) {
		o.Zone, o.ZoneProbeInterval = name, -1
		if log != nil {
			o.Logger = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
}

func TestZoneRegistry(t *testing.T) {
	var logA syncBuffer
	a := newEnvWith(t, inZone("a", &logA))
	b := newEnvWith(t, inZone("b", nil))

	var node api.Node
	b.must(http.StatusOK, "GET", "/api/node", b.admin, nil, &node)
	if node.Zone != "b" || node.Name != "test-node" || node.GUID == "" {
		t.Fatalf("b's node %+v", node)
	}

	reg := map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}
	code, buf := a.request("POST", "/api/zones", a.admin, reg)
	var z api.Zone
	if code != http.StatusCreated || json.Unmarshal(buf, &z) != nil {
		t.Fatalf("register b: %d %s", code, buf)
	}
	if !z.Reachable || z.PeerGUID != node.GUID || z.Username != "admin" || z.CheckedAt == "" {
		t.Fatalf("registered %+v", z)
	}
	if strings.Contains(string(buf), adminPassword) {
		t.Fatal("the answer holds the peer's password")
	}
	secret := filepath.Join(a.dataDir, "zones", "b.password")
	if fi, err := os.Stat(secret); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the stored password: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(secret)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the secrets directory: %v %v", fi, err)
	}

	// Refusals change nothing.
	var before api.List[api.Zone]
	a.must(http.StatusOK, "GET", "/api/zones", a.admin, nil, &before)
	for _, c := range []struct {
		what   string
		body   map[string]any
		status int
		code   string
	}{
		{"a peer that is another zone", map[string]any{"name": "c", "url": b.srv.URL, "username": "admin", "password": adminPassword}, 400, api.CodeInvalidValue},
		{"a wrong password", map[string]any{"name": "b2", "url": b.srv.URL, "username": "admin", "password": "not-the-password"}, 400, api.CodeInvalidValue},
		{"twice", reg, 409, "NAME_ALREADY_EXISTS"},
		{"its own zone", map[string]any{"name": "a", "url": b.srv.URL, "username": "admin", "password": "x"}, 400, api.CodeInvalidValue},
		{"a bad name", map[string]any{"name": "b/c", "url": b.srv.URL, "username": "admin", "password": "x"}, 400, api.CodeInvalidValue},
		{"a bad URL", map[string]any{"name": "d", "url": "ftp://x", "username": "admin", "password": "x"}, 400, api.CodeInvalidValue},
		{"no password", map[string]any{"name": "d", "url": b.srv.URL, "username": "admin"}, 400, api.CodeInvalidValue},
		{"a CA that is no PEM", map[string]any{"name": "d", "url": "https://127.0.0.1:1", "username": "admin", "password": "x", "ca_pem": "nope"}, 400, api.CodeInvalidValue},
	} {
		e := a.fails(c.status, c.code, "POST", "/api/zones", a.admin, c.body)
		t.Logf("%s: %s", c.what, e.Message)
		var after api.List[api.Zone]
		a.must(http.StatusOK, "GET", "/api/zones", a.admin, nil, &after)
		if mustJSON(after) != mustJSON(before) {
			t.Fatalf("%s changed the zones: %s", c.what, mustJSON(after))
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(secret)); len(entries) != 1 {
		t.Fatalf("refused registrations left files: %v", entries)
	}

	// A peer that does not answer is registered, unreachable.
	code, buf = a.request("POST", "/api/zones", a.admin, map[string]any{"name": "down", "url": "http://127.0.0.1:1",
		"username": "admin", "password": "secret-of-down"})
	if code != http.StatusCreated || json.Unmarshal(buf, &z) != nil || z.Reachable || z.LastError == "" {
		t.Fatalf("register an unreachable peer: %d %s", code, buf)
	}
	// Only pool-admins see or change zones.
	a.fails(http.StatusForbidden, api.CodePermissionDenied, "GET", "/api/zones", a.userWithRole(api.VMAdmin), nil)

	// A restart keeps them; the next probe finds b again.
	a.restart()
	a.admin = a.login("admin", adminPassword)
	a.s.zones.ProbeAll()
	a.must(http.StatusOK, "GET", "/api/zones/b", a.admin, nil, &z)
	if !z.Reachable || z.PeerGUID != node.GUID {
		t.Fatalf("b after a restart: %+v", z)
	}
	a.must(http.StatusNoContent, "DELETE", "/api/zones/b", a.admin, nil, nil)
	a.fails(http.StatusNotFound, api.CodeUUIDInvalid, "GET", "/api/zones/b", a.admin, nil)
	if _, err := os.Stat(secret); !os.IsNotExist(err) {
		t.Fatalf("b's password outlived it: %v", err)
	}
	for _, pw := range []string{adminPassword, "not-the-password", "secret-of-down"} {
		if strings.Contains(logA.String(), pw) {
			t.Fatalf("a's log holds a password")
		}
	}
}
