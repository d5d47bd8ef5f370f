package blockstore

import (
	"fmt"
	"slices"
	"sort"

	"github.com/cockroachdb/pebble/v2"
)

// chunkTiles is one chunk's tiles, in order, as pebble holds them. A
// writer holding the chunk's lock plans from it instead of asking pebble:
// a small random write then reads nothing, as a pointer write that the
// newest cache answers does today (docs/design-extents.md, "Small random
// writes").
type chunkTiles struct {
	ch    uint64 // the chunk: blocks [ch*chunkBlocks, (ch+1)*chunkBlocks)
	tiles []tile
}

// readChunkTiles reads every tile of chunk ch of lineage lin.
func readChunkTiles(r pebble.Reader, lin, ch uint64) (*chunkTiles, error) {
	lo := tileKey(nil, lin, ch*chunkBlocks)
	hi := tileKey(nil, lin, (ch+1)*chunkBlocks)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	c := &chunkTiles{ch: ch}
	for valid := it.First(); valid; valid = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		t, err := decodeTile(lin, it.Key(), val)
		if err != nil {
			return nil, fmt.Errorf("blockstore: lineage %d: %w", lin, err)
		}
		c.tiles = append(c.tiles, t)
	}
	return c, it.Error()
}

// near is what planTiles needs for writes over blocks [lo, hi) of the
// chunk: tilesNear of its tiles. Tiles of other chunks never join these,
// so they are never needed.
func (c *chunkTiles) near(lo, hi uint64) []tile { return tilesNear(c.tiles, lo, hi) }

// tilesNear picks from ts, tiles in order, by readTilesNear's rule: the
// tiles overlapping [lo, hi), and a tile touching those where a written
// piece touches it or where the tile the write cuts next to it has a
// shadow.
func tilesNear(ts []tile, lo, hi uint64) []tile {
	i := sort.Search(len(ts), func(i int) bool { return ts[i].last >= lo })
	j := i
	for j < len(ts) && ts[j].first < hi {
		j++
	}
	u0, u1 := lo, hi
	left, right := true, true // whether a neighbour there may join
	if j > i {
		u0, u1 = min(lo, ts[i].first), max(hi, ts[j-1].last+1)
		left = ts[i].first >= lo || hasShadow(&ts[i])
		right = ts[j-1].last < hi || hasShadow(&ts[j-1])
	}
	if left && i > 0 && ts[i-1].last+1 == u0 {
		i--
	}
	if right && j < len(ts) && ts[j].first == u1 {
		j++
	}
	return ts[i:j:j]
}

// apply makes c what pebble holds once plan p commits: the chunk's
// deleted tiles go, its tiles set replace the ones with their last block
// or join in order. The plan's tiles in other chunks are not c's.
func (c *chunkTiles) apply(p *tilePlan) {
	for _, last := range p.deletes {
		if i, ok := c.find(last); ok && last/chunkBlocks == c.ch {
			c.tiles = slices.Delete(c.tiles, i, i+1)
		}
	}
	for _, t := range p.sets {
		if t.last/chunkBlocks != c.ch {
			continue
		}
		if i, ok := c.find(t.last); ok {
			c.tiles[i] = t
		} else {
			c.tiles = slices.Insert(c.tiles, i, t)
		}
	}
}

// find is the index of the tile whose last block is last, or where it
// would go.
func (c *chunkTiles) find(last uint64) (int, bool) {
	ts := c.tiles
	i := sort.Search(len(ts), func(i int) bool { return ts[i].last >= last })
	return i, i < len(ts) && ts[i].last == last
}
