package blockstore

import (
	"slices"
	"sort"
	"sync"

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
	mem   int64 // what the tiles take in memory, about (tileMem); under the chunk's lock
	// counted is mem as the cache last added it up: read and written
	// under tileCache.mu only, so eviction never reads mem while the
	// chunk's writer changes it.
	counted int64
}

// tileMem is about what t takes in memory.
func tileMem(t *tile) int64 {
	n := int64(64)
	for _, v := range t.vs {
		n += 64 + 4*int64(len(v.crcs))
	}
	return n
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
		t, err := tileUnder(it, lin)
		if err != nil {
			return nil, err
		}
		c.tiles = append(c.tiles, t)
		c.mem += tileMem(&t)
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
			c.mem -= tileMem(&c.tiles[i])
			c.tiles = slices.Delete(c.tiles, i, i+1)
		}
	}
	for _, t := range p.sets {
		if t.last/chunkBlocks != c.ch {
			continue
		}
		c.mem += tileMem(&t)
		if i, ok := c.find(t.last); ok {
			c.mem -= tileMem(&c.tiles[i])
			c.tiles[i] = t
		} else {
			c.tiles = slices.Insert(c.tiles, i, t)
		}
	}
}

// tileCache keeps chunks' tiles for their writers, within a budget in
// bytes. An entry is exact: only the holder of its chunk's lock reads or
// changes it, after reading pebble under that lock on a miss, and whatever
// else rewrites a chunk's tiles (the collector, reclaim, a lineage's
// deletion) drops the entry under the lock. Eviction may take an entry
// from the map while its writer still holds it: that writer's changes
// then land in an object nobody finds again, and the next writer reads
// pebble.
type tileCache struct {
	mu     sync.Mutex
	chunks map[chunkRef]*chunkTiles
	mem    int64
	budget int64
}

type chunkRef struct{ lin, ch uint64 }

// tileCacheBytesPerBlock sizes the tile cache from the newest cache's
// blocks: 32 MiB by default, which holds about 14,000 chunks written in
// long runs (28 GiB of disk), or some 200 chunks fragmented to one tile
// per block.
const tileCacheBytesPerBlock = 32

// newTileCache returns a cache of about budget bytes, or nil for none.
func newTileCache(budget int64) *tileCache {
	if budget <= 0 {
		return nil
	}
	return &tileCache{chunks: map[chunkRef]*chunkTiles{}, budget: budget}
}

// get returns chunk ch of lineage lin, if cached. REQUIRES: the chunk's
// lock held, as for every method but dropLineage.
func (c *tileCache) get(lin, ch uint64) *chunkTiles {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chunks[chunkRef{lin, ch}]
}

// put adds ct, read from pebble, as chunk ct.ch of lineage lin, evicting
// others while over budget.
func (c *tileCache) put(lin uint64, ct *chunkTiles) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ref := chunkRef{lin, ct.ch}
	if old := c.chunks[ref]; old != nil {
		c.mem -= old.counted
	}
	c.chunks[ref] = ct
	ct.counted = ct.mem
	c.mem += ct.counted
	for r, e := range c.chunks { // in Go's random order
		if c.mem <= c.budget {
			break
		}
		if r != ref {
			delete(c.chunks, r)
			c.mem -= e.counted
		}
	}
}

// apply applies a committed plan to ct, chunk ct.ch of lineage lin, and
// accounts for what that changed in memory, if ct is still cached.
func (c *tileCache) apply(lin uint64, ct *chunkTiles, p *tilePlan) {
	if c == nil {
		return
	}
	ct.apply(p)
	mem := ct.mem
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chunks[chunkRef{lin, ct.ch}] == ct {
		c.mem += mem - ct.counted
		ct.counted = mem
	}
}

// drop forgets chunks [c0, c1) of lineage lin.
func (c *tileCache) drop(lin, c0, c1 uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c1-c0 <= uint64(len(c.chunks)) {
		for ch := c0; ch < c1; ch++ {
			c.forgetLocked(chunkRef{lin, ch})
		}
		return
	}
	for r := range c.chunks {
		if r.lin == lin && r.ch >= c0 && r.ch < c1 {
			c.forgetLocked(r)
		}
	}
}

// dropLineage forgets every chunk of lineage lin. REQUIRES: every chunk
// lock of the lineage held (fenceTiles).
func (c *tileCache) dropLineage(lin uint64) { c.drop(lin, 0, ^uint64(0)) }

func (c *tileCache) forgetLocked(r chunkRef) {
	if e := c.chunks[r]; e != nil {
		c.mem -= e.counted
		delete(c.chunks, r)
	}
}

// find is the index of the tile whose last block is last, or where it
// would go.
func (c *chunkTiles) find(last uint64) (int, bool) {
	ts := c.tiles
	i := sort.Search(len(ts), func(i int) bool { return ts[i].last >= last })
	return i, i < len(ts) && ts[i].last == last
}
