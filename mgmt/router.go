package mgmt

import (
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/nbdexport"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
	"github.com/vdiskd/vdiskd/mgmt/xenapi"
	"github.com/vdiskd/vdiskd/nbd"
)

// Handler serves every API surface on one router. The XenAPI-style REST
// surface is the default: paths no surface claims get its error body.
//
// Each surface has its own prefixes, authentication, error body and task
// convention (see package rpc and docs/architecture.md): Cinder answers
// under /v2 and /v3 (and its version document at GET /), kvol under
// /api/kvol, vStats under /api/session and /api/stats, XenAPI's own wire
// protocol at POST /jsonrpc, /xmlrpc and /.
func (s *Server) Handler() http.Handler {
	rt := rpc.NewRouter(rpc.RouterOptions{Logger: s.log, Observe: s.opts.ObserveCall})
	rt.Mount(s.rest, api.Table, s.rest.Bindings())
	rt.Mount(s.cinder, cinderapi.Table, s.cinder.Bindings())
	rt.Mount(s.kvol, kvolapi.Table, s.kvol.Bindings())
	rt.Mount(s.vstats, vstatsapi.Table, s.vstats.Bindings())
	rt.Mount(s.xenapi, xenapi.Table, s.xenapi.Bindings())
	return rt.Handler()
}

// NBDAuth is how export names are authorised.
type NBDAuth = nbdexport.Auth

// The export-name policies.
const (
	NBDAuthToken = nbdexport.AuthToken // a valid token of a vm-admin or higher
	NBDAuthNone  = nbdexport.AuthNone  // anyone who reaches the port
)

// nbdRole is the least role that may attach over NBD: the role of
// get_nbd_info, which is how a client learns an export name.
var nbdRole = api.VDINBDInfo.Role

// NBDExports makes the VDIs an NBD export table.
func (s *Server) NBDExports(mode NBDAuth) nbd.Exports {
	return nbdexport.New(nbdexport.Options{Volumes: s.vols, Auth: s.auth, Store: s.store,
		Counters: s.opts.Counters, Logger: s.log, Role: nbdRole}, mode)
}
