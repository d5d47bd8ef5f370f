package mgmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// copyPlan says what a copy task does.
type copyPlan struct {
	src, dst, base string
	fresh          bool // dst was created for this copy: it reads as zeros
	useCBT         bool // base..src changed blocks come from CBT
}

// vdiCopy is VDI.copy: every block, or only those that differ from
// base_vdi, into a fresh VDI (in sr, default the source's vPool) or into
// into_vdi. It runs as a task; a failed or cancelled copy destroys the VDI
// it created.
func (s *Server) vdiCopy(c *call, a *api.VDICopyArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, src, err := s.vdiFor(a.UUID, "copy")
	if err != nil {
		return nil, err
	}
	plan := copyPlan{src: a.UUID, base: a.BaseVDI}
	if a.BaseVDI != "" {
		base, err := w.vdi(a.BaseVDI)
		if err != nil {
			return nil, err
		}
		_, _, cerr := s.store.ChangedBlocks(a.BaseVDI, a.UUID)
		plan.useCBT = cerr == nil
		if !plan.useCBT && base.info.Kind == blockstore.KindCBTMetadata {
			return nil, api.Conflict(api.CodeVDIIncompatible, []string{a.BaseVDI, "cbt_metadata"},
				"base %s holds only CBT metadata and is not in %s's CBT chain, so there is nothing to compare with", a.BaseVDI, a.UUID)
		}
	}
	taskID := newTaskID()
	if a.IntoVDI != "" {
		if a.IntoVDI == a.UUID {
			return nil, api.InvalidValue("into_vdi", a.IntoVDI, "is the VDI being copied")
		}
		dst, err := w.vdi(a.IntoVDI)
		if err != nil {
			return nil, err
		}
		if err := s.checkCopyTarget(src, dst); err != nil {
			return nil, err
		}
		plan.dst = a.IntoVDI
	} else {
		poolRef := a.SR
		if poolRef == "" {
			poolRef = src.info.Pool
		}
		pool, err := s.poolFor(poolRef)
		if err != nil {
			return nil, err
		}
		// xapi's fresh copy: same name, size, type, sharable, maps and
		// tags; writable; sm_config empty; CBT off.
		attrs := vdiAttrs{
			NameLabel: src.attrs.NameLabel, NameDescription: src.attrs.NameDescription, Type: src.attrs.Type,
			Sharable: src.attrs.Sharable, OtherConfig: src.attrs.clone().OtherConfig,
			XenstoreData: src.attrs.clone().XenstoreData, Tags: src.attrs.clone().Tags,
			AllowCaching: src.attrs.AllowCaching, Building: taskID,
		}
		if src.info.Kind == blockstore.KindCBTMetadata {
			attrs.Type = ""
		}
		plan.dst, plan.fresh = uuid.NewString(), true
		if _, err := s.store.Create(blockstore.CreateRequest{ID: plan.dst, Pool: pool.GUID, Size: src.info.Size,
			Attrs: attrs.encode()}); err != nil {
			return nil, storeError(err, plan.dst, "copy")
		}
	}
	s.addOpsLocked(taskID, map[string]string{plan.src: "copy", plan.dst: "copy"})
	s.copyTargets[plan.dst] = taskID
	s.mu.Unlock()
	t, serr := s.tasks.start(taskID, "VDI.copy", a.UUID, c.user, func(ctx context.Context, t *task) (any, error) {
		return s.runCopy(ctx, t, plan)
	})
	s.mu.Lock()
	if serr != nil {
		if plan.fresh {
			s.destroyBuilt(plan.dst)
		}
		return nil, serr
	}
	s.log.Info("VDI copy started", "task", taskID, "vdi", a.UUID, "into", plan.dst, "base", a.BaseVDI, "by", c.user)
	return t, nil
}

// checkCopyTarget applies xapi's rules for into_vdi. REQUIRES: s.mu held.
func (s *Server) checkCopyTarget(src, dst vdi) *api.Error {
	id := dst.info.ID
	switch {
	case dst.info.Kind == blockstore.KindCBTMetadata:
		return api.Conflict(api.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds only CBT metadata", id)
	case dst.info.ReadOnly:
		return api.Conflict(api.CodeVDIReadOnly, []string{id}, "destination VDI %s is read-only", id)
	case dst.info.Size < src.info.Size:
		return api.Conflict(api.CodeVDITooSmall, []string{id, fmt.Sprint(src.info.Size)},
			"destination VDI %s has %d bytes; the source needs %d", id, dst.info.Size, src.info.Size)
	}
	st := s.opStateLocked(dst)
	if st.rwVBDs > 0 {
		return api.Conflict(api.CodeVDIInUse, []string{id, "copy"}, "destination VDI %s is attached writable", id)
	}
	for _, op := range st.current {
		return api.Conflict(api.CodeOtherOperation, []string{"VDI", id}, "destination VDI %s is busy with %s", id, op)
	}
	return nil
}

// runCopy is the copy task's body.
func (s *Server) runCopy(ctx context.Context, t *task, p copyPlan) (any, error) {
	err := s.copyBlocks(ctx, t, p)
	if err == nil && ctx.Err() != nil {
		err = errCancelled
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if p.fresh {
			s.destroyBuilt(p.dst)
		}
		return nil, err
	}
	// The answer is the record as it will be: without this copy running.
	s.releaseOpsLocked(t.rec.UUID)
	if p.fresh {
		info, err := s.store.Volume(p.dst)
		if err != nil {
			return nil, err
		}
		attrs := parseAttrs(info.Attrs)
		attrs.Building = ""
		if _, err := s.store.SetAttrs(p.dst, attrs.encode()); err != nil {
			s.destroyBuilt(p.dst)
			return nil, err
		}
	}
	return s.recordLockedByID(p.dst)
}

// destroyBuilt removes a VDI a task created; if that fails the next start
// does it. REQUIRES: s.mu held.
func (s *Server) destroyBuilt(id string) {
	if err := s.store.Destroy(id); err != nil && !errors.Is(err, blockstore.ErrNotFound) {
		s.log.Warn("removing a half-made VDI failed; the next start retries", "vdi", id, "err", err)
		return
	}
	s.forgetCounters(id)
}

// copyBlocks moves the data, in 64 KiB blocks, touching only blocks that
// can matter, so a sparse VDI copies in time proportional to its data:
//   - with a base in the source's CBT chain: the changed blocks;
//   - with another base: blocks holding data in either, compared;
//   - without a base: the source's data blocks (an existing destination is
//     zeroed first, a fresh one reads as zeros already).
func (s *Server) copyBlocks(ctx context.Context, t *task, p copyPlan) error {
	sd, err := s.store.Attach(p.src)
	if err != nil {
		return err
	}
	defer sd.Close()
	dd, err := s.store.Attach(p.dst)
	if err != nil {
		return err
	}
	defer dd.Close()
	size := sd.Size()
	var bd *blockstore.Disk
	var todo *roaring.Bitmap
	switch {
	case p.base != "" && p.useCBT:
		if todo, _, err = s.store.ChangedBlocks(p.base, p.src); err != nil {
			return err
		}
	case p.base != "":
		if bd, err = s.store.Attach(p.base); err != nil {
			return err
		}
		defer bd.Close()
		if todo, err = dataBlocks(sd, size); err != nil {
			return err
		}
		baseData, err := dataBlocks(bd, min(size, bd.Size()))
		if err != nil {
			return err
		}
		todo.Or(baseData)
	default:
		if !p.fresh {
			if err := dd.Zero(0, size, 0); err != nil {
				return err
			}
		}
		if todo, err = dataBlocks(sd, size); err != nil {
			return err
		}
	}
	buf := make([]byte, cbt.BlockSize)
	baseBuf := make([]byte, cbt.BlockSize)
	zeros := make([]byte, cbt.BlockSize)
	total, done := todo.GetCardinality(), uint64(0)
	it := todo.Iterator()
	for it.HasNext() {
		if ctx.Err() != nil {
			return errCancelled
		}
		if hook := s.copyHook.Load(); hook != nil {
			(*hook)(ctx)
		}
		off := uint64(it.Next()) * cbt.BlockSize
		if off >= size {
			break
		}
		n := min(uint64(cbt.BlockSize), size-off)
		blk := buf[:n]
		if _, err := sd.ReadAt(blk, int64(off)); err != nil {
			return err
		}
		if bd != nil {
			base := baseBuf[:n]
			clear(base)
			if bs := bd.Size(); off < bs {
				if _, err := bd.ReadAt(base[:min(n, bs-off)], int64(off)); err != nil {
					return err
				}
			}
			if bytes.Equal(blk, base) {
				done++
				continue
			}
		}
		switch {
		case !bytes.Equal(blk, zeros[:n]):
			err = dd.Write(off, blk, 0)
		case !p.fresh:
			err = dd.Zero(off, n, 0)
		}
		if err != nil {
			return err
		}
		done++
		t.setProgress(float64(done) / float64(total))
	}
	return dd.Flush()
}

// dataBlocks returns the 64 KiB blocks of d below size that hold data (not
// holes, not zeros), in time proportional to the data.
func dataBlocks(d *blockstore.Disk, size uint64) (*roaring.Bitmap, error) {
	bm := roaring.New()
	for off := uint64(0); off < size; {
		next := off
		err := d.Extents(off, size-off, func(e blockstore.Extent) error {
			if e.Flags == 0 {
				bm.AddRange(e.Offset/cbt.BlockSize, (e.Offset+e.Length+cbt.BlockSize-1)/cbt.BlockSize)
			}
			next = e.Offset + e.Length
			return nil
		})
		if err != nil {
			return nil, err
		}
		if next <= off {
			return nil, fmt.Errorf("mgmt: extents of %s made no progress at %d", d.ID(), off)
		}
		off = next
	}
	return bm, nil
}

// vdiPoolMigrate moves a VDI, its snapshots (and theirs) to another vPool.
// vPools are key spaces of one store, so nothing is copied and the CBT
// chain stays usable, which XenServer's storage migration cannot offer.
func (s *Server) vdiPoolMigrate(c *call, a *api.VDIPoolMigrateArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, err := s.vdiFor(a.UUID, "mirror"); err != nil {
		return nil, err
	}
	pool, perr := s.poolFor(a.SR)
	if perr != nil {
		return nil, perr
	}
	taskID := newTaskID()
	s.addOpsLocked(taskID, map[string]string{a.UUID: "mirror"})
	s.mu.Unlock()
	t, serr := s.tasks.start(taskID, "VDI.pool_migrate", a.UUID, c.user, func(ctx context.Context, t *task) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil {
			return nil, errCancelled
		}
		// Resolve again: the vPool or a snapshot may have gone meanwhile.
		dest := s.st.pool(pool.GUID)
		if dest == nil {
			return nil, api.NotFound("SR", pool.GUID)
		}
		w := s.lookWorld()
		if _, err := w.vdi(a.UUID); err != nil {
			return nil, err
		}
		if err := s.store.MovePool(dest.GUID, family(w, a.UUID)...); err != nil {
			return nil, err
		}
		s.log.Info("VDI migrated", "vdi", a.UUID, "pool", dest.Name)
		return s.recordLockedByID(a.UUID)
	})
	s.mu.Lock()
	if serr != nil {
		return nil, serr
	}
	return t, nil
}

// family is a VDI and every volume frozen from it, transitively.
func family(w *world, id string) []string {
	out := []string{id}
	for i := 0; i < len(out); i++ {
		for _, v := range w.vols {
			if v.info.IsSnapshot() && v.info.SnapshotOf == out[i] {
				out = append(out, v.info.ID)
			}
		}
	}
	return out
}
