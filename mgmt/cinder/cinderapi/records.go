package cinderapi

import "time"

// TimeFormat is how Cinder writes times: UTC, microseconds, no zone.
const TimeFormat = "2006-01-02T15:04:05.000000"

// Time formats t as Cinder does.
func Time(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Text is a string Cinder shows as null when unset.
func Text(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Link is one of a record's or a list's links.
type Link struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
	Type string `json:"type,omitempty"`
}

// Version is one entry of the version document.
type Version struct {
	ID         string      `json:"id"`
	Status     string      `json:"status"`
	Version    string      `json:"version"`
	MinVersion string      `json:"min_version"`
	Updated    string      `json:"updated"`
	Links      []Link      `json:"links"`
	MediaTypes []MediaType `json:"media-types"`
}

// MediaType is what a version speaks.
type MediaType struct {
	Base string `json:"base"`
	Type string `json:"type"`
}

// Versions is the version document.
type Versions struct {
	Versions []Version `json:"versions"`
}

// Summary is the summary view of a group or cgsnapshot.
type Summary struct {
	ID   string  `json:"id"`
	Name *string `json:"name"`
}

// Group is a consistency group's detail view.
type Group struct {
	ID               string   `json:"id"`
	Status           string   `json:"status"`
	AvailabilityZone string   `json:"availability_zone"`
	CreatedAt        string   `json:"created_at"`
	Name             *string  `json:"name"`
	Description      *string  `json:"description"`
	VolumeTypes      []string `json:"volume_types"`
}

// GroupSnapshot is a cgsnapshot's detail view.
type GroupSnapshot struct {
	ID                 string  `json:"id"`
	ConsistencyGroupID string  `json:"consistencygroup_id"`
	Status             string  `json:"status"`
	CreatedAt          string  `json:"created_at"`
	Name               *string `json:"name"`
	Description        *string `json:"description"`
}

// Attachment is one attachment of a volume: an NBD client's VBD.
type Attachment struct {
	ID           string  `json:"id"`
	AttachmentID string  `json:"attachment_id"`
	VolumeID     string  `json:"volume_id"`
	ServerID     *string `json:"server_id"`
	HostName     *string `json:"host_name"`
	Device       string  `json:"device"`
	AttachedAt   *string `json:"attached_at"`
}

// VolumeSummary is a volume's summary view.
type VolumeSummary struct {
	ID    string  `json:"id"`
	Name  *string `json:"name"`
	Links []Link  `json:"links"`
}

// Volume is a volume's detail view.
type Volume struct {
	ID                 string            `json:"id"`
	Name               *string           `json:"name"`
	Description        *string           `json:"description"`
	Status             string            `json:"status"`
	Size               int64             `json:"size"`
	AvailabilityZone   string            `json:"availability_zone"`
	CreatedAt          string            `json:"created_at"`
	UpdatedAt          *string           `json:"updated_at"`
	VolumeType         string            `json:"volume_type"`
	SnapshotID         *string           `json:"snapshot_id"`
	SourceVolID        *string           `json:"source_volid"`
	ConsistencyGroupID *string           `json:"consistencygroup_id"`
	Metadata           map[string]string `json:"metadata"`
	Bootable           string            `json:"bootable"`
	Encrypted          bool              `json:"encrypted"`
	Multiattach        bool              `json:"multiattach"`
	ReplicationStatus  string            `json:"replication_status"`
	MigrationStatus    *string           `json:"migration_status"`
	Attachments        []Attachment      `json:"attachments"`
	UserID             *string           `json:"user_id"`
	TenantID           *string           `json:"os-vol-tenant-attr:tenant_id"`
	Host               string            `json:"os-vol-host-attr:host"`
	Links              []Link            `json:"links"`
}

// Snapshot is a snapshot's view (Cinder's list and detail views match).
type Snapshot struct {
	ID           string            `json:"id"`
	Name         *string           `json:"name"`
	Description  *string           `json:"description"`
	Status       string            `json:"status"`
	Size         int64             `json:"size"`
	CreatedAt    string            `json:"created_at"`
	UpdatedAt    *string           `json:"updated_at"`
	VolumeID     string            `json:"volume_id"`
	Metadata     map[string]string `json:"metadata"`
	CGSnapshotID *string           `json:"cgsnapshot_id"`
	Progress     string            `json:"os-extended-snapshot-attributes:progress"`
	ProjectID    *string           `json:"os-extended-snapshot-attributes:project_id"`
}

// VolumeType is a volume type's view: a vPool.
type VolumeType struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Description    *string           `json:"description"`
	IsPublic       bool              `json:"is_public"`
	ExtraSpecs     map[string]string `json:"extra_specs"`
	AccessIsPublic bool              `json:"os-volume-type-access:is_public"`
}

// Namespace is the Cinder surface's attribute namespace on a VDI
// (volume.CreateRequest.Surfaces).
const Namespace = "cinder"

// VolumeAttrs are Cinder's fields of a volume or snapshot that the VDI
// does not have, kept in Namespace. The name and description are the
// VDI's name_label and name_description, so both surfaces show one name.
// Beside the Cinder surface, only kvol writes them: a volume it makes
// belongs to a tenant (dst-tenant-id) and may be bootable.
type VolumeAttrs struct {
	ProjectID        string            `json:"project_id,omitempty"`
	UserID           string            `json:"user_id,omitempty"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	SnapshotID       string            `json:"snapshot_id,omitempty"`
	SourceVolID      string            `json:"source_volid,omitempty"`
	Bootable         bool              `json:"bootable,omitempty"`
}
