package cinderapi

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// NoArgs is a call without arguments.
type NoArgs struct{}

// VersionArgs name an API version.
type VersionArgs struct {
	API string `path:"api" doc:"v2 or v3"`
}

// DefaultProject is the project of VDIs made through another surface, and
// vdiskctl's project unless told otherwise.
const DefaultProject = "default"

// Tenant is the project every path names.
type Tenant struct {
	TenantID string `path:"tenant_id" doc:"the project (tenant) the objects belong to"`
}

// ListArgs are Cinder's list parameters (cinder/api/common.py). They are
// strings so that a bad value gets Cinder's own message.
type ListArgs struct {
	Tenant
	AllTenants string `query:"all_tenants" doc:"1: every project's objects (pool-admin; ignored for others, as Cinder)"`
	Limit      string `query:"limit" doc:"at most this many (default and maximum 1000)"`
	Marker     string `query:"marker" doc:"the id of the last object of the previous page"`
	Offset     string `query:"offset" doc:"skip this many"`
	SortKey    string `query:"sort_key" doc:"created_at (default), id, name, status, ..."`
	SortDir    string `query:"sort_dir" doc:"desc (default) or asc"`
	Sort       string `query:"sort" doc:"key:dir,key:dir; not with sort_key or sort_dir"`
	// Filters are the other query parameters: field=value filters. A
	// filter on a field the objects do not have matches nothing (Cinder).
	Filters map[string]string `json:"-"`
}

// SetFilters receives the query parameters the call does not declare.
func (a *ListArgs) SetFilters(f map[string]string) { a.Filters = f }

// AllProjects reports whether all_tenants asks for every project's.
func (a *ListArgs) AllProjects() bool {
	switch strings.ToLower(a.AllTenants) {
	case "1", "true", "yes", "on", "y", "t":
		return true
	}
	return false
}

// GroupRef names a consistency group.
type GroupRef struct {
	Tenant
	ID string `path:"consistencygroup_id" doc:"the consistency group"`
}

// GroupSnapshotRef names a cgsnapshot.
type GroupSnapshotRef struct {
	Tenant
	ID string `path:"cgsnapshot_id" doc:"the cgsnapshot"`
}

// VolumeRef names a volume.
type VolumeRef struct {
	Tenant
	ID string `path:"volume_id" doc:"the volume (a VDI's uuid)"`
}

// SnapshotRef names a snapshot.
type SnapshotRef struct {
	Tenant
	ID string `path:"snapshot_id" doc:"the snapshot (a VDI's uuid)"`
}

// TypeRef names a volume type.
type TypeRef struct {
	Tenant
	ID string `path:"volume_type_id" doc:"the volume type: a vPool's guid or name"`
}

// TypeListArgs filter the volume types.
type TypeListArgs struct {
	Tenant
	IsPublic string `query:"is_public" doc:"accepted; every vPool is public"`
}

// Ignored are members python-cinderclient sends that the server sets
// itself (Cinder ignores them too); vdiskctl has no flags for them.
type Ignored struct {
	UserID    *string `json:"user_id" cli:"-" doc:"ignored: the caller's"`
	ProjectID *string `json:"project_id" cli:"-" doc:"ignored: the path's"`
	Status    *string `json:"status" cli:"-" doc:"ignored: set by the server"`
}

// GroupCreateArgs create a consistency group.
type GroupCreateArgs struct {
	Tenant
	Name             string `json:"name" doc:"at most 255 characters"`
	Description      string `json:"description" doc:"at most 255 characters"`
	VolumeTypes      string `json:"volume_types" required:"true" doc:"comma-separated volume type names or ids (vPools)"`
	AvailabilityZone string `json:"availability_zone" doc:"this daemon's zone (default)"`
	Ignored
}

// Types splits VolumeTypes.
func (a *GroupCreateArgs) Types() []string { return SplitList(a.VolumeTypes) }

// Validate checks the arguments on their own.
func (a *GroupCreateArgs) Validate() *fault.Error {
	if len(a.Types()) == 0 {
		return fault.BadRequest(fault.CodeInvalidVolumeType, nil,
			"volume_types must be provided to create consistency group %s", a.Name)
	}
	return nil
}

// GroupFromSourceArgs create a group from a cgsnapshot or a group.
type GroupFromSourceArgs struct {
	Tenant
	Name         string `json:"name" doc:"at most 255 characters"`
	Description  string `json:"description" doc:"at most 255 characters"`
	CGSnapshotID string `json:"cgsnapshot_id" doc:"the cgsnapshot to clone (or source_cgid)"`
	SourceCGID   string `json:"source_cgid" doc:"the group to clone at one point in time (or cgsnapshot_id)"`
	Ignored
}

// GroupDeleteArgs delete a group.
type GroupDeleteArgs struct {
	GroupRef
	Force StrictBool `json:"force" doc:"delete the group's volumes too"`
}

// GroupUpdateArgs change a group.
type GroupUpdateArgs struct {
	GroupRef
	Name          *string `json:"name" doc:"a new name"`
	Description   *string `json:"description" doc:"a new description"`
	AddVolumes    string  `json:"add_volumes" doc:"comma-separated volume ids to add"`
	RemoveVolumes string  `json:"remove_volumes" doc:"comma-separated volume ids to remove"`
}

// GroupSnapshotCreateArgs snapshot a group.
type GroupSnapshotCreateArgs struct {
	Tenant
	ConsistencyGroupID string `json:"consistencygroup_id" required:"true" doc:"the group to snapshot"`
	Name               string `json:"name" doc:"at most 255 characters"`
	Description        string `json:"description" doc:"at most 255 characters"`
	Ignored
}

// VolumeCreateArgs create a volume.
type VolumeCreateArgs struct {
	Tenant
	Size               int               `json:"size" doc:"GiB; from a snapshot or volume, at least its size (default its size)"`
	Name               string            `json:"name" doc:"the VDI's name_label"`
	Description        string            `json:"description" doc:"the VDI's name_description"`
	VolumeType         string            `json:"volume_type" doc:"vPool guid or name (default: the group's first type, or the default vPool)"`
	ConsistencyGroupID string            `json:"consistencygroup_id" doc:"create it in this consistency group"`
	AvailabilityZone   string            `json:"availability_zone" doc:"this daemon's zone (default)"`
	Metadata           map[string]string `json:"metadata" doc:"key/value metadata"`
	SnapshotID         string            `json:"snapshot_id" doc:"clone this snapshot"`
	SourceVolID        string            `json:"source_volid" doc:"clone this volume"`
	ImageRef           string            `json:"imageRef" doc:"not supported (no image service)"`
	BackupID           string            `json:"backup_id" doc:"not supported (no backup service)"`
	GroupID            string            `json:"group_id" doc:"not supported (generic groups)"`
	Multiattach        bool              `json:"multiattach" doc:"accepted; NBD attachments are always shared"`
}

// SnapshotCreateArgs snapshot one volume.
type SnapshotCreateArgs struct {
	Tenant
	VolumeID    string            `json:"volume_id" required:"true" doc:"the volume"`
	Name        string            `json:"name" doc:"at most 255 characters"`
	Description string            `json:"description" doc:"at most 255 characters"`
	Force       StrictBool        `json:"force" doc:"accepted: an attached volume is snapshotted at one point in time anyway"`
	Metadata    map[string]string `json:"metadata" doc:"key/value metadata"`
}

// StrictBool is a boolean Cinder reads with oslo's strict parser: JSON
// true/false or one of its words; anything else is refused.
type StrictBool bool

// UnmarshalJSON accepts true, false and oslo's strict boolean strings.
func (b *StrictBool) UnmarshalJSON(raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = StrictBool(v)
		return nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "t", "true", "on", "y", "yes":
			*b = true
			return nil
		case "0", "f", "false", "off", "n", "no":
			*b = false
			return nil
		}
	}
	return fmt.Errorf("unrecognized value %s, acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'", raw)
}

// SplitList splits Cinder's comma-separated lists, dropping empty items
// and surrounding spaces.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
