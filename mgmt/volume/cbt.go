package volume

import (
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Resize grows a VDI; op is "resize" (detached only) or "resize_online".
func (s *Service) Resize(id string, size uint64, op, by string) (VDI, error) {
	e, ferr := s.lockFor(id, op)
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	if err := e.checkReplicaOwner(by, op); err != nil {
		return VDI{}, err
	}
	info, err := s.store.Resize(id, size)
	if err != nil {
		return VDI{}, StoreError(err, id, op)
	}
	info.Attrs = nil
	e.info = info
	e.note()
	s.log.Info("VDI resized", "vdi", id, "size", size, "by", by)
	return s.view(e), nil
}

// SetCBT enables or disables changed-block tracking. Idempotent.
func (s *Service) SetCBT(id string, on bool, by string) (VDI, error) {
	op, fn := "disable_cbt", s.store.DisableCBT
	if on {
		op, fn = "enable_cbt", s.store.EnableCBT
	}
	e, ferr := s.lockFor(id, op)
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	info, err := fn(id)
	if err != nil {
		return VDI{}, StoreError(err, id, op)
	}
	info.Attrs = nil
	e.info = info
	e.note()
	s.log.Info("VDI "+op, "vdi", id, "by", by)
	return s.view(e), nil
}

// ChangedBlocks is list_changed_blocks: the 64 KiB blocks written after
// snapshot from up to VDI to, and to's size.
func (s *Service) ChangedBlocks(from, to string) (*roaring.Bitmap, uint64, error) {
	e, ferr := s.lockFor(to, "list_changed_blocks")
	if ferr != nil {
		return nil, 0, ferr
	}
	defer e.mu.Unlock()
	if f := s.entry(from); f == nil || !f.visible() {
		return nil, 0, fault.Missing("VDI", from)
	}
	bm, size, err := s.store.ChangedBlocks(from, to)
	if err != nil {
		return nil, 0, StoreError(err, to, "list_changed_blocks")
	}
	return bm, size, nil
}

// CBTBases lists the visible snapshots VDI to can be diffed against.
func (s *Service) CBTBases(to string) ([]string, error) {
	bases, err := s.store.CBTBases(to)
	if err != nil {
		return nil, StoreError(err, to, "list_changed_blocks")
	}
	out := bases[:0]
	for _, b := range bases {
		if e := s.entry(b); e != nil && e.visible() {
			out = append(out, b)
		}
	}
	return out, nil
}

// dataDestroyWait is how long data_destroy waits for attachments to go
// (xapi waits 4 s for VBDs to be unplugged).
const dataDestroyWait = 4 * time.Second

// CBTMetadataContentID is what xapi writes into other_config.content_id
// of a VDI whose data was destroyed.
const CBTMetadataContentID = "/No content: this is a cbt_metadata VDI/"

// DataDestroy frees a CBT snapshot's data and keeps its changed-block
// metadata; its type becomes cbt_metadata. Idempotent.
func (s *Service) DataDestroy(id, by string) (VDI, error) {
	e, ferr := s.lockFor(id, "data_destroy")
	if ferr != nil {
		return VDI{}, ferr
	}
	defer e.mu.Unlock()
	if e.info.Kind != blockstore.KindCBTMetadata {
		// Like xapi, give attachments a moment to go before refusing. The
		// VDI is busy meanwhile, so nothing else changes it.
		if len(e.vbds) > 0 {
			op := uuid.NewString() // shown in current_operations, as a task would be
			e.addOp(op, "data_destroy")
			timer := time.NewTimer(dataDestroyWait)
			for len(e.vbds) > 0 && e.waitChangeLocked(timer.C) {
			}
			timer.Stop()
			e.releaseOp(op)
			if n := len(e.vbds); n > 0 {
				return VDI{}, fault.Conflicts(fault.CodeVDIInUse, []string{id, "data_destroy"}, "snapshot %s is still attached (%d)", id, n)
			}
			if !e.shown.Load() {
				return VDI{}, fault.Missing("VDI", id)
			}
			if err := checkOperation(e.opState(), "data_destroy"); err != nil {
				return VDI{}, err
			}
		}
		info, err := s.store.DataDestroy(id)
		if err != nil {
			return VDI{}, StoreError(err, id, "data_destroy")
		}
		info.Attrs = nil
		e.info = info
		e.note()
	}
	if e.attrs.Xen.OtherConfig["content_id"] == CBTMetadataContentID {
		return s.view(e), nil // idempotent
	}
	// A second commit; if a crash comes first, the next data_destroy (a
	// no-op otherwise) writes it.
	a := e.attrs.Clone()
	if a.Xen.OtherConfig == nil {
		a.Xen.OtherConfig = map[string]string{}
	}
	a.Xen.OtherConfig["content_id"] = CBTMetadataContentID
	if err := s.setAttrs(e, a); err != nil {
		return VDI{}, StoreError(err, id, "data_destroy")
	}
	s.log.Info("VDI data destroyed (CBT metadata kept)", "vdi", id, "by", by)
	return s.view(e), nil
}

// AllocatedBlocks lists the 64 KiB blocks of VDI id that hold data (not
// holes, not zeros), and its size: what a first copy of it must move.
func (s *Service) AllocatedBlocks(id string) (*roaring.Bitmap, uint64, error) {
	e, ferr := s.lock(id)
	if ferr != nil {
		return nil, 0, ferr
	}
	size := e.info.Size
	e.mu.Unlock()
	d, err := s.store.Attach(id)
	if err != nil {
		return nil, 0, StoreError(err, id, "allocated_blocks")
	}
	defer d.Close()
	bm, err := dataBlocks(d, size)
	if err != nil {
		return nil, 0, StoreError(err, id, "allocated_blocks")
	}
	return bm, size, nil
}
