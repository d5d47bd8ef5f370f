package mgmt

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gorilla/mux"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// binding is a declared call with its handler.
type binding struct {
	rpc   *api.RPC
	serve func(c *call) (any, error)
}

// bind pairs a declaration with its handler; the argument type is checked
// by the compiler.
func bind[A any](d *api.Decl[A], fn func(c *call, a *A) (any, error)) binding {
	rpc := &d.RPC
	return binding{rpc: rpc, serve: func(c *call) (any, error) {
		var a A
		if err := decodeArgs(c.r, rpc, &a); err != nil {
			return nil, err
		}
		return fn(c, &a)
	}}
}

// call is one request in flight, after authentication.
type call struct {
	w   http.ResponseWriter
	r   *http.Request
	rpc *api.RPC
	auth.Principal
}

// Handler returns the HTTP handler serving every bound call.
func (s *Server) Handler() http.Handler {
	bs := s.bindings()
	if missing := unboundCalls(bs); len(missing) > 0 {
		panic(fmt.Sprintf("mgmt: calls declared without a handler: %v", missing))
	}
	r := mux.NewRouter()
	for _, b := range bs {
		r.Handle(b.rpc.Path, s.serveCall(b)).Methods(b.rpc.Methods...)
	}
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, api.Errorf(http.StatusNotFound, api.CodeMethodUnknown, []string{req.URL.Path},
			"no call at %s %s (see docs/api.md)", req.Method, req.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeError(w, api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, []string{req.Method},
			"%s is not allowed on %s (see docs/api.md)", req.Method, req.URL.Path))
	})
	return s.logRequests(r)
}

// unboundCalls lists declared calls without a binding.
func unboundCalls(bs []binding) []string {
	bound := map[*api.RPC]bool{}
	for _, b := range bs {
		bound[b.rpc] = true
	}
	var out []string
	for _, rpc := range api.All() {
		if !bound[rpc] {
			out = append(out, rpc.Name())
		}
	}
	return out
}

// serveCall runs one call: authenticate, check the role, decode, handle,
// answer. Auth comes first so an anonymous caller learns nothing else.
func (s *Server) serveCall(b binding) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sw, ok := w.(*statusWriter); ok {
			sw.call = b.rpc.Name()
		}
		c := &call{w: w, r: r, rpc: b.rpc}
		if err := s.authenticate(c); err != nil {
			writeError(w, volume.StoreError(err, "", b.rpc.Call))
			return
		}
		if !c.Role.Allows(b.rpc.Role) {
			writeError(w, api.Errorf(http.StatusForbidden, api.CodePermissionDenied,
				[]string{b.rpc.Name(), b.rpc.Role.String()},
				"%s needs role %s or higher; %s has %s", b.rpc.Name(), b.rpc.Role, c.User, c.Role))
			return
		}
		res, err := b.serve(c)
		if ae, ok := err.(*api.Error); ok && ae == nil {
			err = nil // a typed nil that slipped through
		}
		if err != nil {
			e := volume.StoreError(err, "", b.rpc.Call)
			if api.Status(e) >= 500 {
				s.log.Error("call failed", "call", b.rpc.Name(), "err", err)
			}
			writeError(w, e)
			return
		}
		switch res := res.(type) {
		case *api.Task: // a task started: taskGet and taskCancel answer values
			w.Header().Set("Location", "/api/tasks/"+res.UUID)
			writeJSON(w, http.StatusAccepted, res)
		case created:
			w.Header().Set("Location", res.location)
			writeJSON(w, b.rpc.Status, res.body)
		default:
			if b.rpc.Status == http.StatusNoContent {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			writeJSON(w, b.rpc.Status, res)
		}
	})
}

// created is a 201 answer with the new object's address.
type created struct {
	location string
	body     any
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	call   string // the RPC that answered, set by serveCall
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// logRequests logs each request (never its headers, body or query: they
// may carry credentials) and turns a panic into a 500 for that request
// only.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, call: "none"}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic serving a request", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				writeError(sw, api.Errorf(http.StatusInternalServerError, api.CodeInternal, nil, "internal error"))
			}
			took := time.Since(start)
			s.log.Info("http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"ms", took.Milliseconds())
			if s.opts.ObserveCall != nil {
				s.opts.ObserveCall(sw.call, sw.status, took)
			}
		}()
		next.ServeHTTP(sw, r)
	})
}
