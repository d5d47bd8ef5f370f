package blockstore

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// The write path's apply side in a store of tiles: after the data is in
// its slots, each chunk the batch touches has its tiles read, planned
// (planTiles) and put into the batch, under the chunk's lock.

// chunkLockCount is how many chunk locks a lineage has; chunk c takes
// lock c % chunkLockCount.
const chunkLockCount = 64

// chunkLocks serialise the writers of a chunk from reading its tiles to
// committing their plan: two writes to different blocks of one tile both
// rewrite its key, and the second must plan from what the first made.
type chunkLocks [chunkLockCount]sync.Mutex

// lock locks the chunks of blocks [first, last], in index order so two
// writers never deadlock, and returns the unlock.
func (c *chunkLocks) lock(first, last uint64) (unlock func()) {
	var held [chunkLockCount]bool
	if last/chunkBlocks-first/chunkBlocks+1 >= chunkLockCount {
		for i := range held {
			held[i] = true
		}
	} else {
		for ch := first / chunkBlocks; ch <= last/chunkBlocks; ch++ {
			held[ch%chunkLockCount] = true
		}
	}
	for i, h := range held {
		if h {
			c[i].Lock()
		}
	}
	return func() {
		for i, h := range held {
			if h {
				c[i].Unlock()
			}
		}
	}
}

// fenceTiles waits for every writer and pruner of the lineage's chunks to
// finish, and tells the pruners still to come (by tileFence) that their
// view is stale: the lineage's tiles are about to be deleted. REQUIRES:
// Store.mu held (no writer of the lineage can start: it has no live
// volume left, or none that may still write data).
func (s *Store) fenceTiles(l *lineage) {
	defer l.chunks.lock(0, chunkLockCount*chunkBlocks)()
	l.tileFence.Add(1)
	s.tileCache.dropLineage(l.rec.ID)
}

// tileWritesOf turns a batch's new versions, in block order, into runs:
// data in consecutive slots of one segment written at one epoch, or
// markers of one kind. crcs has room for every data version; the runs'
// CRCs are slices of it.
func tileWritesOf(vs []newVersion, crcs []uint32) []tileWrite {
	var out []tileWrite
	for i := range vs {
		v := &vs[i]
		kind := tileData
		switch {
		case !v.placed && len(v.val) == 0:
			kind = tileHole
		case !v.placed:
			kind = tileZero
		}
		if kind == tileData {
			crcs = append(crcs, blockCRC(v.val))
		}
		if n := len(out); n > 0 && i > 0 {
			r, prev := &out[n-1], &vs[i-1]
			if r.kind == kind && prev.blk+1 == v.blk && r.first/chunkBlocks == v.blk/chunkBlocks &&
				(kind != tileData || prev.follows(v) && prev.epoch == v.epoch) {
				r.n++
				if kind == tileData {
					r.crcs = crcs[len(crcs)-int(r.n):]
				}
				continue
			}
		}
		w := tileWrite{first: v.blk, n: 1, kind: kind}
		if kind == tileData {
			w.seg, w.slot, w.epoch, w.crcs = v.seg, v.slot, v.epoch, crcs[len(crcs)-1:]
		}
		out = append(out, w)
	}
	return out
}

// flushTiles plans the pending versions and drops into the batch, chunk
// by chunk, and notes for the newest cache what each block will hold.
func (w *writer) flushTiles() error {
	if w.unlockChunks == nil {
		w.unlockChunks = w.lin.chunks.lock(w.first, w.last)
	}
	w.sorted = append(append(w.sorted[:0], w.toSegments...), w.inBatch...)
	slices.SortFunc(w.sorted, func(a, b newVersion) int { return cmp.Compare(a.blk, b.blk) })
	writes := tileWritesOf(w.sorted, make([]uint32, 0, len(w.toSegments)))
	writes = append(writes, w.drops...)
	slices.SortFunc(writes, func(a, b tileWrite) int { return cmp.Compare(a.first, b.first) })
	id, segs := w.lin.rec.ID, w.d.s.segs
	done := len(w.tilePlans) // plans of earlier flushes, in the batch already
	syncFirst := false
	for lo := 0; lo < len(writes); {
		ch := writes[lo].first / chunkBlocks
		hi := lo + 1
		for hi < len(writes) && writes[hi].first/chunkBlocks == ch {
			hi++
		}
		span0, span1 := writes[lo].first, writes[hi-1].first+writes[hi-1].n
		c, near, err := w.tilesNear(ch, span0, span1)
		if err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
		p := planTiles(w.gen, writes[lo:hi], near, segs)
		syncFirst = syncFirst || p.syncFirst
		w.tilePlans = append(w.tilePlans, chunkPlan{c, p})
		lo = hi
	}
	if syncFirst {
		if err := segs.sync(); err != nil {
			return fmt.Errorf("blockstore: write %s: %w", w.d.id, err)
		}
	}
	for i := range w.tilePlans[done:] {
		w.tilePlans[done+i].p.addTo(w.b, id)
	}
	var buf [pointerLen]byte
	for _, wr := range writes {
		if wr.kind == tileDrop {
			continue
		}
		v := wr.version(w.gen)
		for i := range wr.n {
			w.noteNewest(wr.first+i, v.blockValue(buf[:0], i))
		}
	}
	w.segBytes += len(w.toSegments) * BlockSize
	w.drops = w.drops[:0]
	w.drop()
	return nil
}

// dropTiles removes every version of blocks [first, end) (a private
// lineage's trim): whole chunks inside it by one range deletion, since no
// tile crosses a chunk; the blocks at either end through the plan, a
// drop per chunk.
func (w *writer) dropTiles(first, end uint64) error {
	c0 := min((first+chunkBlocks-1)/chunkBlocks*chunkBlocks, end)
	c1 := max(end/chunkBlocks*chunkBlocks, c0)
	for _, r := range [][2]uint64{{first, c0}, {c1, end}} {
		for b := r[0]; b < r[1]; b = (b/chunkBlocks + 1) * chunkBlocks {
			n := min(r[1], (b/chunkBlocks+1)*chunkBlocks) - b
			w.drops = append(w.drops, tileWrite{first: b, n: n, kind: tileDrop})
		}
	}
	if c0 == c1 {
		return nil
	}
	id := w.lin.rec.ID
	w.droppedChunks = append(w.droppedChunks, [2]uint64{c0 / chunkBlocks, c1 / chunkBlocks})
	return w.b.DeleteRange(tileKey(nil, id, c0), tileKey(nil, id, c1), nil)
}

// chunkPlan is a plan for chunk c (nil: not cached), in the batch, not
// yet committed.
type chunkPlan struct {
	c *chunkTiles
	p tilePlan
}

// tilesNear returns what planTiles needs for writes over blocks [lo, hi)
// of chunk ch: from the chunk's cached tiles, read from pebble whole and
// cached on a miss, or, with no cache, straight from pebble (c is then
// nil). REQUIRES: the chunk's lock held (flushTiles).
func (w *writer) tilesNear(ch, lo, hi uint64) (c *chunkTiles, near []tile, err error) {
	cache, id := w.d.s.tileCache, w.lin.rec.ID
	if cache == nil {
		near, err = readTilesNear(w.d.s.db, id, lo, hi)
		// Tiles of other chunks never join these: leave them out, as
		// what the batch already did to them is not in pebble's view.
		return nil, slices.DeleteFunc(near, func(t tile) bool { return t.first/chunkBlocks != ch }), err
	}
	if c = cache.get(id, ch); c == nil {
		if c, err = readChunkTiles(w.d.s.db, id, ch); err != nil {
			return nil, nil, err
		}
		cache.put(id, c)
	}
	return c, c.near(lo, hi), nil
}

// tilesCommitted brings the cached chunks up to what the batch that just
// committed made of them, or, when it failed (err), forgets them.
func (w *writer) tilesCommitted(err error) {
	cache, id := w.d.s.tileCache, w.lin.rec.ID
	for _, cp := range w.tilePlans {
		switch {
		case cp.c == nil:
		case err != nil:
			cache.drop(id, cp.c.ch, cp.c.ch+1)
		default:
			cache.apply(id, cp.c, &cp.p)
		}
	}
	for _, r := range w.droppedChunks {
		cache.drop(id, r[0], r[1])
	}
	w.tilePlans, w.droppedChunks = w.tilePlans[:0], w.droppedChunks[:0]
}

// flushTilesPiece flushes what is pending and commits it as a piece when
// the batch is full, as add does for pointers.
func (w *writer) flushTilesPiece() error {
	if err := w.flushPending(); err != nil {
		return err
	}
	if w.b.Count() < maxBatchOps {
		return nil
	}
	return w.commitPiece()
}
