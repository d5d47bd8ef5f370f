package cinder

import (
	"fmt"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// A Cinder snapshot is a snapshot VDI (one whose data was destroyed for
// CBT is not shown: it can seed nothing). Its project is its own, or its
// volume's.

func (s *Surface) snapshotView(v volume.Volume) cinderapi.Snapshot {
	f := s.fields(v)
	return cinderapi.Snapshot{ID: v.Info.ID, Name: cinderapi.Text(v.Attrs.Xen.NameLabel),
		Description: cinderapi.Text(v.Attrs.Xen.NameDescription), Status: "available", Size: sizeGiB(v.Info.Size),
		CreatedAt: cinderapi.Time(v.Info.Created), VolumeID: v.Info.SnapshotOf, Metadata: orMap(f.Metadata),
		CGSnapshotID: cinderapi.Text(v.Attrs.Lifecycle.GroupSnapshot), Progress: "100%",
		ProjectID: cinderapi.Text(f.ProjectID)}
}

// snapshot finds a snapshot the caller may see.
func (s *Surface) snapshot(c *rpc.Call, tenant, id string) (volume.VDI, error) {
	v, err := s.vols.Get(id)
	if err != nil || v.Info.Kind != blockstore.KindSnapshot || !sees(c, tenant, s.fields(v.Volume).ProjectID) {
		return volume.VDI{}, fault.New(fault.NotFound, fault.CodeUUIDInvalid, []string{"snapshot", id},
			"Snapshot %s could not be found.", id)
	}
	return v, nil
}

func (s *Surface) snapshotShow(c *rpc.Call, a *cinderapi.SnapshotRef) (any, error) {
	v, err := s.snapshot(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"snapshot": s.snapshotView(v.Volume)}, nil
}

var snapshotSortKeys = []string{"created_at", "id", "name", "status", "size", "volume_id", "description"}

func (s *Surface) snapshotRows(c *rpc.Call, a *cinderapi.ListArgs) []row {
	all := listsAll(c, a)
	var rows []row
	s.vols.Each(func(v *volume.Volume) {
		if v.Info.Kind != blockstore.KindSnapshot {
			return
		}
		f := s.fields(*v)
		if !all && f.ProjectID != a.TenantID {
			return
		}
		d := s.snapshotView(*v)
		rows = append(rows, row{id: d.ID, summary: d, detail: d,
			fields: map[string]string{"id": d.ID, "name": v.Attrs.Xen.NameLabel, "status": d.Status,
				"size": fmt.Sprintf("%020d", d.Size), "volume_id": d.VolumeID, "created_at": d.CreatedAt,
				"description": v.Attrs.Xen.NameDescription, "cgsnapshot_id": v.Attrs.Lifecycle.GroupSnapshot,
				"project_id": f.ProjectID}})
	})
	return rows
}

// Cinder's snapshot list and detail views are the same.
func (s *Surface) snapshotList(c *rpc.Call, a *cinderapi.ListArgs) (any, error) {
	return s.listOf(c, a, "snapshots", "snapshots_links", snapshotSortKeys, true, s.snapshotRows)
}

func (s *Surface) snapshotCreate(c *rpc.Call, a *cinderapi.SnapshotCreateArgs) (any, error) {
	if _, err := s.volume(c, a.TenantID, a.VolumeID); err != nil {
		return nil, err
	}
	name, desc := a.Name, a.Description
	v, err := s.vols.SnapshotAs(a.VolumeID, volume.Derivation{NameLabel: &name, NameDescription: &desc, By: c.User,
		Surfaces: map[string][]byte{namespace: mustJSON(volumeAttrs{ProjectID: a.TenantID, UserID: c.User, Metadata: a.Metadata})}})
	if err != nil {
		return nil, err
	}
	return map[string]any{"snapshot": s.snapshotView(v.Volume)}, nil
}

func (s *Surface) snapshotDelete(c *rpc.Call, a *cinderapi.SnapshotRef) (any, error) {
	v, err := s.snapshot(c, a.TenantID, a.ID)
	if err != nil {
		return nil, err
	}
	if g := v.Attrs.Lifecycle.GroupSnapshot; g != "" {
		return nil, fault.BadRequest(fault.CodeInvalidGroupSnapshot, []string{a.ID},
			"Invalid snapshot: Snapshot %s is part of cgsnapshot %s; delete the cgsnapshot as a whole.", a.ID, g)
	}
	return nil, s.vols.Destroy(a.ID, c.User)
}
