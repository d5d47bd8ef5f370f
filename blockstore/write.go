package blockstore

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
)

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
// discarding unless NoHole). planSteps says what the request's blocks
// become; each step gathers what it needs (the bytes of a partial block,
// the blocks a discard must hide) into new versions; a batch of those has
// its data written to segment slots, then planVersions gives its keys; the
// batch commits once, with the CBT marker (pieces only for huge ranges).
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
	req := writeRequest{off: off, n: n, data: p != nil, noHole: f&NoHole != 0, private: !lin.shared && lin.parent == nil}
	var stepBuf [3]writeStep
	steps := planSteps(req, stepBuf[:0])
	first, last := off>>blockShift, (off+n-1)>>blockShift
	// A merged block is read, then written: its stripe is exclusive. The
	// first step starts at first; only a merge can be the last step alone.
	mergeFirst := steps[0].kind == stepMerge
	mergeLast := steps[len(steps)-1].kind == stepMerge && steps[len(steps)-1].first == last
	unlock := lin.lockStripes(first, last, mergeFirst, mergeLast)
	defer unlock()

	// Size a data batch up front: grown by doubling, a 1 MiB write copied
	// its data four times over (a sixth of sequential-write CPU).
	var b *pebble.Batch
	if p != nil {
		b = d.s.db.NewBatchWithSize(int((last-first+1)*(BlockSize+dataKeyLen+16) + 64))
	} else {
		b = d.s.db.NewBatch()
	}
	w := writer{d: d, lin: lin, b: b, gen: lin.rec.Head, off: off, first: first, last: last, c0: first >> 4, c1: (last >> 4) + 1, p: p,
		scratch: scratchPool.Get().(*scratch)}
	defer func() {
		if w.unlockChunks != nil {
			w.unlockChunks()
		}
		w.scratch.release()
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
	for _, st := range steps {
		if err := w.gather(st); err != nil {
			return err
		}
	}
	return w.commit(f&FUA != 0)
}

// writer is one request's apply side: it gathers the new versions of its
// blocks, writes their data, and commits the batch planVersions fills.
type writer struct {
	d      *Disk
	lin    *lineage
	b      *pebble.Batch
	gen    uint64
	c0, c1 uint64    // the 64 KiB blocks the whole operation touches
	reads  readTally // read-modify-write and trim lookups, for IOStats
	p      []byte    // the client's data, whose blocks versions may slice
	off    uint64    // where p starts
	first  uint64    // the first block the operation touches
	last   uint64    // and the last
	// In a store of tiles: the chunks' unlock once flushTiles locked
	// them, and the drops (a private lineage's trim) not yet planned.
	unlockChunks  func()
	drops         []tileWrite
	tilePlans     []chunkPlan // in the batch, for the cache once it commits
	droppedChunks [][2]uint64 // chunks [c0, c1) a range deletion in the batch empties
	// newest notes what each block will hold, for the newest cache, if
	// the write settles it. done: the last piece committed.
	settles bool
	newest  newestWrite
	done    bool
	*scratch
	segBytes int // written to segments, for IOStats
	// reserved are the segments slots went to, released once the whole
	// operation is done (reclaim leaves them alone until then).
	reserved  []*segmentFile
	lastAdded uint64 // the block add took last
}

// scratch is a writer's reusable memory, pooled: without the pool each
// write allocated its version lists and plan anew (twice the allocations
// of a 4 KiB write).
type scratch struct {
	// The versions not yet in the batch: toSegments are 4 KiB of data
	// bound for segment slots (segment mode), inBatch everything else
	// (markers; data in the inline form).
	toSegments, inBatch []newVersion
	plan                versionPlan
	sorted              []newVersion // both, in block order (flushTiles)
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// release drops the references to the client's data and returns sc to the
// pool.
func (sc *scratch) release() {
	sc.drop()
	scratchPool.Put(sc)
}

// drop empties the version lists, forgetting the data they point to.
func (sc *scratch) drop() {
	clear(sc.toSegments)
	clear(sc.inBatch)
	clear(sc.sorted)
	sc.toSegments, sc.inBatch, sc.sorted = sc.toSegments[:0], sc.inBatch[:0], sc.sorted[:0]
}

// maxBatchOps bounds one batch of a zero or trim over a huge range (and of
// a write of more than 256 MiB): past it the batch commits as a piece.
const maxBatchOps = 1 << 16

// maxPendBlocks bounds the versions a writer holds before it writes their
// data and plans their keys (32 MiB of data, NBD's largest request).
const maxPendBlocks = 8192

// gather collects the new versions of one step's blocks.
func (w *writer) gather(st writeStep) error {
	switch st.kind {
	case stepData:
		for blk := st.first; blk < st.end; blk++ {
			at := blk<<blockShift - w.off
			if err := w.add(blk, w.p[at:at+BlockSize]); err != nil {
				return err
			}
		}
	case stepMerge:
		bstart := st.first << blockShift
		buf := make([]byte, BlockSize)
		if _, err := w.d.read(&w.reads, buf, bstart); err != nil {
			return err
		}
		if w.p != nil {
			copy(buf[st.lo:st.hi], w.p[bstart+st.lo-w.off:bstart+st.hi-w.off])
		} else {
			clear(buf[st.lo:st.hi])
		}
		return w.add(st.first, buf)
	case stepZero:
		for blk := st.first; blk < st.end; blk++ {
			if err := w.add(blk, valueZero); err != nil {
				return err
			}
		}
	case stepDrop:
		if w.d.s.tiles {
			return w.dropTiles(st.first, st.end)
		}
		lo, hi := blockSpan(w.lin.rec.ID, st.first, st.end)
		return w.b.DeleteRange(lo, hi, nil)
	case stepHide:
		return w.d.s.visit(&w.reads, w.d.layers, st.first, st.end, func(blk uint64, val []byte) error {
			if len(val) == 0 {
				return nil // already a hole
			}
			return w.add(blk, valueHole)
		})
	}
	return nil
}

// add takes blk's new value: a block of data (kept by reference: the
// client's buffer or a merge buffer) or a marker.
func (w *writer) add(blk uint64, val []byte) error {
	if w.d.s.tiles && len(w.toSegments)+len(w.inBatch) >= maxPendBlocks && w.lastAdded/chunkBlocks != blk/chunkBlocks {
		// Tiles flush at a chunk's end only: flushTiles reads the tiles
		// of a chunk from pebble, which does not see the batch.
		if err := w.flushTilesPiece(); err != nil {
			return err
		}
	}
	w.lastAdded = blk
	if len(val) == BlockSize {
		val = blockValue(val)
	}
	v := newVersion{blk: blk, val: val, pOff: -1}
	if len(val) == BlockSize && w.d.s.opts.Segments {
		v.placed, v.pOff = true, w.offsetInP(val)
		w.toSegments = append(w.toSegments, v)
	} else {
		w.inBatch = append(w.inBatch, v)
	}
	if w.d.s.tiles || len(w.toSegments)+len(w.inBatch) < maxPendBlocks {
		return nil
	}
	if err := w.flushPending(); err != nil {
		return err
	}
	if w.b.Count() < maxBatchOps {
		return nil
	}
	return w.commitPiece()
}

// flushPending writes the pending data to segment slots, and only then
// reads what each key holds now for the pointers' prev: a write
// acknowledged and flushed after that read began had its FLUSH sync this
// write's slots too, so a pointer that can still lose its slot never
// needs a newer fallback than the one it records. Then the plan's keys go
// into the batch.
func (w *writer) flushPending() error {
	if len(w.toSegments) > 0 {
		segs := w.d.s.segs
		for first := 0; first < len(w.toSegments); first += segs.slots {
			if err := w.writeSlots(w.toSegments[first:min(first+segs.slots, len(w.toSegments))]); err != nil {
				return err
			}
		}
		if !w.d.s.tiles {
			if err := w.readCurrent(); err != nil {
				return err
			}
		}
	}
	if w.d.s.tiles {
		return w.flushTiles()
	}
	w.plan.reset()
	planVersions(&w.plan, w.lin.rec.ID, w.gen, w.inBatch, w.d.s.segs)
	planVersions(&w.plan, w.lin.rec.ID, w.gen, w.toSegments, w.d.s.segs)
	if w.plan.syncFirst {
		if err := w.d.s.segs.sync(); err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
	}
	for _, kv := range w.plan.sets {
		_ = w.b.Set(kv.key, kv.val, nil)
		if kv.dataKey {
			w.noteNewest(kv.blk, kv.val)
		}
	}
	w.segBytes += len(w.toSegments) * BlockSize
	w.drop()
	return nil
}

// writeSlots writes versions (at most a segment's worth) to consecutive
// slots of one segment, one pwrite per run that follows on in the client's
// buffer (a whole aligned write is one), and notes each one's slot and
// epoch.
func (w *writer) writeSlots(vs []newVersion) error {
	segs := w.d.s.segs
	sf, slot, err := segs.reserve(len(vs))
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	w.reserved = append(w.reserved, sf)
	start := 0
	for i := range vs {
		vs[i].seg, vs[i].slot = sf.id, slot+uint32(i)
		if i+1 < len(vs) && vs[i].pOff >= 0 && vs[i+1].pOff == vs[i].pOff+BlockSize {
			continue
		}
		run := vs[i].val
		if i > start {
			run = w.p[vs[start].pOff : vs[i].pOff+BlockSize]
		}
		epoch, err := segs.write(sf, slot+uint32(start), run)
		if err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		for j := start; j <= i; j++ {
			vs[j].epoch = epoch
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

// readCurrent notes what each data key bound for a segment holds now at
// the head generation, from the newest cache where it knows, else pebble.
func (w *writer) readCurrent() error {
	vs, id := w.toSegments, w.lin.rec.ID
	// The newest cache knows the block's newest version in the lineage:
	// at the head generation it is what the key holds, below it the key
	// holds nothing. Either way pebble need not be asked.
	misses := len(vs)
	if c := w.d.s.newest; c != nil {
		misses = 0
		for i := range vs {
			v := &vs[i]
			e, ok := c.lookup(w.lin, w.gen, v.blk)
			v.fromCached = ok
			if !ok {
				misses++
			} else if e.gen == w.gen {
				v.now = e.held()
			}
		}
		if misses == 0 {
			return nil
		}
	}
	var key [dataKeyLen]byte
	if len(vs) == 1 {
		v := &vs[0]
		val, closer, err := w.d.s.db.Get(dataKey(key[:0], id, v.blk, w.gen))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		v.now = heldOf(val)
		return closer.Close()
	}
	lo := dataKey(nil, id, vs[0].blk, w.gen)
	hi := dataKey(nil, id, vs[len(vs)-1].blk+1, ^uint64(0))
	it, err := w.d.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	for i := range vs {
		v := &vs[i]
		if v.fromCached {
			continue
		}
		k := dataKey(key[:0], id, v.blk, w.gen)
		if !it.SeekGE(k) || string(it.Key()) != string(k) {
			continue
		}
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		v.now = heldOf(val)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	return nil
}

// commitPiece commits what the batch holds so far, with the marker of the
// whole operation: trims and zeroes of huge ranges commit in pieces (NBD
// does not make them atomic), and whatever piece survives a crash is
// covered by CBT.
func (w *writer) commitPiece() error {
	_ = w.b.Set(markerKey(w.lin.rec.ID, w.c0, w.c1), nil, nil)
	n := w.b.Len() + w.segBytes
	w.segBytes = 0
	err := commit(w.b, false)
	w.tilesCommitted(err)
	w.b = w.d.s.db.NewBatch()
	if err != nil {
		return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
	}
	w.d.v.stats.recordWrite(n)
	w.committed()
	return nil
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
	if err := w.flushPending(); err != nil {
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
	w.tilesCommitted(err)
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
