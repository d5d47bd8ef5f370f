package mgmt

import (
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// cbtMetadataContentID is what xapi writes into other_config.content_id
// of a VDI whose data was destroyed.
const cbtMetadataContentID = "/No content: this is a cbt_metadata VDI/"

// dataDestroyWait is how long data_destroy waits for attachments to go
// (xapi waits 4 s for VBDs to be unplugged).
const dataDestroyWait = 4 * time.Second

// recordLockedByID reads one VDI's record. REQUIRES: s.mu held.
func (s *Server) recordLockedByID(id string) (api.VDI, error) {
	w := s.lookWorld()
	v, err := w.vdi(id)
	if err != nil {
		return api.VDI{}, err
	}
	return s.recordLocked(w, v), nil
}

// vdiFor finds a visible VDI and checks that op may run on it now.
// op "" checks nothing. An op refused only because the VDI is attached
// waits up to Options.DetachGrace for the attachments to go, with s.mu
// released meanwhile. REQUIRES: s.mu held.
func (s *Server) vdiFor(id, op string) (*world, vdi, *api.Error) {
	var deadline time.Time
	for {
		w := s.lookWorld()
		v, err := w.vdi(id)
		if err != nil {
			return nil, vdi{}, err
		}
		if op == "" {
			return w, v, nil
		}
		err = checkOperation(s.opStateLocked(v), op)
		if err == nil {
			return w, v, nil
		}
		if err.Code != api.CodeVDIInUse {
			return nil, vdi{}, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(s.opts.DetachGrace)
		}
		if !s.pauseLocked(deadline) {
			return nil, vdi{}, err
		}
	}
}

// defaultDetachGrace is Options.DetachGrace's default.
const defaultDetachGrace = 2 * time.Second

// pauseLocked lets other calls and detaches run for a moment, unless
// deadline has passed; it says whether it paused. Callers look their VDI
// up again after it. REQUIRES: s.mu held.
func (s *Server) pauseLocked(deadline time.Time) bool {
	if !time.Now().Before(deadline) {
		return false
	}
	s.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	s.mu.Lock()
	return true
}

// poolFor resolves a vPool reference (guid or name; "" is the default).
// REQUIRES: s.mu held.
func (s *Server) poolFor(ref string) (*poolState, *api.Error) {
	if ref == "" {
		return s.st.defaultPool(), nil
	}
	p := s.st.pool(ref)
	if p == nil {
		return nil, api.NotFound("SR", ref)
	}
	return p, nil
}

func (s *Server) vdiList(c *call, a *api.VDIListArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool := ""
	if a.SR != "" {
		p, err := s.poolFor(a.SR)
		if err != nil {
			return nil, err
		}
		pool = p.GUID
	}
	w := s.lookWorld()
	out := []api.VDI{}
	for _, v := range w.vols {
		switch {
		case !v.attrs.visible():
		case a.NameLabel != "" && v.attrs.NameLabel != a.NameLabel:
		case pool != "" && v.info.Pool != pool:
		case a.Tag != "" && !slices.Contains(v.attrs.Tags, a.Tag):
		default:
			out = append(out, s.recordLocked(w, v))
		}
	}
	return page(out, a.PageArgs, "uuid")
}

func (s *Server) vdiGet(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recordLockedByID(a.UUID)
}

func (s *Server) vdiCreate(c *call, a *api.VDICreateArgs) (any, error) {
	if a.Type == "cbt_metadata" {
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{"", "cbt_metadata"}, "VDIs of type cbt_metadata cannot be created")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pool, err := s.poolFor(a.SR)
	if err != nil {
		return nil, err
	}
	attrs := vdiAttrs{
		NameLabel: a.NameLabel, NameDescription: a.NameDescription, Type: a.Type, Sharable: a.Sharable,
		OtherConfig: a.OtherConfig, SMConfig: a.SMConfig, XenstoreData: a.XenstoreData, Tags: dedupe(a.Tags),
	}
	id := uuid.NewString()
	if _, err := s.store.Create(blockstore.CreateRequest{ID: id, Pool: pool.GUID, Size: uint64(a.VirtualSize),
		ReadOnly: a.ReadOnly, Attrs: attrs.encode()}); err != nil {
		return nil, storeError(err, id, "create")
	}
	s.log.Info("VDI created", "vdi", id, "size", a.VirtualSize, "pool", pool.Name, "by", c.user)
	rec, rerr := s.recordLockedByID(id)
	if rerr != nil {
		return nil, rerr
	}
	return created{location: "/api/vdis/" + id, body: rec}, nil
}

func (s *Server) vdiDestroy(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "destroy")
	if err != nil {
		return nil, err
	}
	if err := s.store.Destroy(a.UUID); err != nil {
		return nil, storeError(err, a.UUID, "destroy")
	}
	s.forgetCounters(a.UUID)
	s.dropBaseLocked(v.attrs.OnBootBase)
	s.log.Info("VDI destroyed", "vdi", a.UUID, "by", c.user)
	return nil, nil
}

// dropBaseLocked destroys a hidden on_boot base; failures are logged and
// retried at the next start. REQUIRES: s.mu held.
func (s *Server) dropBaseLocked(base string) {
	if base == "" {
		return
	}
	if err := s.store.Destroy(base); err != nil {
		s.log.Warn("destroying an on_boot base failed; the next start retries", "base", base, "err", err)
	}
}

func (s *Server) vdiForget(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "forget")
	if err != nil {
		return nil, err
	}
	attrs := v.attrs.clone()
	attrs.Forgotten = true
	if _, err := s.store.SetAttrs(a.UUID, attrs.encode()); err != nil {
		return nil, storeError(err, a.UUID, "forget")
	}
	s.log.Info("VDI forgotten (data kept)", "vdi", a.UUID, "by", c.user)
	return nil, nil
}

func (s *Server) vdiIntroduce(c *call, a *api.VDIIntroduceArgs) (any, error) {
	id := a.UUIDArg
	if _, err := uuid.Parse(id); err != nil {
		return nil, api.BadRequest(api.CodeUUIDInvalid, []string{"VDI", id}, "%q is not a UUID", id)
	}
	if a.Type == "cbt_metadata" {
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{"", "cbt_metadata"}, "introduce cannot set type cbt_metadata")
	}
	if a.Managed != nil && !*a.Managed {
		return nil, api.InvalidValue("managed", "false", "vdiskd only holds managed VDIs")
	}
	var snapTime time.Time
	if a.SnapshotTime != "" {
		t, err := time.Parse(time.RFC3339, a.SnapshotTime)
		if err != nil {
			return nil, api.InvalidValue("snapshot_time", a.SnapshotTime, "expected RFC 3339, like 2026-01-02T15:04:05Z")
		}
		snapTime = t.UTC()
		if y := snapTime.Year(); y < 1 || y > 9999 {
			return nil, api.InvalidValue("snapshot_time", a.SnapshotTime, "year %d is out of range", y)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.lookWorld()
	v, ok := w.vols[id]
	location := a.Location
	if location == "" {
		location = id
	}
	srRef := a.SR
	switch {
	case ok && v.attrs.visible():
		return nil, api.Conflict(api.CodeLocationNotUnique, []string{v.info.Pool, location}, "VDI %s is known already", id)
	case !ok || !v.attrs.Forgotten || location != id:
		return nil, api.Errorf(http.StatusNotFound, api.CodeVDIMissing, []string{srRef, location},
			"no forgotten VDI %s at location %q in the store", id, location)
	}
	if srRef != "" {
		p := s.st.pool(srRef)
		if p == nil {
			return nil, api.NotFound("SR", srRef)
		}
		if p.GUID != v.info.Pool {
			return nil, api.Errorf(http.StatusNotFound, api.CodeVDIMissing, []string{srRef, location},
				"VDI %s is not in vPool %s", id, srRef)
		}
	}
	if a.IsASnapshot && !v.info.IsSnapshot() || a.SnapshotOf != "" && a.SnapshotOf != v.info.SnapshotOf {
		return nil, api.InvalidValue("snapshot_of", a.SnapshotOf, "does not match what the store holds for %s", id)
	}
	// What the call leaves empty keeps its value from before the forget
	// (xapi keeps name and description unless overridden).
	attrs := v.attrs.clone()
	attrs.Forgotten = false
	if a.Sharable != nil {
		attrs.Sharable = *a.Sharable
	}
	for _, f := range []struct {
		dst *string
		val string
	}{{&attrs.NameLabel, a.NameLabel}, {&attrs.NameDescription, a.NameDescription}, {&attrs.Type, a.Type},
		{&attrs.MetadataOfPool, a.MetadataOfPool}} {
		if f.val != "" {
			*f.dst = f.val
		}
	}
	for _, f := range []struct {
		dst *map[string]string
		val map[string]string
	}{{&attrs.OtherConfig, a.OtherConfig}, {&attrs.SMConfig, a.SMConfig}, {&attrs.XenstoreData, a.XenstoreData}} {
		if f.val != nil {
			*f.dst = f.val
		}
	}
	if !snapTime.IsZero() {
		attrs.SnapshotTime = snapTime
	}
	if _, err := s.store.SetAttrs(id, attrs.encode()); err != nil {
		return nil, storeError(err, id, "introduce")
	}
	if v.info.Kind == blockstore.KindLive && a.ReadOnly != nil && *a.ReadOnly != v.info.ReadOnly {
		if _, err := s.store.SetReadOnly(id, *a.ReadOnly); err != nil {
			return nil, storeError(err, id, "introduce")
		}
	}
	rec, rerr := s.recordLockedByID(id)
	if rerr != nil {
		return nil, rerr
	}
	return created{location: "/api/vdis/" + id, body: rec}, nil
}

// derivedAttrs are the fields snapshot and clone carry over (xapi's
// snapshot_and_clone), with driver_params recorded as sm_config.
func derivedAttrs(src vdiAttrs, driverParams map[string]string, now time.Time) vdiAttrs {
	return vdiAttrs{
		NameLabel: src.NameLabel, NameDescription: src.NameDescription, Type: src.Type, Sharable: src.Sharable,
		OtherConfig: src.clone().OtherConfig, XenstoreData: src.clone().XenstoreData, SMConfig: driverParams,
		OnBoot: src.OnBoot, AllowCaching: src.AllowCaching, SnapshotTime: now,
	}
}

func (s *Server) vdiSnapshot(c *call, a *api.VDIDriverParamsArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "snapshot")
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	attrs := derivedAttrs(v.attrs, a.DriverParams, s.opts.Now().UTC())
	if _, err := s.store.Snapshot(blockstore.SnapshotRequest{Source: a.UUID, ID: id, Attrs: attrs.encode()}); err != nil {
		return nil, storeError(err, a.UUID, "snapshot")
	}
	s.log.Info("VDI snapshot", "vdi", a.UUID, "snapshot", id, "by", c.user)
	return s.recordLockedByID(id)
}

func (s *Server) vdiClone(c *call, a *api.VDIDriverParamsArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "clone")
	if err != nil {
		return nil, err
	}
	id := uuid.NewString()
	attrs := derivedAttrs(v.attrs, a.DriverParams, s.opts.Now().UTC())
	if _, err := s.store.Clone(blockstore.CloneRequest{Source: a.UUID, ID: id, Attrs: attrs.encode()}); err != nil {
		return nil, storeError(err, a.UUID, "clone")
	}
	if attrs.onBoot() == "reset" {
		if err := s.takeBaseLocked(id, attrs); err != nil {
			return nil, err
		}
	}
	s.log.Info("VDI clone", "vdi", a.UUID, "clone", id, "by", c.user)
	return s.recordLockedByID(id)
}

// takeBaseLocked snapshots VDI id as its hidden on_boot base and records
// it, dropping the previous base. A crash in between leaves a base no VDI
// names, which the next start removes. REQUIRES: s.mu held.
func (s *Server) takeBaseLocked(id string, attrs vdiAttrs) error {
	base := uuid.NewString()
	if _, err := s.store.Snapshot(blockstore.SnapshotRequest{Source: id, ID: base,
		Attrs: vdiAttrs{BaseOf: id}.encode()}); err != nil {
		return storeError(err, id, "set_on_boot")
	}
	old := attrs.OnBootBase
	attrs.OnBoot, attrs.OnBootBase = "reset", base
	if _, err := s.store.SetAttrs(id, attrs.encode()); err != nil {
		s.dropBaseLocked(base)
		return storeError(err, id, "set_on_boot")
	}
	s.dropBaseLocked(old)
	return nil
}

func (s *Server) vdiResize(c *call, a *api.VDIResizeArgs) (any, error) {
	return s.resize(c, a, "resize")
}

func (s *Server) vdiResizeOnline(c *call, a *api.VDIResizeArgs) (any, error) {
	return s.resize(c, a, "resize_online")
}

func (s *Server) resize(c *call, a *api.VDIResizeArgs, op string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, err := s.vdiFor(a.UUID, op); err != nil {
		return nil, err
	}
	if _, err := s.store.Resize(a.UUID, uint64(a.Size)); err != nil {
		return nil, storeError(err, a.UUID, op)
	}
	s.log.Info("VDI resized", "vdi", a.UUID, "size", a.Size, "by", c.user)
	return s.recordLockedByID(a.UUID)
}

func (s *Server) vdiEnableCBT(c *call, a *api.VDIRef) (any, error) {
	return s.setCBT(c, a.UUID, "enable_cbt", s.store.EnableCBT)
}

func (s *Server) vdiDisableCBT(c *call, a *api.VDIRef) (any, error) {
	return s.setCBT(c, a.UUID, "disable_cbt", s.store.DisableCBT)
}

func (s *Server) setCBT(c *call, id, op string, fn func(string) (blockstore.VolumeInfo, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, err := s.vdiFor(id, op); err != nil {
		return nil, err
	}
	if _, err := fn(id); err != nil {
		return nil, storeError(err, id, op)
	}
	s.log.Info("VDI "+op, "vdi", id, "by", c.user)
	return s.recordLockedByID(id)
}

func (s *Server) vdiListChangedBlocks(c *call, a *api.VDIChangedBlocksArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, to, err := s.vdiFor(a.UUID, "list_changed_blocks")
	if err != nil {
		return nil, err
	}
	if _, err := w.vdi(a.VDIFrom); err != nil {
		return nil, err
	}
	bm, size, serr := s.store.ChangedBlocks(a.VDIFrom, to.info.ID)
	if serr != nil {
		return nil, storeError(serr, a.UUID, "list_changed_blocks")
	}
	return api.ChangedBlocks{Bitmap: cbt.Encode(bm, size), Granularity: cbt.BlockSize,
		ChangedBlocks: int(bm.GetCardinality()), VirtualSize: int64(size)}, nil
}

func (s *Server) vdiDataDestroy(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, v, err := s.vdiFor(a.UUID, "data_destroy")
	if err != nil {
		return nil, err
	}
	if v.info.Kind != blockstore.KindCBTMetadata {
		// Like xapi, give attachments a moment to go before refusing. The
		// VDI is busy meanwhile, so nothing else changes it.
		if len(s.vbds[a.UUID]) > 0 {
			op := newTaskID()
			s.addOpsLocked(op, map[string]string{a.UUID: "data_destroy"})
			for deadline := time.Now().Add(dataDestroyWait); len(s.vbds[a.UUID]) > 0 && s.pauseLocked(deadline); {
			}
			s.releaseOpsLocked(op)
			if n := len(s.vbds[a.UUID]); n > 0 {
				return nil, api.Conflict(api.CodeVDIInUse, []string{a.UUID, "data_destroy"}, "snapshot %s is still attached (%d)", a.UUID, n)
			}
			if _, v, err = s.vdiFor(a.UUID, "data_destroy"); err != nil {
				return nil, err
			}
		}
		if _, err := s.store.DataDestroy(a.UUID); err != nil {
			return nil, storeError(err, a.UUID, "data_destroy")
		}
	}
	if v.attrs.OtherConfig["content_id"] == cbtMetadataContentID {
		return s.recordLockedByID(a.UUID) // idempotent
	}
	// A second commit; if a crash comes first, the next data_destroy (a
	// no-op otherwise) writes it.
	attrs := v.attrs.clone()
	if attrs.OtherConfig == nil {
		attrs.OtherConfig = map[string]string{}
	}
	attrs.OtherConfig["content_id"] = cbtMetadataContentID
	if _, err := s.store.SetAttrs(a.UUID, attrs.encode()); err != nil {
		return nil, storeError(err, a.UUID, "data_destroy")
	}
	s.log.Info("VDI data destroyed (CBT metadata kept)", "vdi", a.UUID, "by", c.user)
	return s.recordLockedByID(a.UUID)
}

func (s *Server) vdiUpdate(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, err := s.vdiFor(a.UUID, "update"); err != nil {
		return nil, err
	}
	return s.recordLockedByID(a.UUID)
}

func (s *Server) vdiNBDInfo(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	_, v, err := s.vdiFor(a.UUID, "")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if v.info.Kind == blockstore.KindCBTMetadata {
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{a.UUID, "cbt_metadata"}, "VDI %s holds no data to export", a.UUID)
	}
	if s.opts.NBDInfo == nil {
		return []api.NBDInfo{}, nil
	}
	// XenServer's export name carries the caller's session; with
	// --nbd-auth=none the bare path is enough and no token travels.
	name := "/" + a.UUID
	if s.opts.NBDAuth == NBDAuthToken {
		name += "?session_id=" + c.token
	}
	return orSliceOf(s.opts.NBDInfo(name)), nil
}

func orSliceOf[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) vdiStatistics(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	_, _, err := s.vdiFor(a.UUID, "")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.vdiskStatistics(a.UUID), nil
}

func (s *Server) vdiOpenDatabase(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	_, v, err := s.vdiFor(a.UUID, "")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if t := v.attrs.vdiType(v.info.Kind); t != "metadata" {
		return nil, api.Conflict(api.CodeVDIIncompatible, []string{a.UUID, t}, "VDI %s is of type %s, not metadata", a.UUID, t)
	}
	return nil, api.Conflict(api.CodeCouldNotImportDB, []string{"vdiskd does not read XenServer pool metadata"},
		"vdiskd keeps no XenServer pool databases")
}

func (s *Server) vdiReadDatabasePoolUUID(c *call, a *api.VDIRef) (any, error) {
	s.mu.Lock()
	_, _, err := s.vdiFor(a.UUID, "")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return api.Value{Value: ""}, nil
}

func dedupe(tags []string) []string {
	var out []string
	for _, t := range tags {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
