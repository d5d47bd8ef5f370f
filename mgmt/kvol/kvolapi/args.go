package kvolapi

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// zoneRE is a zone name, as --zone and the zone registry take it.
var zoneRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// maxRef bounds a volume type or tenant id.
const maxRef = 255

func checkZone(param, v string) *fault.Error {
	if !zoneRE.MatchString(v) {
		return fault.InvalidValue(param, v, "must be a zone name: 1 to 64 letters, digits, '.', '_' or '-'")
	}
	return nil
}

func checkRef(param, v string) *fault.Error {
	if v == "" || len(v) > maxRef {
		return fault.InvalidValue(param, v, "must be 1 to %d characters", maxRef)
	}
	for _, r := range v {
		if r < 0x21 || r == 0x7f {
			return fault.InvalidValue(param, v, "must not hold spaces or control characters")
		}
	}
	return nil
}

func checkUUID(param, v string) *fault.Error {
	if _, err := uuid.Parse(v); err != nil || len(v) != 36 {
		return fault.InvalidValue(param, v, "must be a uuid")
	}
	return nil
}

func firstError(errs ...*fault.Error) *fault.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// ListArgs name a vPool of a zone.
type ListArgs struct {
	Zone         string `query:"zone" required:"true" doc:"the zone whose vPool is replicated"`
	VolumeTypeID string `query:"volume-type-id" required:"true" doc:"the vPool there (its guid, the Cinder volume type id, or its name)"`
}

// Validate checks the names.
func (a ListArgs) Validate() *fault.Error {
	return firstError(checkZone("zone", a.Zone), checkRef("volume-type-id", a.VolumeTypeID))
}

// ShowArgs name a vPool of a zone, and optionally one backup zone.
type ShowArgs struct {
	SrcZone         string `query:"src-zone" required:"true" doc:"the zone whose vPool is replicated"`
	SrcVolumeTypeID string `query:"src-volume-type-id" required:"true" doc:"the vPool there (guid or name)"`
	DstZone         string `query:"dst-zone" doc:"only this backup zone (default: every one)"`
}

// Validate checks the names.
func (a ShowArgs) Validate() *fault.Error {
	e := firstError(checkZone("src-zone", a.SrcZone), checkRef("src-volume-type-id", a.SrcVolumeTypeID))
	if e == nil && a.DstZone != "" {
		e = checkZone("dst-zone", a.DstZone)
	}
	return e
}

// Target is where a job makes its volume.
type Target struct {
	Bootable        string `query:"bootable" doc:"yes or no (default no): whether the volume boots; recorded on it (Cinder's bootable)"`
	DstZone         string `query:"dst-zone" required:"true" doc:"the zone the volume is made in: this daemon's"`
	DstTenantID     string `query:"dst-tenant-id" required:"true" doc:"the tenant (Cinder project) there that owns it"`
	DstVolumeTypeID string `query:"dst-volume-type-id" required:"true" doc:"the vPool there (guid or name)"`
}

// IsBootable is the bootable parameter as a flag.
func (t Target) IsBootable() bool { return t.Bootable == "yes" }

func (t Target) check() *fault.Error {
	e := firstError(checkZone("dst-zone", t.DstZone), checkRef("dst-tenant-id", t.DstTenantID),
		checkRef("dst-volume-type-id", t.DstVolumeTypeID))
	if e == nil && t.Bootable != "" && t.Bootable != "yes" && t.Bootable != "no" {
		e = fault.InvalidValue("bootable", t.Bootable, "must be yes or no")
	}
	return e
}

// CreateArgs ask for a volume from a snapshot of another zone.
type CreateArgs struct {
	SrcZone         string `query:"src-zone" required:"true" doc:"the snapshot's zone (the origin)"`
	SrcVolumeTypeID string `query:"src-volume-type-id" required:"true" doc:"its vPool there (guid or name)"`
	SrcSnapshotID   string `query:"src-snapshot-id" required:"true" doc:"the snapshot (uuid) in the origin zone"`
	Target
}

// Validate checks every parameter.
func (a CreateArgs) Validate() *fault.Error {
	return firstError(checkZone("src-zone", a.SrcZone), checkRef("src-volume-type-id", a.SrcVolumeTypeID),
		checkUUID("src-snapshot-id", a.SrcSnapshotID), a.Target.check())
}

// RecoveryArgs ask for a volume of a failed zone.
type RecoveryArgs struct {
	SrcZone         string `query:"src-zone" required:"true" doc:"the failed zone (the origin)"`
	SrcVolumeTypeID string `query:"src-volume-type-id" required:"true" doc:"the volume's vPool there (guid or name)"`
	SrcVolumeID     string `query:"src-volume-id" required:"true" doc:"the volume (uuid) in the origin zone"`
	Target
}

// Validate checks every parameter; the volume is never recovered into
// its own zone.
func (a RecoveryArgs) Validate() *fault.Error {
	e := firstError(checkZone("src-zone", a.SrcZone), checkRef("src-volume-type-id", a.SrcVolumeTypeID),
		checkUUID("src-volume-id", a.SrcVolumeID), a.Target.check())
	if e == nil && a.SrcZone == a.DstZone {
		e = fault.InvalidValue("dst-zone", a.DstZone, "is the failed zone: recover into another zone")
	}
	return e
}

// Job list bounds.
const (
	DefaultLimit = 5
	MaxLimit     = 1000
)

// JobListArgs pick jobs: one by rowkey, or the latest limit.
type JobListArgs struct {
	Rowkey int64 `query:"rowkey" doc:"the job create or recovery answered (default 0: the latest limit jobs)"`
	Limit  int   `query:"limit" doc:"how many of the latest jobs (default 5, at most 1000)"`
}

// Validate checks the ranges.
func (a JobListArgs) Validate() *fault.Error {
	if a.Rowkey < 0 {
		return fault.InvalidValue("rowkey", strconv.FormatInt(a.Rowkey, 10), "must be 0 or more")
	}
	if a.Limit < 0 || a.Limit > MaxLimit {
		return fault.InvalidValue("limit", fmt.Sprint(a.Limit), "must be 1 to %d", MaxLimit)
	}
	return nil
}

// Count is how many jobs a list answers at most.
func (a JobListArgs) Count() int {
	if a.Limit == 0 {
		return DefaultLimit
	}
	return a.Limit
}
