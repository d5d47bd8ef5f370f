package blockstore

import (
	"fmt"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// Flags modify a write.
type Flags uint8

const (
	// FUA makes the write durable before it returns (NBD_CMD_FLAG_FUA).
	FUA Flags = 1 << iota
	// NoHole keeps zeroed blocks allocated (NBD_CMD_FLAG_NO_HOLE).
	NoHole
)

// Stored values: a 4 KiB data block, or a one-byte marker.
var (
	valueHole = []byte{}    // discarded: reads zero, reported unallocated
	valueZero = []byte{'z'} // zeroed but allocated
	zeroBlock = make([]byte, BlockSize)
)

// layer is one step of a read: versions of lineage lin at or below gen.
type layer struct {
	lin *lineage
	gen uint64
}

// Disk is an attached volume: the handle the NBD server reads and writes.
// Safe for concurrent use. Close it; Store.Close reports handles left open.
type Disk struct {
	s      *Store
	v      *volume
	id     string  // v.rec.ID, copied: v.rec is replaced under Store.mu
	layers []layer // the volume's own first, then its clone parents
	// mu is held (read) by every operation, so Close waits for them and
	// Destroy never runs under a write still in flight.
	mu     sync.RWMutex
	closed bool
}

// Attach opens a volume for I/O. Snapshots attach read-only; metadata-only
// volumes cannot be attached. Destroy refuses an attached volume.
func (s *Store) Attach(id string) (*Disk, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("attach", id)
	if err != nil {
		return nil, err
	}
	if v.rec.Kind == KindCBTMetadata {
		return nil, fmt.Errorf("blockstore: attach %s: %w", id, ErrCBTMetadata)
	}
	gen := v.rec.Gen
	if v.rec.Kind == KindLive {
		gen = cbt.Head
	}
	d := &Disk{s: s, v: v, id: v.rec.ID, layers: []layer{{v.lin, gen}}}
	for l := v.lin; l.parent != nil; l = l.parent {
		d.layers = append(d.layers, layer{l.parent, l.rec.ParentGen})
	}
	v.attached.Add(1)
	return d, nil
}

// Close detaches the handle once the operations in flight on it are done.
// A second Close returns ErrClosed.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("blockstore: close %s: %w", d.id, ErrClosed)
	}
	d.closed = true
	d.v.attached.Add(-1)
	return nil
}

// ID returns the attached volume's ID.
func (d *Disk) ID() string { return d.id }

// Size returns the current virtual size in bytes.
func (d *Disk) Size() uint64 { return d.v.size.Load() }

// ReadOnly reports whether writes are refused.
func (d *Disk) ReadOnly() bool { return d.v.readOnly.Load() }

// Flush makes every acknowledged write durable (NBD_CMD_FLUSH).
func (d *Disk) Flush() error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	return d.s.flush()
}

// enter guards a data operation against Disk.Close and Store.Close; on
// success the caller must call leave.
func (d *Disk) enter() error {
	d.mu.RLock()
	d.s.data.RLock()
	if d.s.dataClosed || d.closed {
		d.s.data.RUnlock()
		d.mu.RUnlock()
		return fmt.Errorf("blockstore: %s: %w", d.id, ErrClosed)
	}
	return nil
}

func (d *Disk) leave() {
	d.s.data.RUnlock()
	d.mu.RUnlock()
}

func (d *Disk) checkRange(op string, off, n uint64) error {
	if end := off + n; end < off || end > d.Size() {
		return fmt.Errorf("blockstore: %s %s [%d,+%d): %w (size %d)", op, d.id, off, n, ErrOutOfRange, d.Size())
	}
	return nil
}

// ReadAt fills p from offset off. It reads all of p or fails: a read past
// the end returns ErrOutOfRange and no data.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("blockstore: read %s: %w: negative offset", d.id, ErrInvalid)
	}
	if err := d.enter(); err != nil {
		return 0, err
	}
	defer d.leave()
	if err := d.checkRange("read", uint64(off), uint64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	var t readTally
	found, err := d.read(&t, p, uint64(off))
	if err != nil {
		return 0, err
	}
	d.v.stats.recordClientRead(&t, blocksOf(uint64(off), uint64(len(p))), found)
	return len(p), nil
}

// blocksOf counts the 4 KiB blocks [off, off+n) touches (n > 0).
func blocksOf(off, n uint64) uint64 {
	return (off+n-1)>>blockShift - off>>blockShift + 1
}

// read fills p from off and returns how many blocks had a version.
func (d *Disk) read(t *readTally, p []byte, off uint64) (found uint64, err error) {
	clear(p)
	return d.readInto(t, p, off, nil)
}

// readInto copies the data among [off, off+len(p)) into p, leaving the
// bytes of blocks without data as they were, and returns how many blocks
// had a version; seen, if set, hears of each. Segment files stay put meanwhile:
// reclaim removes none while a read that may hold its pointers runs.
func (d *Disk) readInto(t *readTally, p []byte, off uint64, seen func(blk uint64, val []byte)) (found uint64, err error) {
	d.s.segs.readers.RLock()
	defer d.s.segs.readers.RUnlock()
	first, last := off>>blockShift, (off+uint64(len(p))-1)>>blockShift
	fill := newFiller(d.s, d.id, p, off)
	add := func(blk uint64, val []byte) error {
		found++
		if seen != nil {
			seen(blk, val)
		}
		return fill.add(blk, val)
	}
	if d.s.newest != nil && last-first < newestMaxRun {
		var served bool
		if served, err = d.readNewest(t, first, last, add); !served {
			err = d.readAndRemember(t, first, last, add)
		}
	} else {
		err = d.s.visit(t, d.layers, first, last+1, add)
	}
	if err == nil {
		err = fill.flush()
	}
	return found, err
}

// readNewest serves blocks [first, last] from the newest cache if it holds
// all of them in the disk's own layer, and reports whether it did.
func (d *Disk) readNewest(t *readTally, first, last uint64, add func(blk uint64, val []byte) error) (served bool, err error) {
	top := d.layers[0]
	var es [newestMaxRun]newestEntry
	for blk := first; blk <= last; blk++ {
		e, ok := d.s.newest.lookup(top.lin, top.gen, blk)
		if !ok {
			return false, nil
		}
		es[blk-first] = e
	}
	buf := make([]byte, 0, pointerLen)
	for blk := first; blk <= last; blk++ {
		e := &es[blk-first]
		t.valueBytes += versionBytes(int(e.valueLen))
		if err := add(blk, e.value(buf)); err != nil {
			return true, err
		}
	}
	return true, nil
}

// readAndRemember reads blocks [first, last] through pebble and, for a
// writable disk, remembers what its own layer holds: at generation
// cbt.Head, what a read finds there is the newest version.
func (d *Disk) readAndRemember(t *readTally, first, last uint64, add func(blk uint64, val []byte) error) error {
	top := d.layers[0]
	if top.gen != cbt.Head {
		return d.s.visit(t, d.layers, first, last+1, add)
	}
	c := d.s.newest
	w := c.watch(top.lin, first, last) // before pebble's view is taken
	return d.s.visitLayers(t, d.layers, first, last+1, func(li int, blk, gen uint64, val []byte) error {
		if li == 0 {
			c.remember(top.lin, &w, blk, gen, val)
		}
		return add(blk, val)
	})
}

// visit calls fn for every block in [first, last) that has a version in
// the chain of layers: the newest version at or below each layer's
// generation, the first layer that has one winning. Absent blocks read as
// zeros and are not visited. val is only valid during the call.
func (s *Store) visit(t *readTally, layers []layer, first, last uint64, fn func(blk uint64, val []byte) error) error {
	return s.visitLayers(t, layers, first, last, func(_ int, blk, _ uint64, val []byte) error {
		return fn(blk, val)
	})
}

// visitLayers is visit that also tells fn which layer answered and the
// generation of the version.
func (s *Store) visitLayers(t *readTally, layers []layer, first, last uint64, fn func(li int, blk, gen uint64, val []byte) error) error {
	// resolved is indexed by 32-bit offsets from first: cut longer ranges.
	for last-first > maxExtentBlocks {
		if err := s.visitLayers(t, layers, first, first+maxExtentBlocks, fn); err != nil {
			return err
		}
		first += maxExtentBlocks
	}
	var resolved *roaring.Bitmap // blocks an earlier layer answered (relative to first)
	if len(layers) > 1 {
		resolved = roaring.New()
	}
	for i, l := range layers {
		if resolved != nil && resolved.GetCardinality() == last-first {
			return nil
		}
		err := s.visitLayer(t, l, first, last, func(blk, gen uint64, val []byte) error {
			if resolved != nil {
				rel := uint32(blk - first)
				if resolved.Contains(rel) {
					return nil
				}
				if i < len(layers)-1 {
					resolved.Add(rel)
				}
			}
			return fn(i, blk, gen, val)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// visitLayer visits the newest version at or below l.gen of each block in
// [first, last) that has one in lineage l.lin, with its generation.
// Ascending SeekGE lets pebble step with Next instead of a fresh seek.
func (s *Store) visitLayer(t *readTally, l layer, first, last uint64, fn func(blk, gen uint64, val []byte) error) error {
	if s.tiles {
		return s.visitLayerTiles(t, l, first, last, fn)
	}
	id := l.lin.rec.ID
	lo, hi := blockSpan(id, first, last)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	var key [dataKeyLen]byte
	valid := it.SeekGE(dataKey(key[:0], id, first, l.gen))
	for valid {
		kb, kg, ok := decodeDataKey(it.Key(), id)
		if !ok {
			closeIter(t, it)
			return fmt.Errorf("blockstore: lineage %d: %w: key %x", id, ErrCorrupt, it.Key())
		}
		if kg > l.gen {
			// Only versions newer than this layer sees: seek to kb's newest
			// at or below gen (SeekGE never lands on this key again).
			valid = it.SeekGE(dataKey(key[:0], id, kb, l.gen))
			continue
		}
		val, err := it.ValueAndErr()
		if err != nil {
			closeIter(t, it)
			return err
		}
		if t != nil {
			t.valueBytes += versionBytes(len(val))
		}
		if err := fn(kb, kg, val); err != nil {
			closeIter(t, it)
			return err
		}
		// The next key is the next block's newest version, or older
		// versions of kb that snapshots keep: step over up to
		// olderVersionSteps of those, seek past more (a seek per block was
		// 39% of the CPU of 1 MiB reads of data written after a snapshot).
		// Never step past the last block asked for: without value
		// separation each value is its own pebble block, and that step
		// would load one more.
		if kb+1 >= last {
			break
		}
		valid = it.Next()
		for steps := 0; valid; steps++ {
			if nb, _, ok := decodeDataKey(it.Key(), id); !ok || nb != kb {
				break
			}
			if steps == olderVersionSteps {
				valid = it.SeekGE(dataKey(key[:0], id, kb+1, l.gen))
				break
			}
			valid = it.Next()
		}
	}
	return closeIter(t, it)
}

// olderVersionSteps is how many older versions of a block a read steps
// over with Next before it seeks instead: one snapshot taken before the
// block was rewritten makes one.
const olderVersionSteps = 2

// closeIter closes a read's iterator, first adding what it cost to t.
func closeIter(t *readTally, it *pebble.Iterator) error {
	if t != nil {
		st := it.Stats()
		t.iters++
		t.blockBytes += st.InternalStats.BlockBytes
		t.inCache += st.InternalStats.BlockBytesInCache
	}
	return it.Close()
}
