package rpc

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Surface is what one API surface supplies to the mechanism.
type Surface interface {
	// Prefixes are the path prefixes the surface answers under ("" for
	// the default surface): unknown paths below them get its error body.
	Prefixes() []string
	// Authenticate says who is calling rpc (rpc.Auth says which
	// credentials it takes). Errors are faults (Unauthenticated, TooMany).
	Authenticate(r *http.Request, rpc *RPC) (auth.Principal, error)
	// Decode fills rpc's argument struct dst from the request; DecodeArgs
	// is the plain-JSON default.
	Decode(r *http.Request, rpc *RPC, dst any) error
	// Fault classifies a handler's error (services answer faults already;
	// anything else is the surface's to map).
	Fault(err error, rpc *RPC) *fault.Error
	// WriteError answers a failure in the surface's error body.
	WriteError(w http.ResponseWriter, r *http.Request, err *fault.Error)
	// WriteResult answers a success: rpc.Status in the surface's encoding,
	// with the location of a Created object or a Started task.
	WriteResult(w http.ResponseWriter, r *http.Request, rpc *RPC, res any)
}

// Created is a handler's answer for a new object: 201-style, with its
// address.
type Created struct {
	Location string
	Body     any
}

// Started is a handler's answer for a task it started; the surface says
// where the task is watched (XenAPI REST: 202 with Location
// /api/tasks/{id}).
type Started struct {
	TaskID string
	Body   any
}

// Call is one request in flight, after authentication.
type Call struct {
	W   http.ResponseWriter
	R   *http.Request
	RPC *RPC
	auth.Principal
}

// Binding is a declared call with its handler.
type Binding struct {
	rpc   *RPC
	serve func(s Surface, c *Call) (any, error)
}

// Bind pairs a declaration with its handler; the argument type is checked
// by the compiler.
func Bind[A any](d *Decl[A], fn func(c *Call, a *A) (any, error)) Binding {
	rpc := &d.RPC
	return Binding{rpc: rpc, serve: func(s Surface, c *Call) (any, error) {
		var a A
		if err := s.Decode(c.R, rpc, &a); err != nil {
			return nil, err
		}
		return fn(c, &a)
	}}
}

// RouterOptions configure a Router.
type RouterOptions struct {
	Logger *slog.Logger
	// Observe hears of every answered request: the call's name ("none"
	// for unknown routes), status and duration.
	Observe func(call string, status int, took time.Duration)
}

// Router is the daemon's HTTP router for every mounted surface.
type Router struct {
	opts     RouterOptions
	mux      *mux.Router
	surfaces []Surface
}

// NewRouter makes an empty router.
func NewRouter(opts RouterOptions) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	rt := &Router{opts: opts, mux: mux.NewRouter()}
	rt.mux.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rt.surfaceFor(req.URL.Path).WriteError(w, req, fault.New(fault.NotFound, fault.CodeMethodUnknown,
			[]string{req.URL.Path}, "no call at %s %s (see docs/api.md)", req.Method, req.URL.Path))
	})
	rt.mux.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rt.surfaceFor(req.URL.Path).WriteError(w, req, fault.New(fault.NotAllowed, fault.CodeMethodNotAllowed,
			[]string{req.Method}, "%s is not allowed on %s (see docs/api.md)", req.Method, req.URL.Path))
	})
	return rt
}

// surfaceFor is the surface with the longest prefix path starts with.
func (rt *Router) surfaceFor(path string) Surface {
	var best Surface
	bestLen := -1
	for _, s := range rt.surfaces {
		for _, p := range s.Prefixes() {
			if strings.HasPrefix(path, p) && len(p) > bestLen {
				best, bestLen = s, len(p)
			}
		}
	}
	return best
}

// Mount serves every call of t with its binding in bs. A declared call
// without a binding is a bug: Mount panics at start-up.
func (rt *Router) Mount(s Surface, t *Table, bs []Binding) {
	bound := map[*RPC]bool{}
	for _, b := range bs {
		bound[b.rpc] = true
	}
	var missing []string
	for _, r := range t.All() {
		if !bound[r] {
			missing = append(missing, r.Name())
		}
	}
	if len(missing) > 0 {
		panic(fmt.Sprintf("rpc: %s calls declared without a handler: %v", t.Surface, missing))
	}
	rt.surfaces = append(rt.surfaces, s)
	for _, b := range bs {
		rt.mux.Handle(b.rpc.Path, rt.serve(s, b)).Methods(b.rpc.Methods...)
	}
}

// serve runs one call: authenticate, check the role, decode, handle,
// answer. Auth comes first so an anonymous caller learns nothing else.
func (rt *Router) serve(s Surface, b Binding) http.Handler {
	rpc := b.rpc
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sw, ok := w.(*statusWriter); ok {
			sw.call = rpc.Name()
		}
		c := &Call{W: w, R: r, RPC: rpc}
		if rpc.Auth != AuthNone {
			p, err := s.Authenticate(r, rpc)
			if err != nil {
				s.WriteError(w, r, s.Fault(err, rpc))
				return
			}
			c.Principal = p
			if !p.Role.Allows(rpc.Role) {
				s.WriteError(w, r, fault.New(fault.Forbidden, fault.CodePermissionDenied,
					[]string{rpc.Name(), rpc.Role.String()},
					"%s needs role %s or higher; %s has %s", rpc.Name(), rpc.Role, p.User, p.Role))
				return
			}
		}
		res, err := b.serve(s, c)
		if f, ok := err.(*fault.Error); ok && f == nil {
			err = nil // a typed nil that slipped through
		}
		if err != nil {
			f := s.Fault(err, rpc)
			if f.Kind == fault.Internal {
				rt.opts.Logger.Error("call failed", "call", rpc.Name(), "err", err)
			}
			s.WriteError(w, r, f)
			return
		}
		s.WriteResult(w, r, rpc, res)
	})
}

// Handler is the router with every request logged (never its headers,
// body or query: they may carry credentials) and a panic turned into a
// 500 for that request only.
func (rt *Router) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, call: "none"}
		defer func() {
			if p := recover(); p != nil {
				rt.opts.Logger.Error("panic serving a request", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				rt.surfaceFor(r.URL.Path).WriteError(sw, r, fault.Internalf(nil, "internal error"))
			}
			took := time.Since(start)
			rt.opts.Logger.Info("http", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"ms", took.Milliseconds())
			if rt.opts.Observe != nil {
				rt.opts.Observe(sw.call, sw.status, took)
			}
		}()
		rt.mux.ServeHTTP(sw, withoutTrailingSlash(rt.mux, r))
	})
}

// withoutTrailingSlash answers r with its path's trailing slash dropped
// when only that way a route matches it (vSphere clients POST to
// /api/stats/acq-specs/): a redirect would turn their POST into a GET.
func withoutTrailingSlash(m *mux.Router, r *http.Request) *http.Request {
	p := r.URL.Path
	if len(p) < 2 || !strings.HasSuffix(p, "/") || routed(m, r) {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimSuffix(p, "/")
	r2.URL.RawPath = ""
	if !routed(m, r2) {
		return r
	}
	return r2
}

// routed reports whether a route (not the not-found handler) takes r.
func routed(m *mux.Router, r *http.Request) bool {
	var rm mux.RouteMatch
	return m.Match(r, &rm) && rm.MatchErr == nil
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	call   string // the RPC that answered, set by serve
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
