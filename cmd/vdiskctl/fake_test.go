package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fake is a vdiskd stand-in: it records every request and answers with
// canned JSON, per "METHOD path".
type fake struct {
	srv     *httptest.Server
	config  string // VDISKCTL_CONFIG for the runs
	mu      sync.Mutex
	reqs    []request
	replies map[string][]reply
}

type request struct {
	Method, Path, Query, URI string
	Body                     string
	Auth, ContentType        string
}

type reply struct {
	status int
	body   string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{replies: map[string][]reply{}, config: filepath.Join(t.TempDir(), "cfg", "config.json")}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, URI: r.RequestURI,
		Body: string(b), Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type")})
	key := r.Method + " " + r.URL.Path
	q := f.replies[key]
	var rep reply
	switch {
	case len(q) == 0:
		rep = reply{404, `{"error":{"code":"MESSAGE_METHOD_UNKNOWN","params":["` + key + `"],"message":"fake: no reply for ` + key + `"}}`}
	case len(q) == 1:
		rep = q[0] // the last reply repeats
	default:
		rep, f.replies[key] = q[0], q[1:]
	}
	f.mu.Unlock()
	if rep.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

// on queues an answer to method path.
func (f *fake) on(method, path string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := method + " " + path
	f.replies[key] = append(f.replies[key], reply{status, body})
}

// set replaces the answers to method path with one.
func (f *fake) set(method, path string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[method+" "+path] = []reply{{status, body}}
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func (f *fake) last(t *testing.T) request {
	t.Helper()
	rs := f.requests()
	if len(rs) == 0 {
		t.Fatal("no request was sent")
	}
	return rs[len(rs)-1]
}

func (f *fake) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

// result is one run of vdiskctl.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs vdiskctl against the fake with env (VDISKCTL_URL and
// VDISKCTL_CONFIG point at the fake and its config unless env says
// otherwise; a "" value unsets).
func (f *fake) cli(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	e := map[string]string{"VDISKCTL_URL": f.srv.URL, "VDISKCTL_CONFIG": f.config}
	for k, v := range env {
		e[k] = v
	}
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut, func(k string) string { return e[k] })
	return result{code, out.String(), errOut.String()}
}

// do is cli with no stdin and no extra env.
func (f *fake) do(t *testing.T, args ...string) result {
	t.Helper()
	return f.cli(t, "", nil, args...)
}

// wantCode fails unless r exited with code.
func (r result) wantCode(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("body\n got %s\nwant %s", got, want)
	}
}
