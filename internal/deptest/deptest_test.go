package deptest

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/vdiskd/vdiskd"

// surfaces are the API frontends: each may import the services and
// package rpc, never another surface but its own contract (contracts).
var surfaces = []string{module + "/mgmt/xenrest", module + "/mgmt/nbdexport", module + "/mgmt/api",
	module + "/mgmt/cinder", module + "/mgmt/cinder/cinderapi", module + "/mgmt/kvol", module + "/mgmt/kvol/kvolapi",
	module + "/mgmt/vstats", module + "/mgmt/vstats/vstatsapi", module + "/mgmt/xenapi", module + "/mgmt/xenapi/wire"}

// rule is a set of packages (with everything of this module they reach)
// and the imports none of them may have.
type rule struct {
	name      string
	roots     []string
	forbidden map[string]string // import path (or prefix ending in "/") -> why
}

var rules = []rule{
	{
		name:  "the data path",
		roots: []string{module + "/blockstore", module + "/cbt", module + "/nbd"},
		forbidden: map[string]string{
			"net/http":                       "HTTP belongs to mgmt and metrics",
			"github.com/prometheus/":         "metrics read the data path, not the other way round",
			module + "/mgmt":                 "management calls into the data path",
			module + "/mgmt/":                "management calls into the data path",
			module + "/metrics":              "metrics are collected from outside",
			"github.com/gorilla/":            "routing belongs to mgmt",
			"github.com/pojntfx/go-nbd":      "the NBD server is our own",
			"github.com/digitalocean/go-nbd": "a client, for tests only",
		},
	},
	{
		name: "the management services",
		roots: []string{module + "/mgmt/volume", module + "/mgmt/auth", module + "/mgmt/task",
			module + "/mgmt/kv", module + "/mgmt/fault", module + "/mgmt/zone", module + "/mgmt/replication",
			module + "/mgmt/stats"},
		forbidden: map[string]string{
			"net/http":            "services are transport-free: every surface calls them",
			"github.com/gorilla/": "routing belongs to package rpc and the surfaces",
			module + "/mgmt":      "the composition root calls the services",
			module + "/mgmt/rpc":  "the call mechanism is the surfaces'",
			module + "/metrics":   "statistics are the surfaces' and the root's",
		},
	},
}

// contracts are the declaration packages each surface may import: the
// one it implements, for kvol the REST records zones answer each other in
// (the peer protocol) and Cinder's fields of the volumes it makes, for
// XenAPI's wire the XenAPI records it shares with REST (mgmt/xenrecord).
var contracts = map[string][]string{
	module + "/mgmt/xenrest": {module + "/mgmt/api"},
	module + "/mgmt/cinder":  {module + "/mgmt/cinder/cinderapi"},
	module + "/mgmt/kvol":    {module + "/mgmt/kvol/kvolapi", module + "/mgmt/api", module + "/mgmt/cinder/cinderapi"},
	module + "/mgmt/vstats":  {module + "/mgmt/vstats/vstatsapi"},
	module + "/mgmt/xenapi":  {module + "/mgmt/xenapi/wire", module + "/mgmt/api"},
}

func init() {
	// No service imports a surface.
	for _, s := range surfaces {
		rules[1].forbidden[s] = "a service never depends on a surface"
	}
	// No surface imports another.
	for _, s := range surfaces {
		r := rule{name: "surface " + strings.TrimPrefix(s, module+"/"), roots: []string{s}, forbidden: map[string]string{}}
		for _, other := range surfaces {
			if other != s && !slices.Contains(contracts[s], other) {
				r.forbidden[other] = "surfaces never import each other"
			}
		}
		rules = append(rules, r)
	}
}

type pkg struct {
	ImportPath string
	Imports    []string
}

// TestImports walks every package of this module reachable from each
// rule's roots and checks its direct imports. (pebble itself imports
// prometheus and, through it, net/http; that is pebble's business.)
func TestImports(t *testing.T) {
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			args := append([]string{"list", "-deps", "-json"}, r.roots...)
			out, err := exec.Command("go", args...).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			dec := json.NewDecoder(strings.NewReader(string(out)))
			checked := 0
			for {
				var p pkg
				if err := dec.Decode(&p); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(p.ImportPath, module+"/") {
					continue
				}
				checked++
				for _, imp := range p.Imports {
					for bad, why := range r.forbidden {
						if imp == bad || (strings.HasSuffix(bad, "/") && strings.HasPrefix(imp, bad) && !slices.Contains(r.roots, imp)) {
							t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
						}
					}
				}
			}
			if checked < len(r.roots) {
				t.Fatalf("checked %d packages of the module, want at least %d", checked, len(r.roots))
			}
		})
	}
}
