package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"unsafe"

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

// Write stores p at offset off. Whole aligned 4 KiB blocks are written as
// they are; partial blocks are read, merged and rewritten under a stripe
// lock so concurrent writes to one block never lose each other's bytes.
func (d *Disk) Write(off uint64, p []byte, f Flags) error {
	return d.mutate("write", off, uint64(len(p)), f, p)
}

// Trim discards [off, off+n): it reads zeros afterwards and frees the
// space unless a snapshot or clone still sees the old data.
func (d *Disk) Trim(off, n uint64, f Flags) error {
	return d.mutate("trim", off, n, f&^NoHole, nil)
}

// Zero writes zeros to [off, off+n). With NoHole the blocks stay allocated
// (reported as zero, not as holes); otherwise it is a Trim.
func (d *Disk) Zero(off, n uint64, f Flags) error {
	return d.mutate("zero", off, n, f, nil)
}

// mutate is the single write path: data (p != nil) or zeros (p == nil,
// discarding unless NoHole).
func (d *Disk) mutate(op string, off, n uint64, f Flags, p []byte) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	if d.ReadOnly() {
		return fmt.Errorf("blockstore: %s %s: %w", op, d.id, ErrReadOnly)
	}
	if err := d.checkRange(op, off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if p != nil { // trims and zeroes free space or take next to none
		if err := d.s.space.admit(op, d.id, n); err != nil {
			return err
		}
	}
	lin := d.v.lin
	lin.mu.RLock()
	defer lin.mu.RUnlock()
	first, last := off>>blockShift, (off+n-1)>>blockShift
	partialFirst := off&(BlockSize-1) != 0
	partialLast := (off+n)&(BlockSize-1) != 0
	unlock := lin.lockStripes(first, last, partialFirst, partialLast)
	defer unlock()

	// Size a data batch up front: grown by doubling, a 1 MiB write copied
	// its data four times over (a sixth of sequential-write CPU).
	var b *pebble.Batch
	if p != nil {
		b = d.s.db.NewBatchWithSize(int((last-first+1)*(BlockSize+dataKeyLen+16) + 64))
	} else {
		b = d.s.db.NewBatch()
	}
	w := writer{d: d, lin: lin, b: b, gen: lin.rec.Head, first: first, c0: first >> 4, c1: (last >> 4) + 1, p: p}
	defer func() {
		if w.b != nil {
			w.b.Close()
		}
		for _, sf := range w.reserved {
			d.s.segs.release(sf)
		}
	}()
	// Whatever committed, the blocks' cached newest versions are settled
	// before the stripes let a read-modify-write in and before the caller
	// hears: a write leaves what it stored, a huge one (a trim of a whole
	// disk, say) drops its lineage's entries.
	if c := d.s.newest; c != nil && last-first < newestForgetMax {
		watch := c.watch(lin, first, last) // before anything commits
		w.settles = true
		w.newest.grow(last - first + 1)
		defer func() {
			if testHookBeforeSettle != nil {
				testHookBeforeSettle()
			}
			c.settle(lin, &watch, first, last, &w.newest, w.done)
		}()
	} else {
		defer c.forget(lin, first, last)
	}
	for blk := first; blk <= last; blk++ {
		bstart := blk << blockShift
		lo, hi := max(bstart, off), min(bstart+BlockSize, off+n)
		if hi-lo < BlockSize { // partial: read, merge, write back
			buf := make([]byte, BlockSize)
			if _, err := d.read(&w.reads, buf, bstart); err != nil {
				return err
			}
			if p != nil {
				copy(buf[lo-bstart:hi-bstart], p[lo-off:hi-off])
			} else {
				clear(buf[lo-bstart : hi-bstart])
			}
			if err := w.setBlock(blk, buf); err != nil {
				return err
			}
			continue
		}
		if p != nil {
			if err := w.setBlock(blk, p[lo-off:hi-off]); err != nil {
				return err
			}
			continue
		}
		// Whole blocks of zeros: handled as one range below.
		fullFirst := blk
		for blk < last && ((blk+1)<<blockShift)+BlockSize <= off+n {
			blk++
		}
		if err := w.zeroRange(fullFirst, blk+1, f); err != nil {
			return err
		}
	}
	return w.commit(f&FUA != 0)
}

// writer accumulates one write's batch.
type writer struct {
	d      *Disk
	lin    *lineage
	b      *pebble.Batch
	gen    uint64
	c0, c1 uint64 // the 64 KiB blocks the whole operation touches
	key    [dataKeyLen]byte
	reads  readTally // read-modify-write and trim lookups, for IOStats
	p      []byte    // the client's data, whose blocks pend may slice
	first  uint64    // the first block the operation touches
	// newest notes what each block will hold, for the newest cache, if
	// the write settles it. done: the last piece committed.
	settles bool
	newest  newestWrite
	done    bool
	// pend holds data blocks bound for segments, written by writeData
	// just before the batch commits (segment mode only).
	pend     []pendingBlock
	segBytes int // written to segments, for IOStats
	// reserved are the segments pend's slots went to, released once the
	// whole operation is done (reclaim leaves them alone until then).
	reserved []*segmentFile
}

type pendingBlock struct {
	blk       uint64
	val       []byte
	pOff      int    // where val starts in the writer's p, or -1
	seg, slot uint32 // where it was written
	epoch     uint32 // of its segment write
	// What the key held, for the pointer's prev (see readCurrent).
	prevKind     byte
	prev         pointer
	inlineBefore bool
	cached       bool // readCurrent found it in the newest cache
}

// follows reports whether next continues pb's run: the next block in the
// next slot of the same segment.
func (pb *pendingBlock) follows(next pendingBlock) bool {
	return next.seg == pb.seg && next.slot == pb.slot+1 && next.blk == pb.blk+1
}

// maxBatchOps bounds one batch of a zero or trim over a huge range.
const maxBatchOps = 1 << 16

// maxPendBlocks bounds the data blocks a writer holds for one segment
// write (32 MiB, NBD's largest request).
const maxPendBlocks = 8192

func (w *writer) setBlock(blk uint64, val []byte) error {
	if bytes.Equal(val, zeroBlock) {
		val = valueZero
	}
	if len(val) == BlockSize && w.d.s.opts.Segments {
		w.pend = append(w.pend, pendingBlock{blk: blk, val: val, pOff: w.offsetInP(val)})
		if len(w.pend) < maxPendBlocks {
			return nil
		}
		return w.writeData()
	}
	_ = w.b.Set(dataKey(w.key[:0], w.lin.rec.ID, blk, w.gen), val, nil)
	w.noteNewest(blk, val)
	if w.b.Count() < maxBatchOps {
		return nil
	}
	if err := w.writeData(); err != nil {
		return err
	}
	// Trims and zeroes of huge ranges commit in pieces (NBD does not make
	// them atomic). Each piece carries the marker for the whole operation,
	// so whatever piece survives a crash is covered by CBT.
	_ = w.b.Set(markerKey(w.lin.rec.ID, w.c0, w.c1), nil, nil)
	n := w.b.Len() + w.segBytes
	w.segBytes = 0
	err := commit(w.b, false)
	w.b = w.d.s.db.NewBatch()
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	w.d.v.stats.recordWrite(n)
	w.committed()
	return nil
}

// writeData writes the pending data blocks to segment slots (writeSlots)
// and adds their pointers and reverse keys to the batch. Only then does it
// read what each key holds now, for the
// pointer's prev: a write acknowledged and flushed after that read began
// had its FLUSH sync this write's slots too, so a pointer that can still
// lose its slot never needs a newer fallback than the one it records.
func (w *writer) writeData() error {
	if len(w.pend) == 0 {
		return nil
	}
	segs := w.d.s.segs
	for first := 0; first < len(w.pend); first += segs.slots {
		if err := w.writeSlots(w.pend[first:min(first+segs.slots, len(w.pend))]); err != nil {
			return err
		}
	}
	if err := w.readCurrent(); err != nil {
		return err
	}
	var val [pointerPrevLen]byte
	var rkey [9]byte
	var rfirst [dataKeyLen]byte
	var rval [dataKeyLen + 4]byte
	run := -1 // index in w.pend of the first block of the open run
	endRun := func(end int) {
		if run >= 0 {
			first := &w.pend[run]
			key := dataKey(rfirst[:0], w.lin.rec.ID, first.blk, w.gen)
			_ = w.b.Set(reverseKey(rkey[:0], first.seg, first.slot), reverseValue(rval[:0], key, uint32(end-run)), nil)
		}
		run = -1
	}
	for i, pb := range w.pend {
		key := dataKey(w.key[:0], w.lin.rec.ID, pb.blk, w.gen)
		if pb.inlineBefore {
			// prev cannot hold 4 KiB: stay inline, atomic in pebble (only
			// right after segments were turned on).
			endRun(i)
			_ = w.b.Set(key, pb.val, nil)
			w.noteNewest(pb.blk, pb.val)
			continue
		}
		v := segValue{cur: pointer{seg: pb.seg, slot: pb.slot, crc: blockCRC(pb.val)}, epoch: pb.epoch}
		v.prevKind, v.prev = pb.prevKind, pb.prev
		enc := v.append(val[:0])
		_ = w.b.Set(key, enc, nil)
		w.noteNewest(pb.blk, enc)
		if run >= 0 && !w.pend[i-1].follows(pb) {
			endRun(i)
		}
		if run < 0 {
			run = i
		}
	}
	endRun(len(w.pend))
	w.segBytes += len(w.pend) * BlockSize
	w.pend = w.pend[:0]
	return nil
}

// writeSlots writes blocks (at most a segment's worth) to consecutive
// slots of one segment, one pwrite per run that follows on in the client's
// buffer (a whole aligned write is one), and notes each block's slot and
// epoch.
func (w *writer) writeSlots(pend []pendingBlock) error {
	segs := w.d.s.segs
	sf, slot, err := segs.reserve(len(pend))
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	w.reserved = append(w.reserved, sf)
	start := 0
	for i := range pend {
		pend[i].seg, pend[i].slot = sf.id, slot+uint32(i)
		if i+1 < len(pend) && pend[i].pOff >= 0 && pend[i+1].pOff == pend[i].pOff+BlockSize {
			continue
		}
		run := pend[i].val
		if i > start {
			run = w.p[pend[start].pOff : pend[i].pOff+BlockSize]
		}
		epoch, err := segs.write(sf, slot+uint32(start), run)
		if err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		for j := start; j <= i; j++ {
			pend[j].epoch = epoch
		}
		start = i + 1
	}
	return nil
}

// offsetInP returns where val lies in the client's buffer w.p, or -1 for
// a block merged in a buffer of its own.
func (w *writer) offsetInP(val []byte) int {
	if len(w.p) == 0 {
		return -1
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(w.p)))
	v := uintptr(unsafe.Pointer(unsafe.SliceData(val)))
	if v < base || v+uintptr(len(val)) > base+uintptr(len(w.p)) {
		return -1
	}
	return int(v - base)
}

// readCurrent fills each pending block's prev from what its key at the
// head generation holds: nothing, a marker, a durable slot, or a slot not
// yet durable, whose own prev carries over.
func (w *writer) readCurrent() error {
	segs, id := w.d.s.segs, w.lin.rec.ID
	note := func(pb *pendingBlock, val []byte) error {
		switch {
		case len(val) == 0:
			pb.prevKind = prevHole
		case len(val) == 1:
			pb.prevKind = prevZero
		case len(val) == BlockSize:
			pb.inlineBefore = true
		case isPointer(val):
			v := decodeSegValue(val)
			switch {
			case segs.durable(v.cur, v.epoch):
				pb.prevKind, pb.prev = prevPointer, v.cur
			case v.prevKind == prevPointer && segs.isRetiring(v.prev.seg):
				// The carried prev is in a segment being reclaimed: make
				// the current value durable and fall back to it instead
				// (reclaim.go).
				if err := segs.sync(); err != nil {
					return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
				}
				pb.prevKind, pb.prev = prevPointer, v.cur
			default:
				pb.prevKind, pb.prev = v.prevKind, v.prev
			}
		}
		return nil
	}
	// The newest cache knows the block's newest version in the lineage:
	// at the head generation it is what the key holds, below it the key
	// holds nothing. Either way pebble need not be asked.
	misses := 0
	if c := w.d.s.newest; c != nil {
		var buf [pointerPrevLen]byte
		for i := range w.pend {
			pb := &w.pend[i]
			e, ok := c.lookup(w.lin, w.gen, pb.blk)
			pb.cached = ok
			if !ok {
				misses++
				continue
			}
			if e.gen == w.gen {
				if err := note(pb, e.stored(buf[:])); err != nil {
					return err
				}
			}
		}
		if misses == 0 {
			return nil
		}
	}
	var key [dataKeyLen]byte
	if len(w.pend) == 1 {
		pb := &w.pend[0]
		val, closer, err := w.d.s.db.Get(dataKey(key[:0], id, pb.blk, w.gen))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		err = note(pb, val)
		closer.Close()
		return err
	}
	lo := dataKey(nil, id, w.pend[0].blk, w.gen)
	hi := dataKey(nil, id, w.pend[len(w.pend)-1].blk+1, ^uint64(0))
	it, err := w.d.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	for i := range w.pend {
		pb := &w.pend[i]
		if pb.cached {
			continue
		}
		k := dataKey(key[:0], id, pb.blk, w.gen)
		if !it.SeekGE(k) || !bytes.Equal(it.Key(), k) {
			continue
		}
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		if err := note(pb, val); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	return nil
}

// zeroRange zeroes whole blocks [first, last). With nothing that can see
// old versions (no snapshot, clone or parent), discarding is one range
// deletion whatever its length; otherwise each visible block gets a marker.
func (w *writer) zeroRange(first, last uint64, f Flags) error {
	id := w.lin.rec.ID
	if f&NoHole != 0 {
		for blk := first; blk < last; blk++ {
			if err := w.setBlock(blk, valueZero); err != nil {
				return err
			}
		}
		return nil
	}
	if !w.lin.shared && w.lin.parent == nil {
		lo, hi := blockSpan(id, first, last)
		return w.b.DeleteRange(lo, hi, nil)
	}
	return w.d.s.visit(&w.reads, w.d.layers, first, last, func(blk uint64, val []byte) error {
		if len(val) == 0 {
			return nil // already a hole
		}
		return w.setBlock(blk, valueHole)
	})
}

// commit adds the change marker for 64 KiB blocks [c0, c1) unless one is
// already committed, then commits. The marker rides in the same batch as
// the data, so after a crash every surviving write has its marker: CBT may
// over-report, never under-report.
func (w *writer) commit(sync bool) error {
	lin, c0, c1 := w.lin, w.c0, w.c1
	lin.liveMu.Lock()
	marked := lin.liveBM.CardinalityInRange(c0, c1) == c1-c0
	lin.liveMu.Unlock()
	if !marked {
		_ = w.b.Set(markerKey(lin.rec.ID, c0, c1), nil, nil)
	}
	if err := w.writeData(); err != nil {
		return err
	}
	if sync && w.b.Empty() {
		// Nothing to change (a FUA trim of blocks an earlier trim already
		// discarded), but that earlier change may not be durable yet, and
		// pebble returns from an empty batch without syncing anything.
		w.b.Close()
		w.b = nil
		w.d.v.stats.recordRead(&w.reads)
		return w.d.s.flush()
	}
	if sync && w.d.s.opts.Segments {
		if err := w.d.s.segs.sync(); err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
	}
	n := w.b.Len() + w.segBytes
	w.segBytes = 0
	err := commit(w.b, sync)
	w.b = nil
	w.d.v.stats.recordRead(&w.reads)
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	w.d.v.stats.recordWrite(n)
	w.committed()
	w.done = true
	return nil
}

// noteNewest notes for the newest cache that blk will hold val once the
// write commits. Blocks it never hears of (a range deletion) are dropped.
func (w *writer) noteNewest(blk uint64, val []byte) {
	if !w.settles {
		return
	}
	e, ok := entryOf(w.gen, val)
	w.newest.note(w.first, blk, e, ok)
}

// committed records in memory what a committed batch (with its marker)
// changed: the live interval, and orphaned versions it made garbage. It runs
// after every piece, so a later piece failing cannot leave the live interval
// short of blocks whose markers a snapshot would then delete.
func (w *writer) committed() {
	lin, c0, c1 := w.lin, w.c0, w.c1
	lin.changes.Add(1)
	lin.liveMu.Lock()
	lin.liveBM.AddRange(c0, c1)
	if lin.orphan != nil && lin.orphan.IntersectsWithInterval(c0, c1) {
		// Overwrote versions only the head could see: garbage now.
		lin.pending.AddRange(c0, c1)
		lin.pending.And(lin.orphan)
		w.d.s.gc.poke()
	}
	lin.liveMu.Unlock()
}

// Stripe lock modes.
const (
	stripeFree uint8 = iota
	stripeShared
	stripeExclusive
)

// lockStripes locks the stripes of blocks [first, last]: exclusively where
// a partial block needs read-modify-write, shared elsewhere.
func (l *lineage) lockStripes(first, last uint64, partialFirst, partialLast bool) (unlock func()) {
	var mode [stripeCount]uint8
	if last-first+1 >= stripeCount {
		for i := range mode {
			mode[i] = stripeShared
		}
	} else {
		for blk := first; blk <= last; blk++ {
			mode[blk%stripeCount] = stripeShared
		}
	}
	if partialFirst {
		mode[first%stripeCount] = stripeExclusive
	}
	if partialLast {
		mode[last%stripeCount] = stripeExclusive
	}
	return l.lockStripeModes(&mode)
}

// lockStripeModes locks each stripe in the given mode, in ascending order
// so that no two lockers deadlock.
func (l *lineage) lockStripeModes(mode *[stripeCount]uint8) (unlock func()) {
	for i, m := range mode {
		switch m {
		case stripeShared:
			l.stripes[i].RLock()
		case stripeExclusive:
			l.stripes[i].Lock()
		}
	}
	return func() {
		for i, m := range mode {
			switch m {
			case stripeShared:
				l.stripes[i].RUnlock()
			case stripeExclusive:
				l.stripes[i].Unlock()
			}
		}
	}
}
