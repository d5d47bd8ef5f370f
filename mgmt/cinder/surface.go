// Package cinder is vdiskd's OpenStack Cinder surface (SPEC, seed 002):
// consistency groups and cgsnapshots as Cinder's v2 API has them, with
// just enough of volumes, snapshots and volume types for Cinder's own
// clients to use groups end to end. A volume is a VDI, a volume type a
// vPool; every rule of a group lives in the volume service, which this
// package only translates to and from Cinder's envelopes, statuses and
// error bodies.
package cinder

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Options are what the surface serves from.
type Options struct {
	Volumes *volume.Service
	Auth    *auth.Service
	Logger  *slog.Logger
	// Zone is the one availability zone this daemon is.
	Zone string
	// NoAuth accepts Cinder's noauth tokens "user:project" (as Cinder's
	// noauth strategy: the caller is an administrator, of every project;
	// the path must name the token's).
	// For test clouds only; the daemon warns when it is on.
	NoAuth bool
}

// Surface serves cinderapi.Table.
type Surface struct {
	opts Options
	vols *volume.Service
	auth *auth.Service
	log  *slog.Logger
}

// New makes the surface.
func New(opts Options) *Surface {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Zone == "" {
		opts.Zone = "local"
	}
	return &Surface{opts: opts, vols: opts.Volumes, auth: opts.Auth, log: opts.Logger}
}

// namespace is the volumes' and groups' attribute namespace of this surface.
const namespace = cinderapi.Namespace

// Bindings pairs every call of cinderapi.Table with its handler.
func (s *Surface) Bindings() []rpc.Binding {
	return []rpc.Binding{
		rpc.Bind(cinderapi.VersionList, s.versions),
		rpc.Bind(cinderapi.VersionOf, s.version),
		rpc.Bind(cinderapi.GroupList, s.groupList),
		rpc.Bind(cinderapi.GroupDetail, s.groupDetail),
		rpc.Bind(cinderapi.GroupShow, s.groupShow),
		rpc.Bind(cinderapi.GroupCreate, s.groupCreate),
		rpc.Bind(cinderapi.GroupCreateFromSource, s.groupCreateFromSource),
		rpc.Bind(cinderapi.GroupDelete, s.groupDelete),
		rpc.Bind(cinderapi.GroupUpdate, s.groupUpdate),
		rpc.Bind(cinderapi.GroupUpdateAlias, s.groupUpdate),
		rpc.Bind(cinderapi.GroupSnapshotList, s.groupSnapshotList),
		rpc.Bind(cinderapi.GroupSnapshotDetail, s.groupSnapshotDetail),
		rpc.Bind(cinderapi.GroupSnapshotShow, s.groupSnapshotShow),
		rpc.Bind(cinderapi.GroupSnapshotCreate, s.groupSnapshotCreate),
		rpc.Bind(cinderapi.GroupSnapshotDelete, s.groupSnapshotDelete),
		rpc.Bind(cinderapi.VolumeList, s.volumeList),
		rpc.Bind(cinderapi.VolumeDetail, s.volumeDetail),
		rpc.Bind(cinderapi.VolumeShow, s.volumeShow),
		rpc.Bind(cinderapi.VolumeCreate, s.volumeCreate),
		rpc.Bind(cinderapi.VolumeDelete, s.volumeDelete),
		rpc.Bind(cinderapi.SnapshotList, s.snapshotList),
		rpc.Bind(cinderapi.SnapshotDetail, s.snapshotList),
		rpc.Bind(cinderapi.SnapshotShow, s.snapshotShow),
		rpc.Bind(cinderapi.SnapshotCreate, s.snapshotCreate),
		rpc.Bind(cinderapi.SnapshotDelete, s.snapshotDelete),
		rpc.Bind(cinderapi.TypeList, s.typeList),
		rpc.Bind(cinderapi.TypeShow, s.typeShow),
	}
}

// Prefixes: Cinder's versions.
func (s *Surface) Prefixes() []string { return []string{"/v2/", "/v3/"} }

// Authenticate reads X-Auth-Token: a vdiskd token (the token's user and
// role), or with NoAuth Cinder's "user:project".
func (s *Surface) Authenticate(r *http.Request, _ *rpc.RPC) (auth.Principal, error) {
	tok := r.Header.Get("X-Auth-Token")
	if tok == "" {
		return auth.Principal{}, fault.New(fault.Unauthenticated, fault.CodeSessionInvalid, nil,
			"no X-Auth-Token: send a vdiskd token (POST /api/token gives one)")
	}
	p, err := s.auth.Authenticate(tok, "")
	if err == nil || !s.opts.NoAuth {
		return p, err
	}
	user, project, _ := strings.Cut(tok, ":")
	if project == "" {
		project = user
	}
	if tenant := mux.Vars(r)["tenant_id"]; tenant != "" && tenant != project {
		// Cinder's wsgi refuses a path project other than the context's.
		return auth.Principal{}, fault.BadRequest(fault.CodeInvalidValue, []string{"tenant_id", tenant}, "Malformed request url")
	}
	return auth.Principal{User: user, Role: auth.PoolAdmin}, nil
}

// Decode reads the call's arguments, unwrapping Cinder's envelope. A list
// takes query parameters it does not declare as filters.
func (s *Surface) Decode(r *http.Request, call *rpc.RPC, dst any) error {
	sink, lists := dst.(interface{ SetFilters(map[string]string) })
	if !lists || r.Method != http.MethodGet {
		return rpc.DecodeArgs(r, call, dst)
	}
	known := map[string]bool{}
	for _, a := range call.Arguments() {
		if a.Source == rpc.FromQuery {
			known[a.Name] = true
		}
	}
	q := r.URL.Query()
	filters := map[string]string{}
	for k, vs := range q {
		if !known[k] {
			filters[k] = vs[len(vs)-1]
			q.Del(k)
		}
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	if err := rpc.DecodeArgs(r2, call, dst); err != nil {
		return err
	}
	sink.SetFilters(filters)
	return nil
}

// Fault maps a handler's error; block-store errors become faults.
func (s *Surface) Fault(err error, call *rpc.RPC) *fault.Error {
	return volume.StoreError(err, "", call.Call)
}

// faultNames are Cinder's error body names by status (cinder/api/
// openstack/wsgi.py).
var faultNames = map[int]string{
	400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "badMethod",
	409: "conflictingRequest", 413: "overLimit", 415: "badMediaType", 429: "overLimit",
	501: "notImplemented", 503: "serviceUnavailable",
}

// status is a fault's HTTP status as Cinder answers: every refusal of a
// well-formed request is Invalid* there, 400.
func status(e *fault.Error) int {
	switch e.Kind {
	case fault.Invalid, fault.Conflict:
		return http.StatusBadRequest
	case fault.Unauthenticated:
		return http.StatusUnauthorized
	case fault.Forbidden:
		return http.StatusForbidden
	case fault.NotFound:
		return http.StatusNotFound
	case fault.TooMany:
		return http.StatusTooManyRequests
	case fault.TooLarge, fault.NoSpace:
		return http.StatusRequestEntityTooLarge
	case fault.Unavailable:
		return http.StatusServiceUnavailable
	case fault.NotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// WriteError answers Cinder's fault body, {"badRequest": {"code": 400,
// "message": ...}}; 401 as keystonemiddleware does.
func (s *Surface) WriteError(w http.ResponseWriter, _ *http.Request, e *fault.Error) {
	code := status(e)
	rpc.SetRetryAfter(w, e)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Keystone uri="/api/token"`)
		rpc.WriteJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": "Unauthorized",
			"message": e.Message}})
		return
	}
	name, ok := faultNames[code]
	if !ok {
		name = "computeFault"
	}
	rpc.WriteJSON(w, code, map[string]any{name: map[string]any{"code": code, "message": e.Message}})
}

// WriteResult answers the call's status with the body, if any.
func (s *Surface) WriteResult(w http.ResponseWriter, r *http.Request, call *rpc.RPC, res any) {
	if v := r.Header.Get("OpenStack-API-Version"); v != "" && mux.Vars(r)["api"] == "v3" {
		w.Header().Set("OpenStack-API-Version", "volume "+apiVersion)
		w.Header().Set("Vary", "OpenStack-API-Version")
	}
	if res == nil {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(call.Status)
		return
	}
	rpc.WriteJSON(w, call.Status, res)
}

// sees reports whether the caller may see an object of project owner
// through the path's tenant: its own project's, or anything for a
// pool-admin (Cinder's admin context).
func sees(c *rpc.Call, tenant, owner string) bool {
	return owner == tenant || c.Role.Allows(auth.PoolAdmin)
}

// listsAll reports whether a list covers every project: all_tenants from a
// pool-admin. From anyone else it is ignored, as Cinder's get_all ignores
// it for non-admins (python-cinderclient sends all_tenants=1 with every
// lookup by name, whoever calls).
func listsAll(c *rpc.Call, a *cinderapi.ListArgs) bool {
	return a.AllProjects() && c.Role.Allows(auth.PoolAdmin)
}
