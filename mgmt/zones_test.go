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
		o.Zone, o.ZoneProbeInterval, o.ReplicationTick = name, -1, -1
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

func TestReplicationRelations(t *testing.T) {
	a := newEnvWith(t, inZone("a", nil))
	b := newEnvWith(t, inZone("b", nil))
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}, nil)
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "down", "url": "http://127.0.0.1:1", "username": "admin", "password": "x"}, nil)
	a.must(http.StatusCreated, "POST", "/api/vpools", a.admin, map[string]any{"name": "gold"}, nil)

	var r api.Replication
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "gold", "dst_zone": "b", "dst_vpool": "local", "interval_s": 60}, &r)
	if r.Seq != 1 || r.VPoolName != "gold" || r.Status != "initializing" || r.Interval != 60 || r.Retention != 7 {
		t.Fatalf("created %+v", r)
	}
	var broken api.Replication
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "local", "dst_zone": "down", "dst_vpool": "local"}, &broken)
	if broken.Seq != 2 || broken.Status != "broken" || !strings.Contains(broken.Reason, "zone down does not answer") {
		t.Fatalf("to an unreachable zone: %+v", broken)
	}

	var before api.List[api.Replication]
	a.must(http.StatusOK, "GET", "/api/replications", a.admin, nil, &before)
	for _, c := range []struct {
		what, method, path string
		body               any
		status             int
		code               string
	}{
		{"the same pair again", "POST", "/api/replications", map[string]any{"vpool": "gold", "dst_zone": "b", "dst_vpool": "x"}, 409, "NAME_ALREADY_EXISTS"},
		{"an unknown zone", "POST", "/api/replications", map[string]any{"vpool": "gold", "dst_zone": "c", "dst_vpool": "x"}, 404, api.CodeUUIDInvalid},
		{"an unknown vPool", "POST", "/api/replications", map[string]any{"vpool": "tin", "dst_zone": "b", "dst_vpool": "x"}, 404, api.CodeUUIDInvalid},
		{"an interval too short", "POST", "/api/replications", map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "x", "interval_s": 5}, 400, api.CodeInvalidValue},
		{"a negative retention", "POST", "/api/replications", map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "x", "retention": -1}, 400, api.CodeInvalidValue},
		{"no dst_vpool", "POST", "/api/replications", map[string]any{"vpool": "local", "dst_zone": "b"}, 400, api.CodeInvalidValue},
		{"a bad seq", "GET", "/api/replications/x", nil, 400, api.CodeInvalidValue},
		{"an unknown seq", "POST", "/api/replications/99/pause", nil, 404, api.CodeUUIDInvalid},
		{"deleting a zone in use", "DELETE", "/api/zones/b", nil, 409, "OPERATION_NOT_ALLOWED"},
		{"deleting a vPool in use", "DELETE", "/api/vpools/gold", nil, 409, "OPERATION_NOT_ALLOWED"},
	} {
		a.fails(c.status, c.code, c.method, c.path, a.admin, c.body)
		var after api.List[api.Replication]
		a.must(http.StatusOK, "GET", "/api/replications", a.admin, nil, &after)
		if mustJSON(after) != mustJSON(before) {
			t.Fatalf("%s changed the relations", c.what)
		}
	}
	// Who may: readers read, only pool-admins change.
	a.must(http.StatusOK, "GET", "/api/replications/1", a.userWithRole(api.ReadOnly), nil, &r)
	a.fails(http.StatusForbidden, api.CodePermissionDenied, "POST", "/api/replications/1/pause", a.userWithRole(api.VMAdmin), nil)

	a.must(http.StatusOK, "POST", "/api/replications/1/pause", a.admin, nil, &r)
	if !r.Paused || r.Status != "paused" {
		t.Fatalf("paused %+v", r)
	}
	a.fails(http.StatusConflict, api.CodeOperationNotAllowed, "POST", "/api/replications/1/sync", a.admin, nil)
	a.restart()
	a.admin = a.login("admin", adminPassword)
	a.s.zones.ProbeAll()
	a.must(http.StatusOK, "GET", "/api/replications/1", a.admin, nil, &r)
	if !r.Paused || r.DstVPool != "local" {
		t.Fatalf("after a restart %+v", r)
	}
	a.must(http.StatusOK, "POST", "/api/replications/1/resume", a.admin, nil, &r)
	if r.Paused || r.Status != "initializing" {
		t.Fatalf("resumed %+v", r)
	}
	a.must(http.StatusOK, "POST", "/api/replications/1/sync", a.admin, nil, &r)
	a.must(http.StatusNoContent, "DELETE", "/api/replications/1", a.admin, nil, nil)
	a.must(http.StatusNoContent, "DELETE", "/api/zones/b", a.admin, nil, nil)
	// A seq is never handed out twice.
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "gold", "dst_zone": "down", "dst_vpool": "local"}, &r)
	if r.Seq != 3 {
		t.Fatalf("the next seq is %d, want 3", r.Seq)
	}
}
