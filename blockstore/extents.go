package blockstore

import (
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// ExtentFlags describe a run of blocks; the values are NBD base:allocation's.
type ExtentFlags uint32

const (
	// Hole: no storage is allocated (NBD_STATE_HOLE).
	Hole ExtentFlags = 1
	// Zero: the range reads as zeros (NBD_STATE_ZERO).
	Zero ExtentFlags = 2
)

// Extent is a run of bytes with one allocation status.
type Extent struct {
	Offset, Length uint64
	Flags          ExtentFlags
}

// maxExtentBlocks bounds one Extents call (16 TiB); longer requests get a
// shorter answer, which NBD BLOCK_STATUS allows.
const maxExtentBlocks = 1 << 32

// Extents reports the allocation of [off, off+n) as consecutive extents in
// ascending order, merged where adjacent runs agree. The answer may stop
// short of off+n (at 16 TiB), never past it. Work is proportional to the
// allocated blocks, not to n.
func (d *Disk) Extents(off, n uint64, fn func(Extent) error) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	if err := d.checkRange("extents", off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	first, last := off>>blockShift, (off+n-1)>>blockShift
	if last-first >= maxExtentBlocks {
		last = first + maxExtentBlocks - 1
		n = (last+1)<<blockShift - off
	}
	data, zero := roaring.New(), roaring.New()
	var t readTally
	defer d.v.stats.recordRead(&t)
	err := d.s.visit(&t, d.layers, first, last+1, func(blk uint64, val []byte) error {
		rel := uint32(blk - first)
		switch {
		case isData(val):
			data.Add(rel)
		case len(val) == 1 && val[0] == 'z':
			zero.Add(rel)
		case len(val) != 0:
			return fmt.Errorf("blockstore: extents %s block %d: %w", d.id, blk, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		return err
	}
	end := off + n
	nblocks := last - first + 1
	var cur Extent
	emit := func(x Extent) error {
		if cur.Length > 0 && cur.Flags == x.Flags && cur.Offset+cur.Length == x.Offset {
			cur.Length += x.Length
			return nil
		}
		if cur.Length > 0 {
			if err := fn(cur); err != nil {
				return err
			}
		}
		cur = x
		return nil
	}
	for rel := uint64(0); rel < nblocks; {
		var flags ExtentFlags
		var runEnd uint64
		switch {
		case data.Contains(uint32(rel)):
			runEnd = cbt.NextAbsent(data, rel, nblocks)
		case zero.Contains(uint32(rel)):
			flags, runEnd = Zero, cbt.NextAbsent(zero, rel, nblocks)
		default:
			flags = Hole | Zero
			runEnd = min(cbt.NextPresent(data, rel, nblocks), cbt.NextPresent(zero, rel, nblocks))
		}
		lo := max((first+rel)<<blockShift, off)
		hi := min((first+runEnd)<<blockShift, end)
		if err := emit(Extent{Offset: lo, Length: hi - lo, Flags: flags}); err != nil {
			return err
		}
		rel = runEnd
	}
	return fn(cur)
}
