package blockstore

import (
	"encoding/binary"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Power-loss recovery in a store of tiles: a version whose slot for some
// block fails its CRC falls back, for that block, to its shadow (which
// becomes an ordinary version) or, without one, goes, letting older
// versions show through, as a pointer falls back to its prev. A tile with
// such blocks is cut around them.

// badSlot is a block whose version k in the tile ending at last names a
// slot that did not survive.
type badSlot struct {
	lin, last, blk uint64
	k              int
}

// findBadTileSlots appends to bad the blocks of the run (slots from
// first of segment seg, for the blocks its keys name) whose version still
// names the slot and whose slot fails its CRC.
func (s *Store) findBadTileSlots(it *pebble.Iterator, bad []badSlot, buf []byte, seg, first uint32, run slotRun) ([]badSlot, error) {
	var last linTile
	for i := range run.n {
		slot, key := first+i, run.keyAt(nil, i)
		lin, blk := binary.BigEndian.Uint64(key[1:]), binary.BigEndian.Uint64(key[9:])
		if len(last.vs) == 0 || last.lin != lin || blk < last.first || blk > last.last {
			t, ok, err := tileAt(it, lin, blk)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // gone since: the slot is garbage
			}
			last = linTile{lin, t}
		}
		k := last.namedBy(seg, slot, blk)
		if k < 0 {
			continue // the tile moved on
		}
		if err := s.segs.readAt(buf, seg, slot); err == nil && blockCRC(buf) == last.vs[k].crcs[blk-last.first] {
			continue // survived
		}
		bad = append(bad, badSlot{lin: lin, last: last.last, blk: blk, k: k})
	}
	return bad, nil
}

// fixTiles adds to b the tiles the bad blocks leave, bad sorted by
// lineage, tile and block; it is the iterator over tiles that found them.
func fixTiles(it *pebble.Iterator, b *pebble.Batch, bad []badSlot) error {
	for len(bad) > 0 {
		n := 1
		for n < len(bad) && bad[n].lin == bad[0].lin && bad[n].last == bad[0].last {
			n++
		}
		t, ok, err := tileAt(it, bad[0].lin, bad[0].last)
		if err != nil {
			return err
		}
		if ok {
			deletes, sets := diffTiles([]tile{t}, fallBack(t, bad[:n]))
			p := tilePlan{deletes: deletes, sets: sets}
			p.addTo(b, bad[0].lin)
		}
		bad = bad[n:]
	}
	return it.Error()
}

// fallBack is tile t with each bad block's version fallen back: cut so
// that every piece's blocks have the same versions to drop, then joined
// again where that leaves pieces that continue each other. Pure.
func fallBack(t tile, bad []badSlot) []tile {
	dropsAt := func(blk uint64) []int { // version indexes bad at blk, ascending
		var ks []int
		for _, b := range bad {
			if b.blk == blk {
				ks = append(ks, b.k)
			}
		}
		slices.Sort(ks)
		return slices.Compact(ks)
	}
	var pieces []tile
	for x := t.first; x <= t.last; {
		ks := dropsAt(x)
		y := x + 1
		for y <= t.last && slices.Equal(dropsAt(y), ks) {
			y++
		}
		p := sliceTile(&t, x, y)
		if len(ks) > 0 {
			var vs []tileVersion
			for i := 0; i < len(p.vs); i++ {
				v := p.vs[i]
				if !v.shadow && slices.Contains(ks, i) {
					if i+1 < len(p.vs) && p.vs[i+1].shadow {
						sh := p.vs[i+1]
						sh.shadow = false
						vs = append(vs, sh)
						i++
					}
					continue
				}
				vs = append(vs, v)
			}
			p.vs = vs
		}
		if len(p.vs) > 0 {
			pieces = append(pieces, p)
		}
		x = y
	}
	return mergeTiles(pieces)
}
