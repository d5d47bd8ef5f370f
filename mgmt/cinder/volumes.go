package cinder

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/gorilla/mux"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// gib is Cinder's unit of size.
const gib = 1 << 30

// volumeAttrs are Cinder's fields of a volume or snapshot that the VDI
// does not have (cinderapi.VolumeAttrs).
type volumeAttrs = cinderapi.VolumeAttrs

// volumeFields reads a VDI's Cinder fields (ProjectID empty if it has
// none: see Surface.fields).
func volumeFields(v volume.Volume) volumeAttrs {
	var a volumeAttrs
	if raw := v.Attrs.Surfaces[namespace]; raw != nil {
		_ = json.Unmarshal(raw, &a) // written by this surface only
	}
	return a
}

// maxLineage bounds the walk from a VDI to the one its project comes from.
const maxLineage = 64

// fields reads a VDI's Cinder fields with its project: its own, else (a
// snapshot or clone made through another surface) that of the VDI it was
// made from, else cinderapi.DefaultProject. vdiskd users are not bound to
// projects, and the XenAPI surface shows every VDI to every user, so the
// default project hides nothing that was not already shown.
func (s *Surface) fields(v volume.Volume) volumeAttrs {
	f := volumeFields(v)
	for i := 0; f.ProjectID == "" && i < maxLineage; i++ {
		from := v.Info.SnapshotOf
		if from == "" {
			from = v.Info.CloneOf
		}
		if from == "" {
			break
		}
		parent, ferr := s.vols.Lookup(from)
		if ferr != nil {
			break // gone: the default project
		}
		v = parent
		f.ProjectID = volumeFields(v).ProjectID
	}
	if f.ProjectID == "" {
		f.ProjectID = cinderapi.DefaultProject
	}
	return f
}

// sizeGiB is a size in bytes as Cinder's whole GiB, rounded up.
func sizeGiB(bytes uint64) int64 { return int64((bytes + gib - 1) / gib) }

// volumeStatus derives a volume's Cinder status from its VDI: creating
// while a copy fills it, in-use while an NBD client has it attached,
// available otherwise. (Deletes are one commit, so deleting is never seen.)
func volumeStatus(v volume.Volume) string {
	switch {
	case v.Attrs.Lifecycle.Building != "":
		return "creating"
	case v.Attached:
		return "in-use"
	}
	return "available"
}

func (s *Surface) poolName(guid string) string {
	if p, err := s.vols.Pool(guid, "volume type"); err == nil {
		return p.Name
	}
	return guid
}

// volumeView is a volume's detail view; vbds are its attachments, when
// known.
func (s *Surface) volumeView(c *rpc.Call, v volume.Volume, vbds []string, migrating bool) cinderapi.Volume {
	f := s.fields(v)
	id := v.Info.ID
	out := cinderapi.Volume{
		ID: id, Name: cinderapi.Text(v.Attrs.Xen.NameLabel), Description: cinderapi.Text(v.Attrs.Xen.NameDescription),
		Status: volumeStatus(v), Size: sizeGiB(v.Info.Size), AvailabilityZone: s.opts.Zone,
		CreatedAt: cinderapi.Time(v.Info.Created), VolumeType: s.poolName(v.Info.Pool),
		SnapshotID: cinderapi.Text(f.SnapshotID), SourceVolID: cinderapi.Text(f.SourceVolID),
		ConsistencyGroupID: cinderapi.Text(v.Attrs.Lifecycle.Group), Metadata: orMap(f.Metadata),
		Bootable: strconv.FormatBool(f.Bootable), Multiattach: true, ReplicationStatus: "disabled", Attachments: []cinderapi.Attachment{},
		UserID: cinderapi.Text(f.UserID), TenantID: cinderapi.Text(f.ProjectID), Host: "vdiskd@" + s.poolName(v.Info.Pool),
		Links: s.links(c, "volumes", id),
	}
	if migrating {
		m := "migrating"
		out.MigrationStatus = &m
	}
	for _, b := range vbds {
		out.Attachments = append(out.Attachments, cinderapi.Attachment{ID: b, AttachmentID: b, VolumeID: id, Device: "nbd"})
	}
	return out
}

func orMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// links are an object's self and bookmark links.
func (s *Surface) links(c *rpc.Call, collection, id string) []cinderapi.Link {
	scheme := "http"
	if c.R.TLS != nil {
		scheme = "https"
	}
	vars := mux.Vars(c.R)
	api, tenant := vars["api"], vars["tenant_id"]
	self := fmt.Sprintf("%s://%s/%s/%s/%s/%s", scheme, c.R.Host, api, tenant, collection, id)
	book := fmt.Sprintf("%s://%s/%s/%s/%s", scheme, c.R.Host, tenant, collection, id)
	return []cinderapi.Link{{Href: self, Rel: "self"}, {Href: book, Rel: "bookmark"}}
}

// volume finds a live VDI the caller may see through tenant.
func (s *Surface) volume(c *rpc.Call, tenant, id string) (volume.VDI, error) {
	v, err := s.vols.Get(id)
	if err != nil || v.Info.Kind != blockstore.KindLive || !sees(c, tenant, s.fields(v.Volume).ProjectID) {
		return volume.VDI{}, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"volume", id},
			"Volume %s could not be found.", id)
	}
	return v, nil
}

func migrating(v volume.VDI) bool {
	for _, op := range v.Operations {
		if op == "mirror" {
			return true
		}
	}
	return false
}

func (s *Surface) volumeShow(c *rpc.Call, a *cinderapi.VolumeRef) (any, error) {
	v, err := s.volume(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"volume": s.volumeView(c, v.Volume, v.VBDs, migrating(v))}, nil
}

var volumeSortKeys = []string{"created_at", "id", "name", "status", "size", "volume_type", "description", "availability_zone"}

func (s *Surface) volumeRows(c *rpc.Call, a *cinderapi.ListArgs) []row {
	all := listsAll(c, a)
	var rows []row
	s.vols.Each(func(v *volume.Volume) {
		if v.Info.Kind != blockstore.KindLive {
			return
		}
		f := s.fields(*v)
		if !all && f.ProjectID != a.TenantID {
			return
		}
		d := s.volumeView(c, *v, nil, false)
		rows = append(rows, row{id: v.Info.ID,
			summary: cinderapi.VolumeSummary{ID: d.ID, Name: d.Name, Links: d.Links}, detail: d,
			fields: map[string]string{"id": d.ID, "name": v.Attrs.Xen.NameLabel, "status": d.Status,
				"size": fmt.Sprintf("%020d", d.Size), "volume_type": d.VolumeType, "created_at": d.CreatedAt,
				"description": v.Attrs.Xen.NameDescription, "availability_zone": d.AvailabilityZone,
				"consistencygroup_id": v.Attrs.Lifecycle.Group, "project_id": f.ProjectID, "bootable": d.Bootable,
				"user_id": f.UserID}})
	})
	return rows
}

func (s *Surface) volumeList(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "volumes", "volumes_links", volumeSortKeys, false, s.volumeRows)
}

func (s *Surface) volumeDetail(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "volumes", "volumes_links", volumeSortKeys, true, s.volumeRows)
}

func (s *Surface) volumeCreate(c *rpc.Call, a *cinderapi.VolumeCreateArgs) (any, error) {
	for name, v := range map[string]string{"imageRef": a.ImageRef, "backup_id": a.BackupID, "group_id": a.GroupID} {
		if v != "" {
			return nil, fault.BadRequest(fault.CodeInvalidValue, []string{name, v},
				"Invalid input received: %s is not supported by vdiskd (no image, backup or generic-group service)", name)
		}
	}
	if err := s.checkZone(a.AvailabilityZone); err != nil {
		return nil, err
	}
	if a.SnapshotID != "" && a.SourceVolID != "" {
		return nil, fault.BadRequest(fault.CodeInvalidValue, nil, "Invalid input received: give snapshot_id or source_volid, not both")
	}
	if a.Size < 0 || (a.Size == 0 && a.SnapshotID == "" && a.SourceVolID == "") {
		return nil, fault.BadRequest(fault.CodeInvalidValue, []string{"size", fmt.Sprint(a.Size)},
			"Invalid input received: Volume size '%d' must be an integer and greater than 0", a.Size)
	}
	if a.Size > blockstore.MaxSize/gib {
		return nil, fault.BadRequest(fault.CodeInvalidValue, []string{"size", fmt.Sprint(a.Size)},
			"Invalid input received: Volume size '%d' GiB exceeds the largest vdiskd volume, %d GiB", a.Size, blockstore.MaxSize/gib)
	}
	fields := volumeAttrs{ProjectID: a.TenantID, UserID: c.User, AvailabilityZone: s.opts.Zone, Metadata: a.Metadata,
		SnapshotID: a.SnapshotID, SourceVolID: a.SourceVolID}
	surfaces := map[string][]byte{namespace: mustJSON(fields)}
	if a.SnapshotID != "" || a.SourceVolID != "" {
		return s.volumeFromSource(c, a, surfaces)
	}
	pool := a.VolumeType
	if a.ConsistencyGroupID != "" {
		if _, err := s.group(c, a.TenantID, a.ConsistencyGroupID); err != nil {
			return nil, err
		}
		if pool == "" {
			// cinder/volume/api.py refuses it too.
			return nil, fault.BadRequest(fault.CodeInvalidVolumeType, nil,
				"Invalid input received: volume_type must be provided when creating a volume in a consistency group.")
		}
	}
	v, err := s.vols.Create(volume.CreateRequest{Pool: pool, Size: uint64(a.Size) * gib,
		Xen: volume.XenAttrs{NameLabel: a.Name, NameDescription: a.Description}, Surfaces: surfaces,
		Group: a.ConsistencyGroupID, By: c.User})
	if err != nil {
		return nil, typeNotFound(err, pool)
	}
	return map[string]any{"volume": s.volumeView(c, v.Volume, v.VBDs, false)}, nil
}

// typeNotFound words an unknown vPool as Cinder's unknown volume type.
func typeNotFound(err error, ref string) error {
	if f, ok := fault.As(err); ok && f.Kind == fault.NotFound && len(f.Params) > 0 && f.Params[0] == "volume type" {
		return fault.New(fault.NotFound, f.Code, f.Params, "Volume type with name or id %s could not be found.", ref)
	}
	return err
}

// volumeFromSource clones a snapshot or volume the caller may see, then
// grows the clone to the size asked.
func (s *Surface) volumeFromSource(c *rpc.Call, a *cinderapi.VolumeCreateArgs, surfaces map[string][]byte) (any, error) {
	if a.ConsistencyGroupID != "" {
		return nil, fault.BadRequest(fault.CodeInvalidValue, []string{"consistencygroup_id", a.ConsistencyGroupID},
			"Invalid input received: a volume made from a snapshot or volume is not created in a consistency group; "+
				"create it, then add it with an update of the group")
	}
	src, kind, what := a.SnapshotID, blockstore.KindSnapshot, "Snapshot"
	if a.SourceVolID != "" {
		src, kind, what = a.SourceVolID, blockstore.KindLive, "Volume"
	}
	v, err := s.vols.Get(src)
	if err != nil || v.Info.Kind != kind || !sees(c, a.TenantID, s.fields(v.Volume).ProjectID) {
		return nil, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{what, src}, "%s %s could not be found.", what, src)
	}
	if a.VolumeType != "" {
		p, perr := s.vols.Pool(a.VolumeType, "volume type")
		if perr != nil {
			return nil, typeNotFound(perr, a.VolumeType)
		}
		if p.GUID != v.Info.Pool {
			return nil, fault.BadRequest(fault.CodeInvalidVolumeType, []string{a.VolumeType},
				"Invalid input received: a volume made from %s %s has its volume type %s", what, src, s.poolName(v.Info.Pool))
		}
	}
	size := uint64(a.Size) * gib
	if a.Size != 0 && size < v.Info.Size {
		return nil, fault.BadRequest(fault.CodeInvalidValue, []string{"size", fmt.Sprint(a.Size)},
			"Invalid input received: volume size %d GiB is smaller than the source's %d GiB", a.Size, sizeGiB(v.Info.Size))
	}
	name, desc := a.Name, a.Description
	// Grown, if asked, in the commit that makes it.
	clone, err := s.vols.CloneAs(src, volume.Derivation{NameLabel: &name, NameDescription: &desc, Surfaces: surfaces,
		Size: size, By: c.User})
	if err != nil {
		return nil, err
	}
	return map[string]any{"volume": s.volumeView(c, clone.Volume, clone.VBDs, false)}, nil
}

func (s *Surface) volumeDelete(c *rpc.Call, a *cinderapi.VolumeRef) (any, error) {
	v, err := s.volume(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	if g := v.Attrs.Lifecycle.Group; g != "" {
		return nil, fault.BadRequest(fault.CodeInvalidVolume, []string{a.ID},
			"Invalid volume: Volume %s is in consistency group %s: delete the group with force, or remove the volume from it first.", a.ID, g)
	}
	if len(v.Snapshots) > 0 {
		return nil, fault.BadRequest(fault.CodeInvalidVolume, []string{a.ID},
			"Invalid volume: Volume %s still has %d dependent snapshots.", a.ID, len(v.Snapshots))
	}
	return nil, s.vols.Destroy(a.ID, c.User)
}

// typeView is a vPool as a volume type.
func typeView(p volume.Pool) cinderapi.VolumeType {
	return cinderapi.VolumeType{ID: p.GUID, Name: p.Name, Description: cinderapi.Text(p.Description),
		IsPublic: true, AccessIsPublic: true, ExtraSpecs: map[string]string{}}
}

func (s *Surface) typeList(c *rpc.Call, a *cinderapi.TypeListArgs) (any, error) {
	pools := s.vols.Pools()
	slices.SortFunc(pools, func(a, b volume.Pool) int { return cmp.Compare(a.Name, b.Name) })
	out := make([]cinderapi.VolumeType, 0, len(pools))
	for _, p := range pools {
		out = append(out, typeView(p))
	}
	return map[string]any{"volume_types": out}, nil
}

func (s *Surface) typeShow(c *rpc.Call, a *cinderapi.TypeRef) (any, error) {
	p, err := s.vols.Pool(a.ID, "volume type")
	if err != nil {
		return nil, typeNotFound(err, a.ID)
	}
	return map[string]any{"volume_type": typeView(p)}, nil
}
