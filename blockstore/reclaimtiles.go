package blockstore

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Reclaim in a store of tiles. A slot is live when a version read can see
// (not a shadow) names it; moving it moves its version's whole run, the
// tile's blocks in consecutive slots, so the tile stays whole.

// tileAt returns the tile of lineage lin that holds blk, if any, from it
// (an iterator over tile keys, which may have to seek from anywhere).
func tileAt(it *pebble.Iterator, lin, blk uint64) (tile, bool, error) {
	var key [tileKeyLen]byte
	if !it.SeekGE(tileKey(key[:0], lin, blk)) {
		return tile{}, false, it.Error()
	}
	if k := it.Key(); len(k) != tileKeyLen || binary.BigEndian.Uint64(k[1:]) != lin {
		return tile{}, false, nil
	}
	t, err := tileUnder(it, lin)
	if err != nil || t.first > blk {
		return tile{}, false, err
	}
	return t, true, nil
}

// namedBy is the index in t's stack of the version read can see that
// names slot slot of segment seg for block blk, or -1.
func (t *tile) namedBy(seg, slot uint32, blk uint64) int {
	for k, v := range t.vs {
		if !v.shadow && v.kind == tileData && v.seg == seg && uint64(v.slot)+blk-t.first == uint64(slot) {
			return k
		}
	}
	return -1
}

// linTile is a tile and its lineage.
type linTile struct {
	lin uint64
	tile
}

// tileSlotLive is segmentSlots' question in a store of tiles: does a
// version of the tile holding the key's block name the slot? last keeps
// the tile found before, which the next slots of a run usually share.
func tileSlotLive(it *pebble.Iterator, last *linTile, id, slot uint32, key []byte) (bool, error) {
	lin, blk := binary.BigEndian.Uint64(key[1:]), binary.BigEndian.Uint64(key[9:])
	if len(last.vs) == 0 || last.lin != lin || blk < last.first || blk > last.last {
		t, ok, err := tileAt(it, lin, blk)
		if err != nil || !ok {
			return false, err
		}
		*last = linTile{lin, t}
	}
	return last.namedBy(id, slot, blk) >= 0, nil
}

// moveTileRun copies forward the run of the version that names slot
// slot of segment id for block blk, if one still does, and makes the
// version name the copy; the version it replaces becomes its shadow by
// the usual rule (shadowOf), which reclaimSegment's sync then settles.
// moveSlot holds s.mu and the lineage's read lock; this takes the chunk's
// lock, as a writer does. It returns how many slots moved.
func (s *Store) moveTileRun(lin *lineage, blk uint64, id, slot uint32) (uint64, error) {
	defer lin.chunks.lock(blk, blk)()
	linID := lin.rec.ID
	defer s.tileCache.drop(linID, blk/chunkBlocks, blk/chunkBlocks+1) // a moved run rewrites a tile
	lo, hi := tileSpan(linID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	t, ok, err := tileAt(it, linID, blk)
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil || !ok {
		return 0, err
	}
	k := t.namedBy(id, slot, blk)
	if k < 0 {
		return 0, nil
	}
	// The slots move: no cached pointer may name the old ones once this
	// returns (the segment file goes after the last move).
	defer s.newest.forget(lin, t.first, t.last)
	v := t.vs[k]
	n := t.last - t.first + 1
	buf := make([]byte, n*BlockSize)
	if err := s.segs.readAt(buf, id, v.slot); err != nil {
		return 0, err
	}
	for i := range n {
		if blockCRC(buf[i*BlockSize:(i+1)*BlockSize]) != v.crcs[i] {
			return 0, fmt.Errorf("block %d of lineage %d: %w: slot %d fails its CRC", t.first+i, linID, ErrCorrupt, v.slot+uint32(i))
		}
	}
	sf, to, err := s.segs.reserve(int(n))
	if err != nil {
		return 0, err
	}
	defer s.segs.release(sf)
	epoch, err := s.segs.write(sf, to, buf)
	if err != nil {
		return 0, err
	}
	moved := v
	moved.seg, moved.slot, moved.epoch = sf.id, to, epoch
	var backing *tileVersion
	rest := t.vs[k+1:]
	if len(rest) > 0 && rest[0].shadow {
		backing, rest = &rest[0], rest[1:]
	}
	syncFirst := false
	vs := append(append([]tileVersion(nil), t.vs[:k]...), moved)
	if sh, ok := shadowOf(v, backing, s.segs, &syncFirst); ok {
		vs = append(vs, sh)
	}
	t.vs = append(vs, rest...)
	if syncFirst {
		if err := s.segs.sync(); err != nil {
			return 0, err
		}
	}
	b := s.db.NewBatch()
	p := tilePlan{sets: []tile{t}, reverse: []tileRun{{seg: sf.id, slot: to, first: t.first, n: n, gen: v.gen}}}
	p.addTo(b, linID)
	if err := commit(b, false); err != nil {
		return 0, err
	}
	return n, nil
}
