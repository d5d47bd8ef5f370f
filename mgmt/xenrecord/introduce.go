package xenrecord

import (
	"time"

	"github.com/google/uuid"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// Introduction reads VDI.introduce's arguments into the service's request,
// with the checks the service leaves to the surface (the uuid's form, the
// type, managed, the snapshot time's text), for both XenAPI surfaces.
func Introduction(a *api.VDIIntroduceArgs) (volume.IntroduceRequest, error) {
	id := a.UUIDArg
	if _, err := uuid.Parse(id); err != nil {
		return volume.IntroduceRequest{}, api.BadRequest(api.CodeUUIDInvalid, []string{"VDI", id}, "%q is not a UUID", id)
	}
	if a.Type == "cbt_metadata" {
		return volume.IntroduceRequest{}, api.Conflict(api.CodeVDIIncompatible, []string{"", "cbt_metadata"}, "introduce cannot set type cbt_metadata")
	}
	if a.Managed != nil && !*a.Managed {
		return volume.IntroduceRequest{}, api.InvalidValue("managed", "false", "vdiskd only holds managed VDIs")
	}
	var snapTime time.Time
	if a.SnapshotTime != "" {
		t, err := time.Parse(time.RFC3339, a.SnapshotTime)
		if err != nil {
			return volume.IntroduceRequest{}, api.InvalidValue("snapshot_time", a.SnapshotTime, "expected RFC 3339, like 2026-01-02T15:04:05Z")
		}
		snapTime = t.UTC()
		if y := snapTime.Year(); y < 1 || y > 9999 {
			return volume.IntroduceRequest{}, api.InvalidValue("snapshot_time", a.SnapshotTime, "year %d is out of range", y)
		}
	}
	return volume.IntroduceRequest{UUID: id, Location: a.Location, Pool: a.SR,
		Xen: volume.XenAttrs{NameLabel: a.NameLabel, NameDescription: a.NameDescription, Type: a.Type,
			MetadataOfPool: a.MetadataOfPool, OtherConfig: a.OtherConfig, SMConfig: a.SMConfig, XenstoreData: a.XenstoreData},
		Sharable: a.Sharable, ReadOnly: a.ReadOnly, IsASnapshot: a.IsASnapshot, SnapshotOf: a.SnapshotOf, SnapshotTime: snapTime}, nil
}

// Creation reads VDI.create's arguments into the service's request, for
// both XenAPI surfaces. Tags are a set.
func Creation(a *api.VDICreateArgs, by string) volume.CreateRequest {
	return volume.CreateRequest{Pool: a.SR, Size: uint64(a.VirtualSize), ReadOnly: a.ReadOnly, By: by, ReplicaOf: a.ReplicaOf,
		Xen: volume.XenAttrs{NameLabel: a.NameLabel, NameDescription: a.NameDescription, Type: a.Type, Sharable: a.Sharable,
			OtherConfig: a.OtherConfig, SMConfig: a.SMConfig, XenstoreData: a.XenstoreData, Tags: volume.TagSet(a.Tags)}}
}
