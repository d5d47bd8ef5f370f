package mgmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"golang.org/x/crypto/bcrypt"
)

const adminPassword = "admin-password"

// env is a Server on an in-memory store, served over real HTTP.
type env struct {
	t       testing.TB
	fs      vfs.FS
	dataDir string
	store   *blockstore.Store
	s       *Server
	srv     *httptest.Server
	admin   string // a pool-admin token
	nbdAddr string // where withNBD serves its exports

	clockMu sync.Mutex
	now     time.Time

	tweak func(*Options) // changes the Server's options before each start
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith starts a Server whose options tweak changed.
func newEnvWith(t testing.TB, tweak func(*Options)) *env {
	e := &env{t: t, fs: vfs.NewMem(), dataDir: t.TempDir(), now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), tweak: tweak}
	e.start()
	t.Cleanup(e.stop)
	e.admin = e.login("admin", adminPassword)
	return e
}

func (e *env) clock() time.Time {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.now = e.now.Add(d)
}

func (e *env) start() {
	e.t.Helper()
	st, err := blockstore.Open("store", blockstore.Options{FS: e.fs, GCInterval: -1, CacheSize: 8 << 20, Now: e.clock, MemTableSize: 4 << 20,
		Logf: func(string, ...any) {}})
	if err != nil {
		e.t.Fatal(err)
	}
	// A short DetachGrace: the refusals tests expect come quickly.
	opts := Options{Store: st, DataDir: e.dataDir, AdminPassword: adminPassword, Now: e.clock,
		DetachGrace: 100 * time.Millisecond, BcryptCost: bcrypt.MinCost, StatsTick: -1, Address: "127.0.0.1:8080", NodeName: "test-node",
		Logger: slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if e.tweak != nil {
		e.tweak(&opts)
	}
	s, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.store, e.s, e.srv = st, s, httptest.NewServer(s.Handler())
}

func (e *env) stop() {
	if e.srv == nil {
		return
	}
	e.srv.Close()
	e.s.Close()
	if err := e.store.Close(); err != nil {
		e.t.Errorf("closing the store: %v", err)
	}
	e.srv = nil
}

// restart stops the server and store and opens them again on the same
// files, as a daemon restart does.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// request sends one request; token "" sends none, "basic:user:pw" sends
// Basic credentials, "vsphere:<id>" a vSphere session id. body is JSON-encoded unless it is a string or []byte.
func (e *env) request(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, e.body(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if user, ok := strings.CutPrefix(token, "basic:"); ok {
		u, p, _ := strings.Cut(user, ":")
		req.SetBasicAuth(u, p)
	} else if sid, ok := strings.CutPrefix(token, "vsphere:"); ok {
		req.Header.Set("vmware-api-session-id", sid)
	} else if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// body is a request body: nil for none, a string or []byte as is,
// anything else JSON-encoded.
func (e *env) body(body any) io.Reader {
	e.t.Helper()
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return strings.NewReader(b)
	case []byte:
		return bytes.NewReader(b)
	}
	buf, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return bytes.NewReader(buf)
}

// must sends a request that has to answer want, and decodes the answer
// into out (if not nil).
func (e *env) must(want int, method, path, token string, body, out any) {
	e.t.Helper()
	code, buf := e.request(method, path, token, body)
	if code != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, buf)
	}
	if out != nil {
		if err := json.Unmarshal(buf, out); err != nil {
			e.t.Fatalf("%s %s: decoding %s: %v", method, path, buf, err)
		}
	}
}

// fails sends a request that has to fail with status and code, and checks
// the error body's shape.
func (e *env) fails(status int, code, method, path, token string, body any) api.Error {
	e.t.Helper()
	got, buf := e.request(method, path, token, body)
	var eb api.ErrorBody
	if err := json.Unmarshal(buf, &eb); err != nil || eb.Error == nil {
		e.t.Fatalf("%s %s: not an error body (%v): %s", method, path, err, buf)
	}
	if got != status || eb.Error.Code != code {
		e.t.Fatalf("%s %s: %d %s, want %d %s: %s", method, path, got, eb.Error.Code, status, code, buf)
	}
	if eb.Error.Message == "" || eb.Error.Params == nil {
		e.t.Fatalf("%s %s: error without message or params: %s", method, path, buf)
	}
	return *eb.Error
}

func (e *env) login(user, pw string) string {
	e.t.Helper()
	var tok api.Token
	e.must(http.StatusOK, "POST", "/api/token", "basic:"+user+":"+pw, nil, &tok)
	return tok.Token
}

// userWithRole creates a user holding role and returns its token.
func (e *env) userWithRole(role api.Role) string {
	e.t.Helper()
	name := "u-" + role.String()
	code, _ := e.request("POST", "/api/users", e.admin, map[string]any{"username": name, "password": "password-" + name, "role": role.String()})
	if code != http.StatusCreated && code != http.StatusConflict {
		e.t.Fatalf("creating %s: %d", name, code)
	}
	return e.login(name, "password-"+name)
}

func (e *env) createVDI(body map[string]any) api.VDI {
	e.t.Helper()
	if body["virtual_size"] == nil {
		body["virtual_size"] = 4 << 20
	}
	var v api.VDI
	e.must(http.StatusCreated, "POST", "/api/vdis", e.admin, body, &v)
	return v
}

func (e *env) vdi(id string) api.VDI {
	e.t.Helper()
	var v api.VDI
	e.must(http.StatusOK, "GET", "/api/vdis/"+id, e.admin, nil, &v)
	return v
}

// post calls a VDI RPC that answers the VDI record.
func (e *env) post(id, rpc string, body any) api.VDI {
	e.t.Helper()
	var v api.VDI
	e.must(http.StatusOK, "POST", "/api/vdis/"+id+"/"+rpc, e.admin, body, &v)
	return v
}

// waitTask polls a task until it ends.
func (e *env) waitTask(id string) api.Task {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var t api.Task
		e.must(http.StatusOK, "GET", "/api/tasks/"+id, e.admin, nil, &t)
		if t.Status != api.TaskPending {
			return t
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s still pending", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// write puts data into a VDI through the store (NBD is not needed to test
// the management calls).
func (e *env) write(id string, off uint64, p []byte) {
	e.t.Helper()
	d, err := e.store.Attach(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer d.Close()
	if err := d.Write(off, p, blockstore.FUA); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) read(id string, off uint64, n int) []byte {
	e.t.Helper()
	d, err := e.store.Attach(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer d.Close()
	p := make([]byte, n)
	if _, err := d.ReadAt(p, int64(off)); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// volumes counts every volume in the store, hidden ones included.
func (e *env) volumes() int { return len(e.store.Volumes()) }

func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed ^ byte(i*31+i>>8) | 1
	}
	return p
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var _ = fmt.Sprint
