package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/cbt"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// CopyRequest is VDI.copy: every block of Source, or only those that
// differ from Base, into a fresh VDI (in Pool, default the source's) or
// into the existing VDI Into.
type CopyRequest struct {
	Source, Pool, Base, Into string
	Task                     string // the task that runs the copy
	By                       string
}

// Copy is a copy under way: its source and destination are busy until Run
// or Abandon.
type Copy struct {
	s              *Service
	task           string
	src, dst, base string
	fresh          bool // dst was created for this copy: it reads as zeros
	useCBT         bool // base..src changed blocks come from CBT
	released       bool
}

// ErrCancelled is what a copy returns when its context ends first.
var ErrCancelled = errors.New("cancelled")

// StartCopy checks a copy and prepares it: a fresh destination is created
// (marked as being built, so a crash leaves nothing behind), and both VDIs
// are marked busy for req.Task.
func (s *Service) StartCopy(req CopyRequest) (*Copy, error) {
	c := &Copy{s: s, task: req.Task, src: req.Source, base: req.Base}
	src, err := s.Check(req.Source, "copy")
	if err != nil {
		return nil, err
	}
	if req.Base != "" {
		base, ferr := s.Lookup(req.Base)
		if ferr != nil {
			return nil, ferr
		}
		_, _, cerr := s.store.ChangedBlocks(req.Base, req.Source)
		c.useCBT = cerr == nil
		if !c.useCBT && base.Info.Kind == blockstore.KindCBTMetadata {
			return nil, fault.Conflicts(fault.CodeVDIIncompatible, []string{req.Base, "cbt_metadata"},
				"base %s holds only CBT metadata and is not in %s's CBT chain, so there is nothing to compare with", req.Base, req.Source)
		}
	}
	if req.Into != "" {
		if req.Into == req.Source {
			return nil, fault.InvalidValue("into_vdi", req.Into, "is the VDI being copied")
		}
		if err := s.markCopyTarget(req.Into, src.Info.Size, req.Task); err != nil {
			return nil, err
		}
		c.dst = req.Into
	} else {
		poolRef := req.Pool
		if poolRef == "" {
			poolRef = src.Info.Pool
		}
		// xapi's fresh copy: same name, size, type, sharable, maps and
		// tags; writable; sm_config empty; CBT off.
		x := src.Attrs.Xen.Clone()
		a := Attrs{Xen: XenAttrs{NameLabel: x.NameLabel, NameDescription: x.NameDescription, Type: x.Type,
			Sharable: x.Sharable, OtherConfig: x.OtherConfig, XenstoreData: x.XenstoreData, Tags: x.Tags,
			AllowCaching: x.AllowCaching}, Lifecycle: Lifecycle{Building: req.Task}}
		if src.Info.Kind == blockstore.KindCBTMetadata {
			a.Xen.Type = ""
		}
		s.pools.inUse.RLock()
		pool, perr := s.Pool(poolRef, "SR")
		if perr != nil {
			s.pools.inUse.RUnlock()
			return nil, perr
		}
		id := uuid.NewString()
		info, err := s.store.Create(blockstore.CreateRequest{ID: id, Pool: pool.GUID, Size: src.Info.Size, Attrs: a.encode()})
		s.pools.inUse.RUnlock()
		if err != nil {
			return nil, StoreError(err, id, "copy")
		}
		// Marked before it is indexed: nothing else may touch it.
		s.insert(info, a, func(e *entry) {
			e.copyTarget = req.Task
			e.addOp(req.Task, "copy")
		})
		c.dst, c.fresh = id, true
	}
	// The source last: if it changed meanwhile, undo the destination.
	e, ferr := s.lockFor(req.Source, "copy")
	if ferr != nil {
		c.Abandon()
		return nil, ferr
	}
	e.addOp(req.Task, "copy")
	e.mu.Unlock()
	s.log.Info("VDI copy started", "task", req.Task, "vdi", req.Source, "into", c.dst, "base", req.Base, "by", req.By)
	return c, nil
}

// markCopyTarget applies xapi's rules for into_vdi and marks it.
func (s *Service) markCopyTarget(id string, need uint64, task string) error {
	e, ferr := s.lock(id)
	if ferr != nil {
		return ferr
	}
	defer e.mu.Unlock()
	st := e.opState()
	switch {
	case e.info.Kind == blockstore.KindCBTMetadata:
		return fault.Conflicts(fault.CodeVDIIncompatible, []string{id, "cbt_metadata"}, "VDI %s holds only CBT metadata", id)
	case e.info.ReadOnly:
		return fault.Conflicts(fault.CodeVDIReadOnly, []string{id}, "destination VDI %s is read-only", id)
	case e.info.Size < need:
		return fault.Conflicts(fault.CodeVDITooSmall, []string{id, fmt.Sprint(need)},
			"destination VDI %s has %d bytes; the source needs %d", id, e.info.Size, need)
	case st.RWVBDs > 0:
		return fault.Conflicts(fault.CodeVDIInUse, []string{id, "copy"}, "destination VDI %s is attached writable", id)
	case st.CopyTarget:
		return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", id}, "destination VDI %s is being written by a copy", id)
	}
	for _, op := range st.Current {
		return fault.Conflicts(fault.CodeOtherOperation, []string{"VDI", id}, "destination VDI %s is busy with %s", id, op)
	}
	e.copyTarget = task
	e.addOp(task, "copy")
	return nil
}

// Abandon undoes StartCopy when the copy will not run: a fresh destination
// is destroyed, both VDIs are released.
func (c *Copy) Abandon() {
	if c.released {
		return
	}
	if c.fresh {
		c.destroyFresh()
	}
	c.release()
}

func (c *Copy) release() {
	c.released = true
	for _, id := range []string{c.src, c.dst} {
		if e := c.s.entry(id); e != nil {
			e.mu.Lock()
			e.releaseOp(c.task)
			e.mu.Unlock()
		}
	}
}

func (c *Copy) destroyFresh() {
	if err := c.s.destroyVolume(c.dst); err != nil {
		c.s.log.Warn("removing a half-made VDI failed; the next start retries", "vdi", c.dst, "err", err)
	}
}

// Run moves the data and answers the destination's state. A failed or
// cancelled copy destroys the VDI it created. Both VDIs are released.
func (c *Copy) Run(ctx context.Context, progress func(float64)) (VDI, error) {
	defer c.release()
	err := c.s.copyBlocks(ctx, c, progress)
	if err == nil && ctx.Err() != nil {
		err = ErrCancelled
	}
	if err != nil {
		if c.fresh {
			c.destroyFresh()
		}
		return VDI{}, err
	}
	if c.fresh {
		// Built: the mark goes while the VDI is still the copy's.
		if err := c.finishBuilding(); err != nil {
			c.destroyFresh()
			return VDI{}, err
		}
	}
	// The answer is the record as it will be: without this copy running.
	c.release()
	return c.s.Get(c.dst)
}

// finishBuilding clears the fresh destination's building mark.
func (c *Copy) finishBuilding() error {
	e := c.s.entry(c.dst)
	if e == nil {
		return fault.Missing("VDI", c.dst)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.attrs.Clone()
	a.Lifecycle.Building = ""
	return c.s.setAttrs(e, a)
}

// SetCopyHook makes every copy call fn before each chunk it moves (tests).
func (s *Service) SetCopyHook(fn func(ctx context.Context)) { s.copyHook.Store(&fn) }

// copyBlocks moves the data, in 64 KiB blocks, touching only blocks that
// can matter, so a sparse VDI copies in time proportional to its data:
//   - with a base in the source's CBT chain: the changed blocks;
//   - with another base: blocks holding data in either, compared;
//   - without a base: the source's data blocks (an existing destination is
//     zeroed first, a fresh one reads as zeros already).
func (s *Service) copyBlocks(ctx context.Context, p *Copy, progress func(float64)) error {
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
			return ErrCancelled
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
		progress(float64(done) / float64(total))
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
			return nil, fmt.Errorf("volume: extents of %s made no progress at %d", d.ID(), off)
		}
		off = next
	}
	return bm, nil
}
