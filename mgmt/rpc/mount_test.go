package rpc

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// toySurface is the smallest surface: a header names the caller's role,
// errors travel as {"<kind>": message}, tasks live under /toy/tasks.
type toySurface struct{ prefix string }

func (s toySurface) Prefixes() []string { return []string{s.prefix} }

func (s toySurface) Authenticate(r *http.Request, _ *RPC) (auth.Principal, error) {
	role, err := auth.ParseRole(r.Header.Get("X-Role"))
	if err != nil {
		return auth.Principal{}, fault.New(fault.Unauthenticated, fault.CodeSessionInvalid, nil, "no role")
	}
	return auth.Principal{User: "u", Role: role}, nil
}

func (s toySurface) Decode(r *http.Request, rpc *RPC, dst any) error { return DecodeArgs(r, rpc, dst) }

func (s toySurface) Fault(err error, _ *RPC) *fault.Error {
	if f, ok := fault.As(err); ok {
		return f
	}
	return fault.Internalf(nil, "%v", err)
}

func (s toySurface) WriteError(w http.ResponseWriter, _ *http.Request, e *fault.Error) {
	w.WriteHeader(http.StatusTeapot)
	json.NewEncoder(w).Encode(map[string]string{s.prefix + e.Kind.String(): e.Code})
}

func (s toySurface) WriteResult(w http.ResponseWriter, _ *http.Request, rpc *RPC, res any) {
	switch res := res.(type) {
	case Started:
		w.Header().Set("Location", s.prefix+"/toy/tasks/"+res.TaskID)
		w.WriteHeader(http.StatusAccepted)
	case Created:
		w.Header().Set("Location", res.Location)
		w.WriteHeader(rpc.Status)
	default:
		w.WriteHeader(rpc.Status)
		json.NewEncoder(w).Encode(res)
	}
}

type echoArgs struct {
	ID   string `path:"id"`
	Size int64  `json:"size" required:"true"`
}

// A surface declares its calls, binds them and mounts them: the role is
// checked before the handler, arguments are decoded from the declaration,
// and errors, results and tasks are encoded the surface's way; unknown
// paths get the error body of the surface whose prefix they fall under.
func TestMountedSurface(t *testing.T) {
	table := NewTable("toy")
	echo := Declare[echoArgs](table, RPC{Class: "thing", Call: "echo", Path: "/toy/things/{id}/echo", Role: auth.VMAdmin})
	start := Declare[struct{}](table, RPC{Class: "thing", Call: "start", Path: "/toy/start", Role: auth.ReadOnly})
	other := NewTable("other")
	ping := Declare[struct{}](other, RPC{Class: "x", Call: "ping", Methods: []string{http.MethodGet}, Path: "/v2/ping", Auth: AuthNone})

	rt := NewRouter(RouterOptions{})
	rt.Mount(toySurface{}, table, []Binding{
		Bind(echo, func(c *Call, a *echoArgs) (any, error) {
			if a.Size < 0 {
				return nil, fault.InvalidValue("size", fmt.Sprint(a.Size), "negative")
			}
			return map[string]any{"id": a.ID, "size": a.Size, "by": c.User}, nil
		}),
		Bind(start, func(c *Call, _ *struct{}) (any, error) { return Started{TaskID: "t1"}, nil }),
	})
	rt.Mount(toySurface{prefix: "/v2"}, other, []Binding{
		Bind(ping, func(c *Call, _ *struct{}) (any, error) { return "pong", nil }),
	})
	srv := httptest.NewServer(rt.Handler())
	t.Cleanup(srv.Close)

	do := func(method, path, role, body string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if role != "" {
			req.Header.Set("X-Role", role)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
	}
	for _, tc := range []struct {
		method, path, role, body string
		status                   int
		answer                   string
	}{
		{"POST", "/toy/things/a/echo", "vm-admin", `{"size":5}`, 200, `{"by":"u","id":"a","size":5}`},
		{"POST", "/toy/things/a/echo", "", `{"size":5}`, 418, `{"unauthenticated":"SESSION_INVALID"}`},
		{"POST", "/toy/things/a/echo", "read-only", `{"size":5}`, 418, `{"forbidden":"RBAC_PERMISSION_DENIED"}`},
		{"POST", "/toy/things/a/echo", "vm-admin", `{}`, 418, `{"invalid":"INVALID_VALUE"}`},
		{"POST", "/toy/things/a/echo", "vm-admin", `{"size":5,"typo":1}`, 418, `{"invalid":"UNKNOWN_FIELD"}`},
		{"POST", "/toy/things/a/echo", "vm-admin", `{"size":-1}`, 418, `{"invalid":"INVALID_VALUE"}`},
		{"GET", "/toy/things/a/echo", "vm-admin", ``, 418, `{"not allowed":"MESSAGE_METHOD_NOT_ALLOWED"}`},
		{"GET", "/nowhere", "", ``, 418, `{"not found":"MESSAGE_METHOD_UNKNOWN"}`},
		{"GET", "/v2/nowhere", "", ``, 418, `{"/v2not found":"MESSAGE_METHOD_UNKNOWN"}`},
		{"GET", "/v2/ping", "", ``, 200, `"pong"`},
	} {
		status, answer, _ := do(tc.method, tc.path, tc.role, tc.body)
		if status != tc.status || answer != tc.answer {
			t.Errorf("%s %s as %q: %d %s, want %d %s", tc.method, tc.path, tc.role, status, answer, tc.status, tc.answer)
		}
	}
	if status, _, h := do("POST", "/toy/start", "read-only", ""); status != 202 || h.Get("Location") != "/toy/tasks/t1" {
		t.Errorf("a started task: %d, Location %q", status, h.Get("Location"))
	}
}
