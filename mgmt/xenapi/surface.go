package xenapi

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenapi/wire"
)

// Table is the surface's transports: one route per way xapi is reached.
// The XenAPI messages themselves are declared as Messages.
var Table = rpc.NewTable("XenAPI wire")

// Envelope is a decoded request: the call, and the encoding to answer in.
type Envelope struct {
	Call wire.Call
	JSON bool
}

func transport(call, path, summary string) *rpc.Decl[Envelope] {
	return rpc.Declare[Envelope](Table, rpc.RPC{Class: "xenapi", Call: call, Methods: []string{http.MethodPost},
		Path: path, Auth: rpc.AuthNone, Summary: summary,
		Returns: "xapi's answer: {Status: Success, Value} or {Status: Failure, ErrorDescription} (XML-RPC); result or error (JSON-RPC)"})
}

// The transports.
var (
	JSONRPC = transport("jsonrpc", "/jsonrpc",
		"A XenAPI call in JSON-RPC 2.0: {jsonrpc, id, method: \"Class.message\", params: [session, ...]}; answers Content-Type application/json exactly.")
	XMLRPC = transport("xmlrpc", "/xmlrpc", "A XenAPI call in XML-RPC (a methodCall); answers text/xml.")
	Root   = transport("xmlrpc_root", "/", "A XenAPI call in XML-RPC at xapi's own path (JSON bodies are taken too).")
	RPC2   = transport("xmlrpc_rpc2", "/RPC2", "A XenAPI call in XML-RPC where Python's xmlrpc.client sends it for a URL without a path (XenAPI.py).")
)

// Options are what the surface serves from.
type Options struct {
	Auth    *auth.Service
	Volumes *volume.Service
	Tasks   *task.Table // shared with the REST surface
	Logger  *slog.Logger
	// The one-host pool this daemon is.
	NodeGUID, NodeName, Zone, Address string
	// NBDInfo answers get_nbd_info for an export name (nil: no NBD);
	// TokenExports: export names carry the session.
	NBDInfo      func(exportName string) []api.NBDInfo
	TokenExports bool
	// EventRescan is how often events reread every record, not only what
	// the volume service's change feed names (0: DefaultEventRescan).
	EventRescan time.Duration
}

// DefaultEventRescan: physical utilisation in events lags writes by as
// much.
const DefaultEventRescan = 10 * time.Second

// Surface serves Table, and every Message through it.
type Surface struct {
	opts   Options
	log    *slog.Logger
	events eventLog
}

// New makes the surface.
func New(opts Options) *Surface {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EventRescan == 0 {
		opts.EventRescan = DefaultEventRescan
	}
	return &Surface{opts: opts, log: opts.Logger}
}

// Bindings answer every transport the same way.
func (s *Surface) Bindings() []rpc.Binding {
	return []rpc.Binding{rpc.Bind(JSONRPC, s.call), rpc.Bind(XMLRPC, s.call), rpc.Bind(Root, s.call), rpc.Bind(RPC2, s.call)}
}

// answer is a call's outcome, encoded by WriteResult in the request's
// encoding: XenAPI failures are answers too (200), as xapi's.
type answer struct {
	env   *Envelope
	value any
	err   *fault.Error
}

func (s *Surface) call(_ *rpc.Call, e *Envelope) (any, error) {
	v, err := s.dispatch(e.Call.Method, e.Call.Params)
	if err != nil {
		f, ok := fault.As(err)
		if !ok {
			f = volume.StoreError(err, "", e.Call.Method)
		}
		if f.Kind == fault.Internal {
			s.log.Error("XenAPI call failed", "method", e.Call.Method, "err", err)
		}
		return answer{env: e, err: f}, nil
	}
	return answer{env: e, value: v}, nil
}

// Prefixes: the paths only this surface answers under.
func (s *Surface) Prefixes() []string { return []string{"/jsonrpc", "/xmlrpc", "/RPC2"} }

// Authenticate is never called: the transports take no credentials; each
// message carries its session.
func (s *Surface) Authenticate(*http.Request, *rpc.RPC) (auth.Principal, error) {
	return auth.Principal{}, errors.New("xenapi: no transport credentials")
}

// Decode reads the body as JSON-RPC at /jsonrpc (or any JSON body), as
// XML-RPC elsewhere.
func (s *Surface) Decode(r *http.Request, call *rpc.RPC, dst any) error {
	e := dst.(*Envelope)
	var body bytes.Buffer
	if _, err := body.ReadFrom(http.MaxBytesReader(nil, r.Body, wire.MaxBody+1)); err != nil {
		e.JSON = r.URL.Path == "/jsonrpc"
		return &decodeError{env: e, err: err}
	}
	e.JSON = r.URL.Path == "/jsonrpc" || wire.IsJSON(body.Bytes())
	var err error
	if e.JSON {
		e.Call, err = wire.DecodeJSONRPC(&body)
	} else {
		e.Call, err = wire.DecodeXMLRPC(&body)
	}
	if err != nil {
		return &decodeError{env: e, err: err}
	}
	return nil
}

// decodeError is a request that is no call: answered in its encoding.
type decodeError struct {
	env *Envelope
	err error
}

func (d *decodeError) Error() string { return d.err.Error() }

// Fault maps a transport failure: a request that is no call.
func (s *Surface) Fault(err error, _ *rpc.RPC) *fault.Error {
	var d *decodeError
	if errors.As(err, &d) {
		f := xenError("XMLRPC_UNMARSHAL_FAILURE", d.err.Error())
		if d.env.JSON {
			f = xenError("JSONRPC_UNMARSHAL_FAILURE", d.err.Error())
		}
		return f
	}
	if f, ok := fault.As(err); ok {
		return f
	}
	return fault.Internalf(nil, "%v", err)
}

// WriteError answers a failure that is not a message's (a request that
// is no call, a panic) in the encoding the path implies.
func (s *Surface) WriteError(w http.ResponseWriter, r *http.Request, e *fault.Error) {
	s.write(w, answer{env: &Envelope{JSON: r.URL.Path == "/jsonrpc" || e.Code == "JSONRPC_UNMARSHAL_FAILURE"}, err: e})
}

// WriteResult answers a message's outcome.
func (s *Surface) WriteResult(w http.ResponseWriter, _ *http.Request, _ *rpc.RPC, res any) {
	s.write(w, res.(answer))
}

func (s *Surface) write(w http.ResponseWriter, a answer) {
	var b bytes.Buffer
	var err error
	code, params := "", []string(nil)
	if a.err != nil {
		code, params = a.err.Code, a.err.Params
		if code == "" {
			code = "INTERNAL_ERROR"
		}
	}
	if a.env.JSON {
		// Exactly application/json: the xen-api client falls back to
		// XML-RPC on anything else.
		w.Header().Set("Content-Type", "application/json")
		if a.err != nil {
			err = wire.EncodeJSONRPCError(&b, a.env.Call.ID, code, params)
		} else {
			err = wire.EncodeJSONRPCResult(&b, a.env.Call.ID, a.value)
		}
	} else {
		w.Header().Set("Content-Type", "text/xml")
		if a.err != nil {
			err = wire.EncodeXMLRPCFailure(&b, code, params)
		} else {
			err = wire.EncodeXMLRPCSuccess(&b, a.value)
		}
	}
	if err != nil {
		s.log.Error("XenAPI answer", "err", err)
		b.Reset()
		if a.env.JSON {
			_ = wire.EncodeJSONRPCError(&b, a.env.Call.ID, "INTERNAL_ERROR", []string{err.Error()})
		} else {
			_ = wire.EncodeXMLRPCFailure(&b, "INTERNAL_ERROR", []string{err.Error()})
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
