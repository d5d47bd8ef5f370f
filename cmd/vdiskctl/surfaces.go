package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// surfaceSpec is how vdiskctl speaks one of the daemon's API surfaces:
// which of its calls get commands, under which names, and how a request
// carries its credentials and path.
type surfaceSpec struct {
	table *rpc.Table
	// groups names the command of each class; with only, the classes
	// listed are the only ones that get commands.
	groups map[string]struct{ name, short string }
	only   bool
	skip   map[string]bool // calls (by Name) without a command
	// fixed path variables ({api:v[23]} is v3); pathFlags are path
	// variables a global flag gives (Cinder's tenant_id, --project).
	fixed     map[string]string
	pathFlags map[string]func(*app) string
	// tasks: a 202 answer is a task to wait for (XenAPI REST).
	tasks bool
	// header sets the credentials: Bearer, or Cinder's X-Auth-Token.
	header string
}

var xenREST = surfaceSpec{
	table: api.Table,
	groups: map[string]struct{ name, short string }{
		"VDI":         {"vdi", "Virtual disk images (XenAPI's VDI class)"},
		"vPool":       {"vpool", "Storage pools (OpenvStorage's vPool)"},
		"task":        {"task", "Long-running calls: status, result, cancel"},
		"user":        {"user", "API users and their roles"},
		"node":        {"node", "This daemon: its zone, name and API and NBD addresses"},
		"zone":        {"zone", "Peer zones: other vdiskd daemons, and the user this one has there"},
		"replication": {"replication", "Replication relations: a vPool of this zone replicated to a peer zone"},
		"replica":     {"replica", "The replica snapshots this zone holds for other zones"},
	},
	tasks:  true,
	header: "Authorization",
}

var cinder = surfaceSpec{
	table: cinderapi.Table,
	groups: map[string]struct{ name, short string }{
		cinderapi.ClassGroup:         {"cg", "Consistency groups, through the Cinder API (--project)"},
		cinderapi.ClassGroupSnapshot: {"cgsnapshot", "Snapshots of consistency groups, through the Cinder API (--project)"},
	},
	only:      true,
	skip:      map[string]bool{cinderapi.GroupUpdateAlias.Name(): true},
	fixed:     map[string]string{"api": "v3"},
	pathFlags: map[string]func(*app) string{"tenant_id": (*app).projectName},
	header:    "X-Auth-Token",
}

var kvol = surfaceSpec{
	table: kvolapi.Table,
	groups: map[string]struct{ name, short string }{
		kvolapi.Class: {"kvol", "Volumes from another zone's snapshots, and recovery of a failed zone's volumes (seed 001's kvol API)"},
	},
	only:   true,
	header: "Authorization",
}

var vstats = surfaceSpec{
	table: vstatsapi.Table,
	groups: map[string]struct{ name, short string }{
		vstatsapi.ClassStats: {"stats", "Statistics subscriptions (vStats): counters, acquisition specs, data points, cache sync"},
	},
	only:   true,
	header: "Authorization",
}

// surfaces are every surface vdiskctl has commands for.
var surfaces = []*surfaceSpec{&xenREST, &cinder, &kvol, &vstats}

// surfaceOf finds the surface a call belongs to.
func surfaceOf(r *api.RPC) *surfaceSpec {
	for _, sp := range surfaces {
		if sp.table.Lookup(r.Name()) == r {
			return sp
		}
	}
	return &xenREST
}

// commanded reports whether r gets a command.
func (sp *surfaceSpec) commanded(r *api.RPC) bool {
	if sp.skip[r.Name()] {
		return false
	}
	_, named := sp.groups[r.Class]
	return named || !sp.only
}

func (sp *surfaceSpec) groupName(class string) string {
	if g, ok := sp.groups[class]; ok {
		return g.name
	}
	return strings.ToLower(class)
}

// credentials sends the token as the surface wants it.
func (sp *surfaceSpec) credentials(tok string) authFunc {
	if sp.header == "X-Auth-Token" {
		return func(r *http.Request) {
			if tok != "" {
				r.Header.Set("X-Auth-Token", tok)
			}
		}
	}
	return bearer(tok)
}

// pathVariable matches {name} and {name:pattern} in a route.
var pathVariable = regexp.MustCompile(`\{([A-Za-z_]+)(:[^}]*)?\}`)

// fillPath puts each path variable's value, escaped, into a route.
func fillPath(route string, vals map[string]string) string {
	return pathVariable.ReplaceAllStringFunc(route, func(m string) string {
		name := pathVariable.FindStringSubmatch(m)[1]
		return url.PathEscape(vals[name])
	})
}

// defaultProject is the Cinder project vdiskctl's cg commands use unless
// told otherwise: the one VDIs made with 'vdiskctl vdi create' are in.
const defaultProject = cinderapi.DefaultProject

// projectName is the Cinder project of the cg and cgsnapshot commands:
// --project, else VDISKCTL_PROJECT, else defaultProject.
func (a *app) projectName() string {
	switch {
	case a.project != "":
		return a.project
	case a.getenv("VDISKCTL_PROJECT") != "":
		return a.getenv("VDISKCTL_PROJECT")
	}
	return defaultProject
}
