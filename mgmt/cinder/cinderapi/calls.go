// Package cinderapi is the contract of vdiskd's Cinder surface: the calls
// of OpenStack Cinder's v2 consistency-group API (seed 002) and just
// enough of its volumes, snapshots and volume types for a Cinder client to
// use groups end to end, as one table. The server mounts it (package
// cinder), vdiskctl builds its cg and cgsnapshot commands from it, and
// docs/api.md is generated from it.
//
// Every path serves under /v2/{tenant_id} and /v3/{tenant_id}: today's
// clients (python-cinderclient 9) speak v3 code paths to whichever
// endpoint they are given.
package cinderapi

import (
	"net/http"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

// Table is the Cinder surface's calls.
var Table = rpc.NewTable("Cinder")

// base is the path every call but the version document sits below.
const base = "/{api:v[23]}/{tenant_id}"

// Classes, as the reference and the CLI group them.
const (
	ClassGroup         = "consistencygroup"
	ClassGroupSnapshot = "cgsnapshot"
	ClassVolume        = "volume"
	ClassSnapshot      = "snapshot"
	ClassType          = "volume_type"
	ClassVersion       = "version"
)

func declare[A any](r rpc.RPC) *rpc.Decl[A] {
	if r.Role == 0 && r.Auth == rpc.AuthToken {
		r.Role = auth.ReadOnly
	}
	return rpc.Declare[A](Table, r)
}

func get[A any](class, call, path, summary, returns string) *rpc.Decl[A] {
	return declare[A](rpc.RPC{Class: class, Call: call, Methods: []string{http.MethodGet}, Path: base + path,
		Summary: summary, Returns: returns})
}

// mutate declares a call that changes something: vm-admin, 202.
func mutate[A any](class, call, method, path, envelope, summary, returns string) *rpc.Decl[A] {
	return declare[A](rpc.RPC{Class: class, Call: call, Methods: []string{method}, Path: base + path,
		Role: auth.VMAdmin, Status: http.StatusAccepted, Envelope: envelope, Summary: summary, Returns: returns})
}

// The calls.
var (
	VersionList = declare[NoArgs](rpc.RPC{Class: ClassVersion, Call: "list", Methods: []string{http.MethodGet},
		Path: "/", Auth: rpc.AuthNone, Status: http.StatusMultipleChoices,
		Summary: "The API versions this endpoint serves; clients read it first.",
		Returns: `{"versions":[{id, status, version, min_version, updated, links}]} (300, as Cinder)`})
	VersionOf = declare[VersionArgs](rpc.RPC{Class: ClassVersion, Call: "show", Methods: []string{http.MethodGet},
		Path: "/{api:v[23]}/", Auth: rpc.AuthNone,
		Summary: "One API version's document.", Returns: `{"versions":[...]} with that version`})

	GroupList = get[ListArgs](ClassGroup, "list", "/consistencygroups",
		"Lists consistency groups (summary view).", `{"consistencygroups":[{id, name}], "consistencygroup_links"?}`)
	GroupDetail = get[ListArgs](ClassGroup, "detail", "/consistencygroups/detail",
		"Lists consistency groups with details.", `{"consistencygroups":[consistencygroup...], "consistencygroup_links"?}`)
	GroupShow = get[GroupRef](ClassGroup, "show", "/consistencygroups/{consistencygroup_id}",
		"Shows a consistency group.", `{"consistencygroup":{id, name, description, status, availability_zone, created_at, volume_types}}`)
	GroupCreate = mutate[GroupCreateArgs](ClassGroup, "create", http.MethodPost, "/consistencygroups", "consistencygroup",
		"Creates an empty consistency group whose volumes may have any of the volume types (vPools) given.",
		`{"consistencygroup":{id, name}}`)
	GroupCreateFromSource = mutate[GroupFromSourceArgs](ClassGroup, "create_from_src", http.MethodPost,
		"/consistencygroups/create_from_src", "consistencygroup-from-src",
		"Creates a consistency group with one new volume per volume of a cgsnapshot, or of a source group frozen at one point in time; nothing is copied.",
		`{"consistencygroup":{id, name}}`)
	GroupDelete = mutate[GroupDeleteArgs](ClassGroup, "delete", http.MethodPost,
		"/consistencygroups/{consistencygroup_id}/delete", "consistencygroup",
		"Deletes an empty consistency group; with force, its volumes too, in one commit.", "nothing (202)")
	GroupUpdate = declare[GroupUpdateArgs](rpc.RPC{Class: ClassGroup, Call: "update",
		Methods: []string{http.MethodPut}, Path: base + "/consistencygroups/{consistencygroup_id}/update",
		Role: auth.VMAdmin, Status: http.StatusAccepted, Envelope: "consistencygroup",
		Summary: "Renames a consistency group and adds and removes volumes, in one commit.", Returns: "nothing (202)"})
	// python-cinderclient PUTs the update to the group itself.
	GroupUpdateAlias = declare[GroupUpdateArgs](rpc.RPC{Class: ClassGroup, Call: "update_at_group",
		Methods: []string{http.MethodPut}, Path: base + "/consistencygroups/{consistencygroup_id}",
		Role: auth.VMAdmin, Status: http.StatusAccepted, Envelope: "consistencygroup",
		Summary: "consistencygroup.update at the group's own path, where python-cinderclient sends it.",
		Returns: "nothing (202)"})

	GroupSnapshotList = get[ListArgs](ClassGroupSnapshot, "list", "/cgsnapshots",
		"Lists cgsnapshots (summary view); pages with offset and limit.", `{"cgsnapshots":[{id, name}]}`)
	GroupSnapshotDetail = get[ListArgs](ClassGroupSnapshot, "detail", "/cgsnapshots/detail",
		"Lists cgsnapshots with details.", `{"cgsnapshots":[cgsnapshot...]}`)
	GroupSnapshotShow = get[GroupSnapshotRef](ClassGroupSnapshot, "show", "/cgsnapshots/{cgsnapshot_id}",
		"Shows a cgsnapshot.", `{"cgsnapshot":{id, consistencygroup_id, status, created_at, name, description}}`)
	GroupSnapshotCreate = mutate[GroupSnapshotCreateArgs](ClassGroupSnapshot, "create", http.MethodPost, "/cgsnapshots",
		"cgsnapshot", "Snapshots every volume of a consistency group at one point in time, in one durable commit.",
		`{"cgsnapshot":{id, name}}`)
	GroupSnapshotDelete = mutate[GroupSnapshotRef](ClassGroupSnapshot, "delete", http.MethodDelete,
		"/cgsnapshots/{cgsnapshot_id}", "", "Deletes a cgsnapshot and its member snapshots, in one commit.",
		"nothing (202)")

	VolumeList = get[ListArgs](ClassVolume, "list", "/volumes",
		"Lists volumes (summary view): the VDIs of the project.", `{"volumes":[{id, name, links}], "volumes_links"?}`)
	VolumeDetail = get[ListArgs](ClassVolume, "detail", "/volumes/detail",
		"Lists volumes with details.", `{"volumes":[volume...], "volumes_links"?}`)
	VolumeShow = get[VolumeRef](ClassVolume, "show", "/volumes/{volume_id}",
		"Shows a volume: a VDI, its status derived from it.", `{"volume":{...}}`)
	VolumeCreate = mutate[VolumeCreateArgs](ClassVolume, "create", http.MethodPost, "/volumes", "volume",
		"Creates a volume (a VDI): empty, or a clone of a snapshot or volume; optionally in a consistency group.",
		`{"volume":{...}}`)
	VolumeDelete = mutate[VolumeRef](ClassVolume, "delete", http.MethodDelete, "/volumes/{volume_id}", "",
		"Deletes a volume that is in no consistency group, attached to nothing and has no snapshots.", "nothing (202)")

	SnapshotList = get[ListArgs](ClassSnapshot, "list", "/snapshots",
		"Lists snapshots (summary view).", `{"snapshots":[snapshot...], "snapshots_links"?}`)
	SnapshotDetail = get[ListArgs](ClassSnapshot, "detail", "/snapshots/detail",
		"Lists snapshots with details; filter cgsnapshot_id lists a cgsnapshot's members.", `{"snapshots":[snapshot...]}`)
	SnapshotShow = get[SnapshotRef](ClassSnapshot, "show", "/snapshots/{snapshot_id}",
		"Shows a snapshot.", `{"snapshot":{...}}`)
	SnapshotCreate = mutate[SnapshotCreateArgs](ClassSnapshot, "create", http.MethodPost, "/snapshots", "snapshot",
		"Snapshots one volume.", `{"snapshot":{...}}`)
	SnapshotDelete = mutate[SnapshotRef](ClassSnapshot, "delete", http.MethodDelete, "/snapshots/{snapshot_id}", "",
		"Deletes a snapshot that is no cgsnapshot's member.", "nothing (202)")

	TypeList = get[TypeListArgs](ClassType, "list", "/types",
		"Lists volume types: the vPools.", `{"volume_types":[{id, name, description, is_public, extra_specs}]}`)
	TypeShow = get[TypeRef](ClassType, "show", "/types/{volume_type_id}",
		"Shows a volume type (a vPool, by guid or name).", `{"volume_type":{...}}`)
)
