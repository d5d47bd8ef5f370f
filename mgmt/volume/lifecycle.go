package volume

import (
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// CreateRequest describes a new empty VDI.
type CreateRequest struct {
	Pool     string // vPool guid or name; "" is the default
	Size     uint64
	ReadOnly bool
	Xen      XenAttrs
	// Surfaces are namespaced attributes of other surfaces, set in the
	// same commit.
	Surfaces map[string][]byte
	// Group, if set, is the consistency group the VDI is made in; the
	// vPool must be one of the group's.
	Group string
	// ReplicaOf ("zone/vdi"), if set, makes the VDI a replica only By may
	// write, resize or destroy.
	ReplicaOf string
	By        string // who asked, for the log
}

// Create makes an empty thin VDI.
func (s *Service) Create(req CreateRequest) (VDI, error) {
	if req.Xen.Type == "cbt_metadata" {
		return VDI{}, fault.Conflicts(fault.CodeVDIIncompatible, []string{"", "cbt_metadata"}, "VDIs of type cbt_metadata cannot be created")
	}
	s.pools.inUse.RLock()
	defer s.pools.inUse.RUnlock()
	pool, perr := s.Pool(req.Pool, "SR")
	if perr != nil {
		return VDI{}, perr
	}
	a := Attrs{Xen: req.Xen}.withSurfaces(req.Surfaces)
	if req.ReplicaOf != "" {
		a.Lifecycle.ReplicaOf, a.Lifecycle.ReplicaOwner = req.ReplicaOf, req.By
	}
	if req.Group != "" {
		ge, release, err := s.holdGroup(req.Group, StatusUpdating)
		if err != nil {
			return VDI{}, err
		}
		defer release()
		if !slices.Contains(ge.rec.Pools, pool.GUID) {
			return VDI{}, fault.BadRequest(fault.CodeInvalidVolume, []string{pool.Name},
				"volume type %s is not one of consistency group %s's volume types", pool.Name, req.Group)
		}
		a.Lifecycle.Group = req.Group
	}
	id := uuid.NewString()
	info, err := s.store.Create(blockstore.CreateRequest{ID: id, Pool: pool.GUID, Size: req.Size,
		ReadOnly: req.ReadOnly, Attrs: a.encode()})
	if err != nil {
		return VDI{}, StoreError(err, id, "create")
	}
	e := s.insert(info, a)
	s.log.Info("VDI created", "vdi", id, "size", req.Size, "pool", pool.Name, "by", req.By)
	e.mu.Lock()
	defer e.mu.Unlock()
	return s.view(e), nil
}

// derivedAttrs are the fields snapshot and clone carry over (xapi's
// snapshot_and_clone), with driver_params recorded as sm_config.
func derivedAttrs(src XenAttrs, driverParams map[string]string, now time.Time) XenAttrs {
	c := src.Clone()
	return XenAttrs{
		NameLabel: src.NameLabel, NameDescription: src.NameDescription, Type: src.Type, Sharable: src.Sharable,
		OtherConfig: c.OtherConfig, XenstoreData: c.XenstoreData, SMConfig: driverParams,
		OnBoot: src.OnBoot, AllowCaching: src.AllowCaching, SnapshotTime: now,
	}
}

// Derivation describes a snapshot or clone beyond what it inherits.
type Derivation struct {
	DriverParams map[string]string // recorded as sm_config
	// NameLabel and NameDescription replace the source's when set.
	NameLabel, NameDescription *string
	// Surfaces are namespaced attributes of other surfaces, set in the
	// same commit.
	Surfaces map[string][]byte
	// Size, for a clone, grows it in the same commit (0: the source's).
	Size uint64
	By   string // who asked, for the log
}

// Snapshot takes a read-only snapshot of a VDI, O(1) in its data.
func (s *Service) Snapshot(id string, driverParams map[string]string, by string) (VDI, error) {
	return s.SnapshotAs(id, Derivation{DriverParams: driverParams, By: by})
}

// SnapshotAs is Snapshot with fields of the snapshot's own.
func (s *Service) SnapshotAs(id string, d Derivation) (VDI, error) {
	snap, err := s.derive(id, "snapshot", d, func(nid string, a []byte) (blockstore.VolumeInfo, error) {
		infos, err := s.store.Snapshot(blockstore.SnapshotRequest{Source: id, ID: nid, Attrs: a})
		if err != nil {
			return blockstore.VolumeInfo{}, err
		}
		return infos[0], nil
	})
	if err != nil {
		return VDI{}, err
	}
	defer snap.mu.Unlock()
	s.log.Info("VDI snapshot", "vdi", id, "snapshot", snap.id, "by", d.By)
	return s.view(snap), nil
}

// Clone makes a writable VDI sharing every block with this one.
func (s *Service) Clone(id string, driverParams map[string]string, by string) (VDI, error) {
	return s.CloneAs(id, Derivation{DriverParams: driverParams, By: by})
}

// CloneAs is Clone with fields of the clone's own.
func (s *Service) CloneAs(id string, d Derivation) (VDI, error) {
	c, err := s.derive(id, "clone", d, func(nid string, a []byte) (blockstore.VolumeInfo, error) {
		return s.store.Clone(blockstore.CloneRequest{Source: id, ID: nid, Size: d.Size, Attrs: a})
	})
	if err != nil {
		return VDI{}, err
	}
	defer c.mu.Unlock()
	if c.attrs.Xen.OnBootMode() == "reset" {
		if err := s.takeBase(c); err != nil {
			return VDI{}, err
		}
	}
	s.log.Info("VDI clone", "vdi", id, "clone", c.id, "by", d.By)
	return s.view(c), nil
}

// derive makes a volume from VDI id by op (snapshot or clone): commit
// asks the store for it under a new id, with the attributes derived from
// id's. The new volume comes back indexed and locked.
func (s *Service) derive(id, op string, d Derivation,
	commit func(newID string, attrs []byte) (blockstore.VolumeInfo, error)) (*entry, error) {
	e, ferr := s.lockFor(id, op)
	if ferr != nil {
		return nil, ferr
	}
	a := Attrs{Xen: derivedAttrs(e.attrs.Xen, d.DriverParams, s.opts.Now().UTC())}
	if d.NameLabel != nil {
		a.Xen.NameLabel = *d.NameLabel
	}
	if d.NameDescription != nil {
		a.Xen.NameDescription = *d.NameDescription
	}
	a = a.withSurfaces(d.Surfaces)
	info, err := commit(uuid.NewString(), a.encode())
	if err != nil {
		e.mu.Unlock()
		return nil, StoreError(err, id, op)
	}
	// Indexed (and locked, before anyone can see it) while the source is
	// still locked: a call that next locks the source sees its new
	// snapshot.
	n := s.insert(info, a, func(n *entry) { n.mu.Lock() })
	e.mu.Unlock()
	return n, nil
}

// takeBase snapshots VDI e as its hidden on_boot base and records it,
// dropping the previous base. A crash in between leaves a base no VDI
// names, which the next start removes. REQUIRES: e.mu held.
func (s *Service) takeBase(e *entry) error {
	base := uuid.NewString()
	ba := Attrs{Lifecycle: Lifecycle{BaseOf: e.id}}
	infos, err := s.store.Snapshot(blockstore.SnapshotRequest{Source: e.id, ID: base, Attrs: ba.encode()})
	if err != nil {
		return StoreError(err, e.id, "set_on_boot")
	}
	s.insert(infos[0], ba)
	a := e.attrs.Clone()
	old := a.Lifecycle.OnBootBase
	a.Xen.OnBoot, a.Lifecycle.OnBootBase = "reset", base
	if err := s.setAttrs(e, a); err != nil {
		s.dropBase(base)
		return StoreError(err, e.id, "set_on_boot")
	}
	s.dropBase(old)
	return nil
}

// dropBase destroys a hidden on_boot base; failures are logged and
// retried at the next start.
func (s *Service) dropBase(base string) {
	if base == "" {
		return
	}
	if err := s.destroyVolume(base); err != nil {
		s.log.Warn("destroying an on_boot base failed; the next start retries", "base", base, "err", err)
	}
}

// destroyVolume destroys a volume the service made for itself (a base, a
// half-built copy) and drops it from the index.
func (s *Service) destroyVolume(id string) error {
	e := s.entry(id)
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone {
		return nil
	}
	if err := s.store.Destroy(id); err != nil && !errors.Is(err, blockstore.ErrNotFound) {
		return err
	}
	s.remove(e)
	return nil
}

// Destroy destroys a VDI; blocks nobody else references are freed.
func (s *Service) Destroy(id, by string) error {
	e, ferr := s.lockFor(id, "destroy")
	if ferr != nil {
		return ferr
	}
	defer e.mu.Unlock()
	if err := e.checkReplicaOwner(by, "destroy"); err != nil {
		return err
	}
	if err := s.store.Destroy(id); err != nil {
		return StoreError(err, id, "destroy")
	}
	s.remove(e)
	s.dropBase(e.attrs.Lifecycle.OnBootBase)
	s.log.Info("VDI destroyed", "vdi", id, "by", by)
	return nil
}

// Forget removes the VDI's record only; its data stays until Introduce.
func (s *Service) Forget(id, by string) error {
	e, ferr := s.lockFor(id, "forget")
	if ferr != nil {
		return ferr
	}
	defer e.mu.Unlock()
	if err := e.checkReplicaOwner(by, "forget"); err != nil {
		return err
	}
	a := e.attrs.Clone()
	a.Lifecycle.Forgotten = true
	if err := s.setAttrs(e, a); err != nil {
		return StoreError(err, id, "forget")
	}
	s.log.Info("VDI forgotten (data kept)", "vdi", id, "by", by)
	return nil
}

// IntroduceRequest brings back a forgotten VDI's record. Empty fields keep
// their value from before the forget (xapi keeps name and description
// unless overridden).
type IntroduceRequest struct {
	UUID, Location, Pool string
	Xen                  XenAttrs // only the fields given are applied (maps when non-nil)
	Sharable, ReadOnly   *bool
	IsASnapshot          bool
	SnapshotOf           string
	SnapshotTime         time.Time
}

// Introduce brings back the record of a forgotten VDI whose data the store
// still holds.
func (s *Service) Introduce(req IntroduceRequest) (VDI, error) {
	id := req.UUID
	location := req.Location
	if location == "" {
		location = id
	}
	e := s.entry(id)
	if e == nil {
		return VDI{}, vdiMissing(req.Pool, location, "no forgotten VDI %s at location %q in the store", id, location)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.gone:
		return VDI{}, vdiMissing(req.Pool, location, "no forgotten VDI %s at location %q in the store", id, location)
	case e.attrs.Lifecycle.Visible():
		return VDI{}, fault.Conflicts(fault.CodeLocationNotUnique, []string{e.info.Pool, location}, "VDI %s is known already", id)
	case !e.attrs.Lifecycle.Forgotten || location != id:
		return VDI{}, vdiMissing(req.Pool, location, "no forgotten VDI %s at location %q in the store", id, location)
	}
	if req.Pool != "" {
		pl := s.pools.find(req.Pool)
		if pl == nil {
			return VDI{}, fault.Missing("SR", req.Pool)
		}
		if pl.GUID != e.info.Pool {
			return VDI{}, vdiMissing(req.Pool, location, "VDI %s is not in vPool %s", id, req.Pool)
		}
	}
	if req.IsASnapshot && !e.info.IsSnapshot() || req.SnapshotOf != "" && req.SnapshotOf != e.info.SnapshotOf {
		return VDI{}, fault.InvalidValue("snapshot_of", req.SnapshotOf, "does not match what the store holds for %s", id)
	}
	a := e.attrs.Clone()
	a.Lifecycle.Forgotten = false
	x := &a.Xen
	if req.Sharable != nil {
		x.Sharable = *req.Sharable
	}
	for _, f := range []struct {
		dst *string
		val string
	}{{&x.NameLabel, req.Xen.NameLabel}, {&x.NameDescription, req.Xen.NameDescription}, {&x.Type, req.Xen.Type},
		{&x.MetadataOfPool, req.Xen.MetadataOfPool}} {
		if f.val != "" {
			*f.dst = f.val
		}
	}
	for _, f := range []struct {
		dst *map[string]string
		val map[string]string
	}{{&x.OtherConfig, req.Xen.OtherConfig}, {&x.SMConfig, req.Xen.SMConfig}, {&x.XenstoreData, req.Xen.XenstoreData}} {
		if f.val != nil {
			*f.dst = f.val
		}
	}
	if !req.SnapshotTime.IsZero() {
		x.SnapshotTime = req.SnapshotTime
	}
	if err := s.setAttrs(e, a); err != nil {
		return VDI{}, StoreError(err, id, "introduce")
	}
	if e.info.Kind == blockstore.KindLive && req.ReadOnly != nil && *req.ReadOnly != e.info.ReadOnly {
		if _, err := s.store.SetReadOnly(id, *req.ReadOnly); err != nil {
			return VDI{}, StoreError(err, id, "introduce")
		}
		if err := s.refresh(e); err != nil {
			return VDI{}, StoreError(err, id, "introduce")
		}
	}
	return s.view(e), nil
}

func vdiMissing(sr, location, format string, args ...any) *fault.Error {
	return fault.New(fault.NotFound, fault.CodeVDIMissing, []string{sr, location}, format, args...)
}

// cleanUpInterrupted removes what a crash left half done: VDIs a copy task
// was still filling, on_boot bases nobody names, and it gives reset VDIs
// that lost their base a new one. It runs once, before any call.
func (s *Service) cleanUpInterrupted() {
	for _, e := range s.entries() {
		a := e.attrs
		switch {
		case a.Lifecycle.Building != "":
			s.log.Info("removing a VDI an interrupted copy left", "vdi", e.id, "task", a.Lifecycle.Building)
			if err := s.destroyVolume(e.id); err != nil {
				s.log.Warn("removing a half-made VDI failed; the next start retries", "vdi", e.id, "err", err)
			}
		case a.Lifecycle.BaseOf != "":
			owner := s.entry(a.Lifecycle.BaseOf)
			if owner == nil || owner.attrs.Lifecycle.OnBootBase != e.id {
				s.log.Info("removing an unused on_boot base", "base", e.id, "of", a.Lifecycle.BaseOf)
				s.dropBase(e.id)
			}
		case a.Xen.OnBootMode() == "reset" && e.info.Kind == blockstore.KindLive:
			if s.entry(a.Lifecycle.OnBootBase) == nil {
				s.log.Info("taking a missing on_boot base", "vdi", e.id)
				e.mu.Lock()
				if err := s.takeBase(e); err != nil {
					s.log.Warn("taking an on_boot base failed", "vdi", e.id, "err", err)
				}
				e.mu.Unlock()
			}
		}
	}
}

// checkReplicaOwner refuses a change of a replica by anyone but the
// replicator that writes it. REQUIRES: e.mu held.
func (e *entry) checkReplicaOwner(by, op string) *fault.Error {
	l := e.attrs.Lifecycle
	if l.ReplicaOwner == "" || by == l.ReplicaOwner {
		return nil
	}
	return fault.Conflicts(fault.CodeVDIReadOnly, []string{e.id},
		"VDI %s is the replica of %s: only its replicator (user %s) may %s it", e.id, l.ReplicaOf, l.ReplicaOwner, op)
}
