package blockstore

import (
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// The tiles of a lineage in pebble: what a writer reads for planTiles,
// how a plan goes into a batch, and how a read walks them. Like tiles.go,
// not used by the store yet (docs/design-extents.md, order of work).

// tileSpan bounds every tile key of lineage lin.
func tileSpan(lin uint64) (lo, hi []byte) { return lineageSpan(tagTile, lin) }

// tileUnder decodes the tile of lineage lin the iterator is at (a copy:
// it keeps nothing of the iterator's memory).
func tileUnder(it *pebble.Iterator, lin uint64) (tile, error) {
	val, err := it.ValueAndErr()
	if err != nil {
		return tile{}, err
	}
	t, err := decodeTile(lin, it.Key(), val)
	if err != nil {
		return tile{}, fmt.Errorf("blockstore: lineage %d: %w", lin, err)
	}
	return t, nil
}

// readTilesNear returns what planTiles needs for writes over blocks
// [lo, hi) of lineage lin: the tiles overlapping them, and the tiles
// touching those on either side when the plan could join them: always
// where a written piece will touch it, and where a tile the write cuts
// carries a shadow (its remainder may lose it, and then continue its
// neighbour). A remainder left as it was cannot join a neighbour it did
// not join before, since tiles are kept as long as they can be. So a
// write inside one tile, the usual small random write, costs one seek.
func readTilesNear(r pebble.Reader, lin, lo, hi uint64) ([]tile, error) {
	slo, shi := tileSpan(lin)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: slo, UpperBound: shi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []tile
	var before *tile // the tile ending at lo-1, which the seek meets first
	var key [tileKeyLen]byte
	valid := it.SeekGE(tileKey(key[:0], lin, max(lo, 1)-1))
	for ; valid; valid = it.Next() {
		t, err := tileUnder(it, lin)
		if err != nil {
			return nil, err
		}
		switch {
		case t.last < lo:
			before = &t
			continue
		case t.first < hi:
			out = append(out, t)
			if t.last+1 > hi && !hasShadow(&t) {
				return withBefore(it, lin, before, out, lo)
			}
			continue
		}
		// The first tile past the write: a neighbour when it touches the
		// last piece, written or cut.
		if t.first == max(hi, lastEnd(out, hi)) {
			out = append(out, t)
		}
		break
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	return withBefore(it, lin, before, out, lo)
}

// withBefore completes readTilesNear on the left: the tile the seek met
// before lo when a written piece starts at lo, or, when the first tile
// overlapping starts before lo and carries a shadow, the tile touching it.
func withBefore(it *pebble.Iterator, lin uint64, before *tile, out []tile, lo uint64) ([]tile, error) {
	if len(out) == 0 || out[0].first >= lo {
		if before != nil {
			out = append([]tile{*before}, out...)
		}
		return out, nil
	}
	first := out[0].first
	if first == 0 || !hasShadow(&out[0]) {
		return out, nil
	}
	var key [tileKeyLen]byte
	if !it.SeekLT(tileKey(key[:0], lin, first)) {
		return out, it.Error()
	}
	t, err := tileUnder(it, lin)
	if err != nil {
		return nil, err
	}
	if t.last+1 == first {
		out = append([]tile{t}, out...)
	}
	return out, nil
}

func hasShadow(t *tile) bool {
	return slices.ContainsFunc(t.vs, func(v tileVersion) bool { return v.shadow })
}

// lastEnd is the block after the last of ts, or def when ts is empty.
func lastEnd(ts []tile, def uint64) uint64 {
	if len(ts) == 0 {
		return def
	}
	return ts[len(ts)-1].last + 1
}

// addTo puts the plan's keys for lineage lin into b.
func (p *tilePlan) addTo(b *pebble.Batch, lin uint64) {
	var key [tileKeyLen]byte
	var val []byte
	for _, last := range p.deletes {
		_ = b.Delete(tileKey(key[:0], lin, last), nil)
	}
	for i := range p.sets {
		t := &p.sets[i]
		val = appendTile(val[:0], t)
		_ = b.Set(tileKey(key[:0], lin, t.last), val, nil)
	}
	var rk [9]byte
	var dk [dataKeyLen]byte
	var rv [dataKeyLen + 4]byte
	for _, r := range p.reverse {
		// The reverse record names the run's first block and generation;
		// a tile's key moves when it is cut, so readers look it up by block.
		_ = b.Set(reverseKey(rk[:0], r.seg, r.slot), reverseValue(rv[:0], dataKey(dk[:0], lin, r.first, r.gen), uint32(r.n)), nil)
	}
}

// visitTiles calls fn for each run of blocks among [first, last) that
// lineage lin has a version of at or below gen, in order, with that
// version cut to the run (a data version's slot and CRCs start at the
// run's first block). One seek, then a step per tile.
func visitTiles(r pebble.Reader, lin, gen, first, last uint64, fn func(blk, n uint64, v tileVersion) error) error {
	if first >= last {
		return nil
	}
	slo, shi := tileSpan(lin)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: slo, UpperBound: shi})
	if err != nil {
		return err
	}
	defer it.Close()
	var key [tileKeyLen]byte
	for valid := it.SeekGE(tileKey(key[:0], lin, first)); valid; valid = it.Next() {
		t, err := tileUnder(it, lin)
		if err != nil {
			return err
		}
		if t.first >= last {
			break
		}
		v, ok := readTile(&t, gen)
		if !ok {
			continue
		}
		a, b := max(first, t.first), min(last, t.last+1)
		if err := fn(a, b-a, v.slice(a-t.first, b-a)); err != nil {
			return err
		}
	}
	return it.Error()
}

// visitLayerTiles is visitLayer over tiles: each block of a run gets the
// value its own key would hold (a pointer without prev, or a marker), so
// what reads do with versions stays one code path while the store moves
// to tiles.
func (s *Store) visitLayerTiles(t *readTally, l layer, first, last uint64, fn func(blk, gen uint64, val []byte) error) error {
	var buf [pointerLen]byte
	if t != nil {
		t.iters++
	}
	return visitTiles(s.db, l.lin.rec.ID, l.gen, first, last, func(blk, n uint64, v tileVersion) error {
		for i := range n {
			val := v.blockValue(buf[:0], i)
			if t != nil {
				t.valueBytes += versionBytes(len(val))
			}
			if err := fn(blk+i, v.gen, val); err != nil {
				return err
			}
		}
		return nil
	})
}

// blockValue is the value the i-th block of v would hold as a key of its
// own: a pointer (no prev: reads never need it) or a marker.
func (v tileVersion) blockValue(dst []byte, i uint64) []byte {
	switch v.kind {
	case tileZero:
		return valueZero
	case tileHole:
		return valueHole
	}
	return segValue{cur: pointer{seg: v.seg, slot: v.slot + uint32(i), crc: v.crcs[i]}, epoch: v.epoch}.append(dst)
}
