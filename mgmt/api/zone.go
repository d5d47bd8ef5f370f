package api

import (
	"net/http"
	"net/url"
	"strings"
)

// Node is what a daemon says of itself: peers read it to learn its zone
// and NBD address.
type Node struct {
	GUID    string    `json:"guid"`
	Name    string    `json:"name"`
	Zone    string    `json:"zone"`
	Address string    `json:"address"` // where clients reach its API
	NBD     []NBDInfo `json:"nbd"`     // its NBD listener(s), export names empty
}

// Zone is a registered peer zone: another vdiskd daemon. Its password is
// never part of it.
type Zone struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Username  string `json:"username"`
	CAPEM     string `json:"ca_pem,omitempty"`
	Created   string `json:"created"`
	Reachable bool   `json:"reachable"`
	CheckedAt string `json:"checked_at,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// What the peer said of itself at its last answer.
	PeerNode string   `json:"peer_node,omitempty"`
	PeerGUID string   `json:"peer_guid,omitempty"`
	NBD      []string `json:"nbd,omitempty"`
	NBDTLS   bool     `json:"nbd_tls,omitempty"`
}

// ZoneRef names a zone.
type ZoneRef struct {
	Name string `path:"name" doc:"the zone's name"`
}

// ZoneListArgs page the zones.
type ZoneListArgs struct {
	PageArgs
}

// ZoneCreateArgs register a peer zone.
type ZoneCreateArgs struct {
	Name     string `json:"name" required:"true" doc:"the peer's zone name (its --zone): letters, digits, . _ - (1 to 64)"`
	URL      string `json:"url" required:"true" doc:"the peer's API: http://host:port or https://host:port"`
	Username string `json:"username" required:"true" doc:"a user of the peer, with the role replication needs there (vm-admin)"`
	Password string `json:"password" required:"true" doc:"that user's password: stored 0600, never returned or logged"`
	CAPEM    string `json:"ca_pem" doc:"PEM CA certificate(s) to trust for an https peer and its NBD TLS"`
}

// Validate checks the fields the CLI can check before sending.
func (a ZoneCreateArgs) Validate() *Error {
	if !nameRE.MatchString(a.Name) {
		return InvalidValue("name", a.Name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "api" {
		return InvalidValue("url", a.URL, "must be http://host:port or https://host:port")
	}
	return firstError(checkName("username", a.Username))
}

// Node and zone calls.
var (
	NodeGet = declare[NoArgs](RPC{Class: "node", Call: "get", Methods: []string{http.MethodGet}, Path: "/api/node",
		Role: ReadOnly, Summary: "This daemon: its guid, name, zone, API address and NBD listener(s).",
		Returns: "the node"})

	ZoneList = declare[ZoneListArgs](RPC{Class: "zone", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/zones", Role: PoolAdmin, Summary: "List the peer zones, each with whether it answered its last probe.",
		Returns: "a list of zones"})
	ZoneGet = declare[ZoneRef](RPC{Class: "zone", Call: "get", Methods: []string{http.MethodGet},
		Path: "/api/zones/{name}", Role: PoolAdmin, Summary: "Read one peer zone.", Returns: "the zone"})
	ZoneCreate = declare[ZoneCreateArgs](RPC{Class: "zone", Call: "create", Path: "/api/zones", Role: PoolAdmin,
		Status: http.StatusCreated,
		Summary: "Register a peer zone: another vdiskd, and a user there. The peer is asked who it is; " +
			"one that answers with another zone name is refused, one that does not answer is registered unreachable.",
		Returns: "the new zone"})
	ZoneDelete = declare[ZoneRef](RPC{Class: "zone", Call: "delete", Methods: []string{http.MethodDelete},
		Path: "/api/zones/{name}", Role: PoolAdmin, Status: http.StatusNoContent,
		Summary: "Forget a peer zone and the credentials kept for it.", Returns: "nothing (204)"})
)
