// Package xenrecord is XenAPI's VDI record of a VDI's state, as both
// XenAPI surfaces answer it (REST with uuids, the wire protocol with
// refs): one function, so they never disagree on a field.
package xenrecord

import (
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func orNull(ref string) string {
	if ref == "" {
		return api.NullRef
	}
	return ref
}

func orSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// VDI is the XenAPI VDI record of a VDI's state.
func VDI(v volume.VDI) api.VDI {
	x, info := v.Attrs.Xen, v.Info
	snapshotOf := ""
	if info.IsSnapshot() {
		snapshotOf = info.SnapshotOf
	}
	snapTime := x.SnapshotTime
	if snapTime.IsZero() {
		snapTime = time.Unix(0, 0).UTC()
	}
	return api.VDI{
		UUID: info.ID, NameLabel: x.NameLabel, NameDescription: x.NameDescription,
		AllowCaching: x.AllowCaching, AllowedOperations: orSlice(v.Allowed), CBTEnabled: info.CBTEnabled,
		CrashDumps: []string{}, CurrentOperations: orEmpty(v.Operations),
		IsASnapshot: info.IsSnapshot(), IsToolsISO: false, Location: info.ID, Managed: true,
		MetadataLatest: false, MetadataOfPool: orNull(x.MetadataOfPool), Missing: false,
		OnBoot: x.OnBootMode(), OtherConfig: orEmpty(x.OtherConfig), Parent: api.NullRef,
		PhysicalUtilisation: int64(v.PhysicalUtilisation), ReadOnly: info.ReadOnly, Sharable: x.Sharable,
		SMConfig: orEmpty(x.SMConfig), SnapshotOf: orNull(snapshotOf), SnapshotTime: snapTime,
		Snapshots: orSlice(v.Snapshots), SR: info.Pool, StorageLock: false, Tags: orSlice(x.Tags),
		Type: x.VDIType(info.Kind), VBDs: orSlice(v.VBDs), VirtualSize: int64(info.Size),
		XenstoreData: orEmpty(x.XenstoreData),
	}
}
