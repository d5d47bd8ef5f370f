package blockstore

import (
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
)

// The collector in a store of tiles. A tile's versions all cover the
// whole tile, so deadVersions decides for its stack at once; pruning
// rewrites the tile (or deletes it once empty), which a writer of the
// chunk may be doing too, so it holds the chunk's lock, as writers do.

// gcRules is what the collector decides a stack against: the pins
// (ascending), the newest of them (floor, 0 for none), the head, whether
// a live volume reads the head and whether a parent lies below.
type gcRules struct {
	pins                  []uint64
	floor, head           uint64
	headPinned, hasParent bool
}

// pruneTiles returns ts, a chunk's tiles in order, without the versions
// nobody can read in the tiles picked: dead versions with their shadows,
// and shadows whose version is durable. Tiles left without versions go,
// and neighbours that now continue each other join. removed counts block
// versions (a version of an n-block tile is n). Pure.
func pruneTiles(ts []tile, picked func(*tile) bool, r gcRules, segs slotState) (out []tile, removed uint64) {
	out = make([]tile, 0, len(ts))
	var vs []version
	for i := range ts {
		t := ts[i]
		if !picked(&t) {
			out = append(out, t)
			continue
		}
		n := t.last - t.first + 1
		vs = vs[:0]
		for _, v := range t.vs {
			if !v.shadow {
				vs = append(vs, version{gen: v.gen, hole: v.kind == tileHole})
			}
		}
		dead := deadVersions(vs, r.pins, r.headPinned, r.hasParent)
		kept := make([]tileVersion, 0, len(t.vs))
		k := -1 // index in vs of the last version seen
		for _, v := range t.vs {
			if !v.shadow {
				k++
			}
			if dead[k] {
				if !v.shadow {
					removed += n
				}
				continue
			}
			kept = append(kept, v)
		}
		t.vs = dropSettledShadows(kept, segs)
		if len(t.vs) > 0 {
			out = append(out, t)
		}
	}
	return mergeTiles(out), removed
}

// orphanedUnits adds to bm the 64 KiB blocks of the picked tiles among ts
// that still hold a version between the floor and the head: what a later
// overwrite at the head would orphan.
func orphanedUnits(bm *roaring.Bitmap, ts []tile, picked func(*tile) bool, r gcRules) {
	for i := range ts {
		t := &ts[i]
		if !picked(t) {
			continue
		}
		for _, v := range t.vs {
			if !v.shadow && v.gen > r.floor && v.gen < r.head {
				bm.AddRange(t.first>>4, t.last>>4+1)
				break
			}
		}
	}
}

// collectTiles is collectChunk in a store of tiles: for each chunk with
// candidate 64 KiB blocks, under the lineage's read lock and the chunk's
// lock, it reads the chunk's tiles, prunes those that overlap candidates
// and commits the difference.
func (s *Store) collectTiles(lin *lineage, cands []uint32) (blocks, deleted int, err error) {
	linID := lin.rec.ID
	for len(cands) > 0 {
		ch := uint64(cands[0]) << 4 / chunkBlocks
		n := 0
		for n < len(cands) && uint64(cands[n])<<4/chunkBlocks == ch {
			n++
		}
		units := roaring.BitmapOf(cands[:n]...)
		picked := func(t *tile) bool { return units.IntersectsWithInterval(t.first>>4, t.last>>4+1) }
		r, d, clean, err := s.collectTileChunk(lin, ch, picked, units)
		blocks += n
		deleted += d
		if err != nil {
			return blocks, deleted, fmt.Errorf("blockstore: gc lineage %d: %w", linID, err)
		}
		if clean != nil {
			s.pruneOrphans(lin, r.head, r.pinChanges, clean)
		}
		cands = cands[n:]
	}
	return blocks, deleted, nil
}

// tileGCView is gcRules with what pruneOrphans checks has not moved.
type tileGCView struct {
	gcRules
	pinChanges uint64
}

// collectTileChunk prunes one chunk. The pins are read under s.mu, then
// the lineage's read lock taken: a snapshot adds its pin while sealing
// the head under the write lock, so a head unchanged then means no pin
// was added since (one dropped only makes more versions dead, which a
// later job collects); should the head have moved, it reads again. It
// returns nil rules when the lineage is gone.
func (s *Store) collectTileChunk(lin *lineage, ch uint64, picked func(*tile) bool, units *roaring.Bitmap) (*tileGCView, int, *roaring.Bitmap, error) {
	for {
		s.mu.Lock()
		if err := s.usable(); err != nil {
			s.mu.Unlock()
			return nil, 0, nil, err
		}
		if s.lineages[lin.rec.ID] != lin {
			s.mu.Unlock()
			return nil, 0, nil, nil
		}
		r := &tileGCView{gcRules: gcRules{pins: lin.sortedDataPins(), head: lin.rec.Head, headPinned: lin.live != nil, hasParent: lin.parent != nil}, pinChanges: lin.pinChanges}
		if len(r.pins) > 0 {
			r.floor = r.pins[len(r.pins)-1]
		}
		fence := lin.tileFence.Load()
		s.mu.Unlock()
		lin.mu.RLock()
		if lin.rec.Head != r.head {
			lin.mu.RUnlock()
			continue
		}
		d, clean, err := s.pruneChunk(lin, ch, picked, units, r.gcRules, fence)
		lin.mu.RUnlock()
		return r, d, clean, err
	}
}

// pruneChunk does collectTileChunk's work under the chunk's lock. fence
// is the lineage's tileFence when the rules were read: a lineage whose
// tiles were all deleted since (dropped, or left with CBT metadata only)
// must not get any back.
func (s *Store) pruneChunk(lin *lineage, ch uint64, picked func(*tile) bool, units *roaring.Bitmap, r gcRules, fence uint64) (int, *roaring.Bitmap, error) {
	defer lin.chunks.lock(ch*chunkBlocks, ch*chunkBlocks)()
	if lin.tileFence.Load() != fence {
		return 0, nil, nil
	}
	defer s.tileCache.drop(lin.rec.ID, ch, ch+1) // what follows rewrites the chunk's tiles
	c, err := readChunkTiles(s.db, lin.rec.ID, ch)
	if err != nil {
		return 0, nil, err
	}
	out, removed := pruneTiles(c.tiles, picked, r, s.segs)
	orphaned := roaring.New()
	orphanedUnits(orphaned, out, picked, r)
	clean := roaring.AndNot(units, orphaned)
	deletes, sets := diffTiles(c.tiles, out)
	if len(deletes)+len(sets) == 0 {
		return 0, clean, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	p := tilePlan{deletes: deletes, sets: sets}
	p.addTo(b, lin.rec.ID)
	if removed > 0 {
		// As collectChunk: what replaced the dead versions may be in the
		// page cache only, and after a power cut falls back to them.
		if err := s.segs.sync(); err != nil {
			return 0, nil, err
		}
	}
	err = b.Commit(pebble.NoSync)
	s.newest.forgetLineage(lin)
	if err != nil {
		return 0, nil, err
	}
	lin.changes.Add(1)
	return int(removed), clean, nil
}
