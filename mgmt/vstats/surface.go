// Package vstats is vdiskd's vStats surface (issue 19, seed 004): vSphere
// Automation API sessions (POST /api/session with Basic user:password,
// then vmware-api-session-id) and the vStats calls under /api/stats over
// the statistics service (package stats). It translates only: every rule
// of specs, sampling and cache syncs is the service's.
package vstats

import (
	"net/http"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// Options are what the surface serves from.
type Options struct {
	Stats *stats.Service
	Auth  *auth.Service
	// The provider: this daemon.
	NodeGUID, NodeName, Zone string
}

// Surface serves vstatsapi.Table.
type Surface struct {
	opts  Options
	stats *stats.Service
}

// New makes the surface.
func New(opts Options) *Surface { return &Surface{opts: opts, stats: opts.Stats} }

// SessionHeader carries the session id, as vSphere's clients send it.
const SessionHeader = "vmware-api-session-id"

// Prefixes: vSphere's session and the stats calls.
func (s *Surface) Prefixes() []string { return []string{"/api/session", "/api/stats/"} }

// Authenticate takes Basic user:password to open a session, and then the
// session id in vmware-api-session-id (or a vdiskd token as Bearer).
func (s *Surface) Authenticate(r *http.Request, call *rpc.RPC) (auth.Principal, error) {
	if call.Auth == rpc.AuthPassword {
		user, pw, ok := r.BasicAuth()
		if !ok {
			return auth.Principal{}, fault.New(fault.Unauthenticated, fault.CodeAuthFailed, nil,
				"send Basic user:password to open a session")
		}
		return s.opts.Auth.CheckLogin(user, pw)
	}
	if tok := r.Header.Get(SessionHeader); tok != "" {
		return s.opts.Auth.Authenticate(tok, "")
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return s.opts.Auth.Authenticate(strings.TrimSpace(tok), "")
	}
	return auth.Principal{}, fault.New(fault.Unauthenticated, fault.CodeSessionInvalid, nil,
		"no session: send %s (POST /api/session with Basic user:password gives one)", SessionHeader)
}

// Decode reads the call's arguments.
func (s *Surface) Decode(r *http.Request, call *rpc.RPC, dst any) error {
	return rpc.DecodeArgs(r, call, dst)
}

// Fault maps a handler's error: the service's are faults already.
func (s *Surface) Fault(err error, call *rpc.RPC) *fault.Error {
	if f, ok := fault.As(err); ok {
		return f
	}
	return fault.Internalf(nil, "%s: %v", call.Name(), err)
}

// errorTypes are vSphere's error_type and HTTP status by kind.
func errorType(e *fault.Error) (int, string) {
	switch e.Kind {
	case fault.Invalid, fault.Conflict:
		return http.StatusBadRequest, "INVALID_ARGUMENT"
	case fault.Unauthenticated:
		return http.StatusUnauthorized, "UNAUTHENTICATED"
	case fault.Forbidden:
		return http.StatusForbidden, "UNAUTHORIZED"
	case fault.NotFound:
		return http.StatusNotFound, "NOT_FOUND"
	case fault.NotAllowed:
		return http.StatusMethodNotAllowed, "OPERATION_NOT_FOUND"
	case fault.TooMany:
		return http.StatusTooManyRequests, "RESOURCE_BUSY"
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge, "INVALID_REQUEST"
	case fault.Unavailable:
		return http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"
	}
	return http.StatusInternalServerError, "ERROR"
}

// WriteError answers vSphere's error body.
func (s *Surface) WriteError(w http.ResponseWriter, _ *http.Request, e *fault.Error) {
	status, kind := errorType(e)
	rpc.SetRetryAfter(w, e)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="vdiskd"`)
	}
	args := append([]string{}, e.Params...)
	rpc.WriteJSON(w, status, vstatsapi.ErrorBody{ErrorType: kind, Messages: []vstatsapi.Message{{
		ID: "vdiskd." + strings.ToLower(e.Code), DefaultMessage: e.Message, Args: args}}})
}

// WriteResult answers the call's status, with the body if there is one.
func (s *Surface) WriteResult(w http.ResponseWriter, _ *http.Request, call *rpc.RPC, res any) {
	if res == nil {
		w.WriteHeader(call.Status)
		return
	}
	rpc.WriteJSON(w, call.Status, res)
}
