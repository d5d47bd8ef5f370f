package blockstore

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The tiles of a lineage in pebble: what a writer reads for planTiles,
// how a plan goes into a batch, and how a read walks them. Like tiles.go,
// not used by the store yet (docs/design-extents.md, order of work).

// tileSpan bounds every tile key of lineage lin.
func tileSpan(lin uint64) (lo, hi []byte) { return lineageSpan(tagTile, lin) }

// readTilesNear returns what planTiles needs for writes over blocks
// [lo, hi) of lineage lin: the tiles overlapping them, and the tiles
// right before and after those when they touch.
func readTilesNear(r pebble.Reader, lin, lo, hi uint64) ([]tile, error) {
	slo, shi := tileSpan(lin)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: slo, UpperBound: shi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []tile
	at := func() (tile, error) {
		val, err := it.ValueAndErr()
		if err != nil {
			return tile{}, err
		}
		return decodeTile(lin, it.Key(), val) // copies what it keeps
	}
	var key [tileKeyLen]byte
	valid := it.SeekGE(tileKey(key[:0], lin, lo))
	u0 := lo
	for ; valid; valid = it.Next() {
		t, err := at()
		if err != nil {
			return nil, err
		}
		if t.first >= hi {
			if t.first == max(hi, lastEnd(out, hi)) {
				out = append(out, t) // the neighbour after, touching
			}
			break
		}
		if len(out) == 0 {
			u0 = min(lo, t.first)
		}
		out = append(out, t)
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if u0 > 0 && it.SeekLT(tileKey(key[:0], lin, u0)) {
		t, err := at()
		if err != nil {
			return nil, err
		}
		if t.last+1 == u0 {
			out = append([]tile{t}, out...)
		}
	}
	return out, it.Error()
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
		val, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		t, err := decodeTile(lin, it.Key(), val)
		if err != nil {
			return fmt.Errorf("blockstore: lineage %d: %w", lin, err)
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
