package mgmt

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// copyChunk is the unit of a copy: big enough to stream, small enough that
// cancellation is prompt.
const copyChunk = 1 << 20

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
	}
}

// copyBlocks moves the data. With a base, only 64 KiB blocks that differ
// are written: from the CBT chain when base and source share one, else by
// comparing contents. A fresh destination reads as zeros, so zeros and
// holes are skipped; an existing one gets them written as zeros.
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
	var changed func(off uint64) bool // nil: every block counts
	var bd *blockstore.Disk
	if p.base != "" && p.useCBT {
		bm, _, err := s.store.ChangedBlocks(p.base, p.src)
		if err != nil {
			return err
		}
		changed = func(off uint64) bool { return bm.Contains(uint32(off / cbt.BlockSize)) }
	} else if p.base != "" {
		if bd, err = s.store.Attach(p.base); err != nil {
			return err
		}
		defer bd.Close()
	}
	buf := make([]byte, copyChunk)
	baseBuf := make([]byte, copyChunk)
	zeros := make([]byte, cbt.BlockSize)
	for off := uint64(0); off < size; off += copyChunk {
		if ctx.Err() != nil {
			return errCancelled
		}
		if hook := s.copyHook.Load(); hook != nil {
			(*hook)(ctx)
		}
		n := min(uint64(copyChunk), size-off)
		if err := s.copyChunk(sd, dd, bd, off, buf[:n], baseBuf[:n], zeros, changed, p.fresh); err != nil {
			return err
		}
		t.setProgress(float64(off+n) / float64(size))
	}
	return dd.Flush()
}

// copyChunk copies [off, off+len(buf)) in 64 KiB blocks.
func (s *Server) copyChunk(sd, dd, bd *blockstore.Disk, off uint64, buf, baseBuf, zeros []byte,
	changed func(uint64) bool, fresh bool) error {
	n := uint64(len(buf))
	if changed == nil && bd == nil {
		// A full copy: allocation tells what to read.
		return sd.Extents(off, n, func(e blockstore.Extent) error {
			if e.Flags != 0 {
				if fresh {
					return nil
				}
				return dd.Zero(e.Offset, e.Length, 0)
			}
			p := buf[:e.Length]
			if _, err := sd.ReadAt(p, int64(e.Offset)); err != nil {
				return err
			}
			return dd.Write(e.Offset, p, 0)
		})
	}
	if _, err := sd.ReadAt(buf, int64(off)); err != nil {
		return err
	}
	if bd != nil {
		clear(baseBuf)
		if bs := bd.Size(); off < bs {
			if _, err := bd.ReadAt(baseBuf[:min(n, bs-off)], int64(off)); err != nil {
				return err
			}
		}
	}
	for b := uint64(0); b < n; b += cbt.BlockSize {
		blk := buf[b:min(b+cbt.BlockSize, n)]
		switch {
		case changed != nil && !changed(off+b):
			continue
		case bd != nil && bytes.Equal(blk, baseBuf[b:b+uint64(len(blk))]):
			continue
		case bytes.Equal(blk, zeros[:len(blk)]):
			if !fresh {
				if err := dd.Zero(off+b, uint64(len(blk)), 0); err != nil {
					return err
				}
			}
		default:
			if err := dd.Write(off+b, blk, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// vdiPoolMigrate moves a VDI, its snapshots (and theirs) to another vPool.
// vPools are key spaces of one store, so nothing is copied and the CBT
// chain stays usable, which XenServer's storage migration cannot offer.
func (s *Server) vdiPoolMigrate(c *call, a *api.VDIPoolMigrateArgs) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, v, err := s.vdiFor(a.UUID, "mirror")
	if err != nil {
		return nil, err
	}
	pool, perr := s.poolFor(a.SR)
	if perr != nil {
		return nil, perr
	}
	ids := family(w, v.info.ID)
	taskID := newTaskID()
	s.addOpsLocked(taskID, map[string]string{a.UUID: "mirror"})
	s.mu.Unlock()
	t, serr := s.tasks.start(taskID, "VDI.pool_migrate", a.UUID, c.user, func(ctx context.Context, t *task) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ctx.Err() != nil {
			return nil, errCancelled
		}
		if err := s.store.MovePool(pool.GUID, ids...); err != nil {
			return nil, err
		}
		s.log.Info("VDI migrated", "vdi", a.UUID, "pool", pool.Name, "volumes", len(ids))
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
