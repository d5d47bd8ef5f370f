package cinder

import (
	"fmt"

	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// apiVersion is the one v3 microversion served: the base, which carries
// consistency groups without any microversion.
const apiVersion = "3.0"

// versionDocs are Cinder's version entries, v3 first (clients take the
// first 3.x they meet).
func versionDocs(c *rpc.Call) []cinderapi.Version {
	scheme := "http"
	if c.R.TLS != nil {
		scheme = "https"
	}
	root := fmt.Sprintf("%s://%s/", scheme, c.R.Host)
	media := []cinderapi.MediaType{{Base: "application/json", Type: "application/vnd.openstack.volume+json;version=3"}}
	return []cinderapi.Version{
		{ID: "v3.0", Status: "CURRENT", Version: apiVersion, MinVersion: apiVersion, Updated: "2016-02-08T12:20:21Z",
			Links: []cinderapi.Link{{Href: root + "v3/", Rel: "self"}}, MediaTypes: media},
		{ID: "v2.0", Status: "DEPRECATED", Version: "", MinVersion: "", Updated: "2017-02-25T12:00:00Z",
			Links: []cinderapi.Link{{Href: root + "v2/", Rel: "self"}}, MediaTypes: media},
	}
}

func (s *Surface) versions(c *rpc.Call, _ *cinderapi.NoArgs) (any, error) {
	return cinderapi.Versions{Versions: versionDocs(c)}, nil
}

func (s *Surface) version(c *rpc.Call, a *cinderapi.VersionArgs) (any, error) {
	for _, v := range versionDocs(c) {
		if v.ID == a.API+".0" {
			return cinderapi.Versions{Versions: []cinderapi.Version{v}}, nil
		}
	}
	return nil, fault.Missing("version", a.API) // the route admits v2 and v3 only
}
