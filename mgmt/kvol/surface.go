package kvol

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Bindings pairs every call of kvolapi.Table with its handler.
func (s *Service) Bindings() []rpc.Binding {
	return []rpc.Binding{
		rpc.Bind(kvolapi.List, func(c *rpc.Call, a *kvolapi.ListArgs) (any, error) { return s.list(c.R.Context(), a) }),
		rpc.Bind(kvolapi.Show, func(c *rpc.Call, a *kvolapi.ShowArgs) (any, error) { return s.show(c.R.Context(), a) }),
		rpc.Bind(kvolapi.Create, s.create),
		rpc.Bind(kvolapi.CreateList, func(_ *rpc.Call, a *kvolapi.JobListArgs) (any, error) { return s.jobs(kindCreate, a) }),
		rpc.Bind(kvolapi.Recovery, s.recovery),
		rpc.Bind(kvolapi.RecoveryList, func(_ *rpc.Call, a *kvolapi.JobListArgs) (any, error) { return s.jobs(kindRecovery, a) }),
	}
}

// Prefixes: the seed's.
func (s *Service) Prefixes() []string { return []string{"/api/kvol/"} }

// Authenticate takes Basic user:token, as the seed (user: any vdiskd user,
// the token's owner; password: a token from POST /api/token), or Bearer
// token.
func (s *Service) Authenticate(r *http.Request, _ *rpc.RPC) (auth.Principal, error) {
	if user, tok, ok := r.BasicAuth(); ok {
		return s.opts.Auth.Authenticate(tok, user)
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return s.opts.Auth.Authenticate(tok, "")
	}
	return auth.Principal{}, fault.New(fault.Unauthenticated, fault.CodeSessionInvalid, nil,
		"send Basic auth: a vdiskd user name and, as the password, a token of that user (POST /api/token gives one)")
}

// Decode reads the query parameters; any other is refused.
func (s *Service) Decode(r *http.Request, call *rpc.RPC, dst any) error {
	return rpc.DecodeArgs(r, call, dst)
}

// Fault maps a handler's error; block-store errors become faults.
func (s *Service) Fault(err error, call *rpc.RPC) *fault.Error {
	return volume.StoreError(err, "", call.Call)
}

// status is a fault's HTTP status: the seed's 400, 401 and (for anything
// internal) 500, plus what HTTP has for the rest.
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
	case fault.NotAllowed:
		return http.StatusMethodNotAllowed
	case fault.TooMany:
		return http.StatusTooManyRequests
	case fault.TooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// ErrorBody is every kvol error's body.
type ErrorBody struct {
	Code    int    `json:"code"`
	Error   string `json:"error"` // vdiskd's code: INVALID_VALUE, SESSION_INVALID, ...
	Message string `json:"message"`
}

// WriteError answers {"code", "error", "message"} with the status.
func (s *Service) WriteError(w http.ResponseWriter, _ *http.Request, e *fault.Error) {
	code := status(e)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="vdiskd kvol"`)
	}
	rpc.SetRetryAfter(w, e)
	rpc.WriteJSON(w, code, ErrorBody{Code: code, Error: e.Code, Message: e.Message})
}

// WriteResult answers 200 with the body, or 204 when it holds no data.
func (s *Service) WriteResult(w http.ResponseWriter, _ *http.Request, call *rpc.RPC, res any) {
	if e, ok := res.(interface{ Empty() bool }); ok && e.Empty() {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rpc.WriteJSON(w, call.Status, res)
}

// nothing is an answer without data: 204.
type nothing struct{}

func (nothing) Empty() bool { return true }

// target checks that t names this zone and a vPool of it, and answers
// the vPool's guid.
func (s *Service) target(q *asked, t *kvolapi.Target) (string, error) {
	if t.DstZone != s.opts.Zone {
		hint := ""
		if q.zone(t.DstZone) != nil {
			if n := q.node(t.DstZone); n.apiHost != "" {
				hint = " (at " + n.apiHost + ")"
			}
		}
		return "", fault.InvalidValue("dst-zone", t.DstZone,
			"this daemon is zone %s and makes volumes only here: send the call to zone %s's daemon%s", s.opts.Zone, t.DstZone, hint)
	}
	p, ferr := s.vols.Pool(t.DstVolumeTypeID, "vPool")
	if ferr != nil {
		return "", fault.InvalidValue("dst-volume-type-id", t.DstVolumeTypeID, "zone %s has no such vPool", s.opts.Zone)
	}
	return p.GUID, nil
}

// order is a job's request: what it is made from, and in which order
// the replicas found are preferred.
type order struct {
	kind, message string
	target        *kvolapi.Target
	of            api.ReplicaListArgs // the origin's zone, vPool, and snapshot or VDI
	best          func(pool string, found []held) held
	org           func(j *job)
}

// queueJob finds the replicas an order is made from, in this zone and
// every peer that answers but the origin (never asked: for recovery it is
// down), and queues a job making the volume from the best; none found is
// no data (204).
func (s *Service) queueJob(c *rpc.Call, o order) (any, error) {
	q := s.ask(c.R.Context())
	pool, err := s.target(q, o.target)
	if err != nil {
		return nil, err
	}
	found, err := q.replicas(o.of, o.of.OriginZone)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nothing{}, nil
	}
	h := o.best(pool, found)
	j := job{Kind: o.kind, By: c.User, OrgZone: o.of.OriginZone, OrgVPool: o.of.OriginVPool,
		DstZone: s.opts.Zone, DstPool: pool, Tenant: o.target.DstTenantID, Bootable: o.target.IsBootable(),
		SrcZone: h.zone.Name(), SrcSnapshot: h.Snapshot, SrcVPool: h.VPool, Name: h.NameLabel,
		SrcSVM: q.node(h.zone.Name()).name, DstSVM: q.node(s.opts.Zone).name}
	o.org(&j)
	rowkey, err := s.queue(j)
	if err != nil {
		return nil, err
	}
	return kvolapi.Queued{Message: o.message, Rowkey: rowkey}, nil
}

func (s *Service) create(c *rpc.Call, a *kvolapi.CreateArgs) (any, error) {
	return s.queueJob(c, order{kind: kindCreate, message: "snapshot volume creating ...", target: &a.Target,
		of:   api.ReplicaListArgs{OriginZone: a.SrcZone, OriginVPool: a.SrcVolumeTypeID, OriginSnapshot: a.SrcSnapshotID},
		best: cheapest, org: func(j *job) { j.OrgSnapshot = a.SrcSnapshotID }})
}

func (s *Service) recovery(c *rpc.Call, a *kvolapi.RecoveryArgs) (any, error) {
	return s.queueJob(c, order{kind: kindRecovery, message: "recovery volume creating ...", target: &a.Target,
		of:   api.ReplicaListArgs{OriginZone: a.SrcZone, OriginVPool: a.SrcVolumeTypeID, OriginVDI: a.SrcVolumeID},
		best: newest, org: func(j *job) { j.OrgVolume = a.SrcVolumeID }})
}

// cheapest is the replica of one snapshot that costs least to make a
// volume of in pool: one here in pool is cloned (nothing copied), one
// here elsewhere copied locally, any other copied over NBD.
func cheapest(pool string, found []held) held {
	rank := func(h held) int {
		switch {
		case h.zone.Local() && h.VPool == pool:
			return 0
		case h.zone.Local():
			return 1
		}
		return 2
	}
	return slices.MinFunc(found, func(x, y held) int { return cmp.Compare(rank(x), rank(y)) })
}

// newest is the newest replicated state of a volume: by time across
// zones, by generation within one; between equals, the one here (listed
// first).
func newest(_ string, found []held) held {
	h := found[0]
	for _, x := range found[1:] {
		if newer(x, h) {
			h = x
		}
	}
	return h
}

// newer reports whether replica snapshot x was taken after y.
func newer(x, y held) bool {
	tx, _ := time.Parse(time.RFC3339Nano, x.Created)
	ty, _ := time.Parse(time.RFC3339Nano, y.Created)
	if x.zone.Name() == y.zone.Name() && tx.Equal(ty) {
		return x.Generation > y.Generation
	}
	return tx.After(ty)
}
