package blockstore

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// newestCache remembers, for blocks recently read, the value of their newest
// version: a segment pointer or a marker. A small read of a block it holds
// skips pebble, whose SeekGE was the largest single cost of 4 KiB random
// reads (36% of the daemon's CPU, bench/RESULTS.md).
//
// An entry is only ever the newest version of its block in its lineage,
// so it answers any layer of that lineage whose generation is at or above
// the entry's. Every change to a block's versions bumps an epoch after it
// commits and before it returns:
//
//   - a change to one block (write, trim, zero, reclaim's move) bumps the
//     epoch of the block's set and drops the entry; a write of up to
//     newestForgetMax blocks leaves what it stored instead, if the epoch
//     did not move since before it committed (settle);
//   - a change to many (GC, a huge trim, a destroyed lineage) bumps the
//     lineage's cacheEpoch, which every entry carries and every hit checks.
//
// A read that misses notes both epochs before it opens its pebble iterator
// and adds what it found only if neither moved. A change committed after the
// iterator opened bumps one of them afterwards, so the read's now stale
// value is either refused or dropped; a change committed before is in what
// the read found. The same argument orders two writes of one block: the one
// that committed last settles last or finds the epoch moved. While two
// overlapping writes are both in flight, reads may see either.
//
// Reclaim drops every block of a segment before it removes the file, so no
// entry names a slot that is gone (reclaim.go).
//
// The entries sit in one array, not a Go map: a map of 2^20 took 112 MiB of
// Go heap, past the daemon's 128 MiB soft limit, and the collector then ran
// without pause (random reads of a 16-deep chain fell from 103k to 27k per
// second). Each shard's part is two-way set associative: a new entry
// displaces the older of its set.
type newestCache struct {
	shards []newestShard
}

type newestShard struct {
	mu sync.Mutex
	// epochs has one epoch per set, bumped under mu by every drop of a
	// block of the set. One per shard made every 1 MiB write, which
	// touches all shards, find its watched epochs moved by the writes
	// beside it, so large writes could not leave what they stored. 32
	// bits: a watch spans one write or read, not 2^32 drops.
	epochs []atomic.Uint32
	slots  []newestSlot // sets of two: the newer first
	mask   uint64       // sets - 1
	_      [64]byte     // shards sit in one slice: keep their locks apart
}

type blockRef struct{ lin, blk uint64 }

// newestSlot is one place in the array: lin 0 (no lineage has it) is empty.
type newestSlot struct {
	k blockRef
	e newestEntry
}

// NewestCacheEntryBytes is what one block in the newest cache costs.
const NewestCacheEntryBytes = int(unsafe.Sizeof(newestSlot{}))

// newestEntry is a decoded version value: 48 bytes, against values of up
// to 30. It keeps a pointer's epoch and prev as well as its slot, so that
// a write can take the value it replaces from here (writer.readCurrent).
type newestEntry struct {
	gen            uint64 // the version's generation
	linEpoch       uint64 // the lineage's cacheEpoch when it was read
	seg, slot, crc uint32
	epoch          uint32  // the sync epoch of the pointer's write
	prev           pointer // the pointer's fallback, if prevKind says so
	kind           uint8   // newestPointer, newestHole or newestZero
	valueLen       uint8   // the stored value's length, for IOStats
	prevKind       uint8
}

const (
	newestPointer uint8 = iota
	newestHole
	newestZero
)

const newestShardCount = 256

// newestMaxRun is the largest read (in blocks) the cache serves: larger
// ones step through pebble's sorted keys with Next, which costs little per
// block, and would only churn the cache.
const newestMaxRun = 16

// newestForgetMax is the largest change dropped block by block; a larger
// one drops its whole lineage instead.
const newestForgetMax = 4096

// newNewestCache returns a cache of entries blocks, rounded down to a
// power of two (at least two per shard), or nil for none.
func newNewestCache(entries int) *newestCache {
	if entries <= 0 {
		return nil
	}
	sets := 1 // per shard
	for sets*2*2*newestShardCount <= entries {
		sets *= 2
	}
	// One allocation without pointers: the collector need not scan it, and
	// its pages are only touched as entries arrive.
	all := make([]newestSlot, sets*2*newestShardCount)
	epochs := make([]atomic.Uint32, sets*newestShardCount)
	c := &newestCache{shards: make([]newestShard, newestShardCount)}
	for i := range c.shards {
		c.shards[i].slots = all[i*sets*2 : (i+1)*sets*2 : (i+1)*sets*2]
		c.shards[i].epochs = epochs[i*sets : (i+1)*sets : (i+1)*sets]
		c.shards[i].mask = uint64(sets - 1)
	}
	return c
}

// hash mixes a block's lineage and number: the top byte picks the shard,
// the low bits the set.
func hash(lin, blk uint64) uint64 {
	return (blk ^ lin*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
}

func (c *newestCache) shard(lin, blk uint64) *newestShard {
	// Neighbouring blocks go to different shards; lineages are mixed in so
	// two disks' block 0 do not share one.
	return &c.shards[hash(lin, blk)>>56]
}

// epochOf is the epoch of k's set.
func (sh *newestShard) epochOf(k blockRef) *atomic.Uint32 {
	return &sh.epochs[hash(k.lin, k.blk)&sh.mask]
}

// set returns k's set of two. REQUIRES: sh.mu held.
func (sh *newestShard) set(k blockRef) []newestSlot {
	i := (hash(k.lin, k.blk) & sh.mask) * 2
	return sh.slots[i : i+2 : i+2]
}

// get returns k's entry. REQUIRES: sh.mu held.
func (sh *newestShard) get(k blockRef) (newestEntry, bool) {
	for _, s := range sh.set(k) {
		if s.k == k {
			return s.e, true
		}
	}
	return newestEntry{}, false
}

// put adds or replaces k's entry; a new one displaces the older of its
// set. REQUIRES: sh.mu held.
func (sh *newestShard) put(k blockRef, e newestEntry) {
	if k.lin == 0 { // never: lineages count from 1, and 0 marks a free slot
		return
	}
	set := sh.set(k)
	if set[1].k == k {
		set[1] = set[0]
	}
	if set[0].k != k {
		set[1] = set[0]
	}
	set[0] = newestSlot{k, e}
}

// del drops k's entry. REQUIRES: sh.mu held.
func (sh *newestShard) del(k blockRef) {
	set := sh.set(k)
	switch k {
	case set[0].k:
		set[0] = set[1]
		set[1] = newestSlot{}
	case set[1].k:
		set[1] = newestSlot{}
	}
}

// lookup returns blk's newest version in lin if the cache holds it and it
// is at or below gen, the generation the reading layer sees.
func (c *newestCache) lookup(lin *lineage, gen, blk uint64) (newestEntry, bool) {
	sh := c.shard(lin.rec.ID, blk)
	sh.mu.Lock()
	e, ok := sh.get(blockRef{lin.rec.ID, blk})
	sh.mu.Unlock()
	if !ok || e.gen > gen || e.linEpoch != lin.cacheEpoch.Load() {
		return newestEntry{}, false
	}
	return e, true
}

// value encodes e as a version value into buf. A pointer carries only its
// current slot: reads need nothing else of it.
func (e *newestEntry) value(buf []byte) []byte {
	return e.encode(buf, segValue{cur: e.cur(), prevKind: prevNone})
}

// held is what the version's key holds in pebble, prev and epoch
// included, as the write planner reads it (heldOf of the stored value,
// without encoding it first).
func (e *newestEntry) held() held {
	switch e.kind {
	case newestHole:
		return held{kind: heldHole}
	case newestZero:
		return held{kind: heldZero}
	}
	return held{kind: heldSlot, slot: segValue{cur: e.cur(), epoch: e.epoch, prevKind: e.prevKind, prev: e.prev}}
}

func (e *newestEntry) cur() pointer { return pointer{seg: e.seg, slot: e.slot, crc: e.crc} }

// encode is e's marker, or v for a pointer.
func (e *newestEntry) encode(buf []byte, v segValue) []byte {
	switch e.kind {
	case newestHole:
		return valueHole
	case newestZero:
		return valueZero
	}
	return v.append(buf[:0])
}

// newestWatch is what a read notes before it opens its pebble iterator,
// and a write before it commits.
type newestWatch struct {
	linEpoch uint64
	first    uint64
	epochs   [newestMaxRun]uint32 // of blocks first, first+1, ...
	more     []uint32             // of the blocks past those (large writes)
}

// watch notes the epochs of blocks [first, last] (last-first <
// newestForgetMax).
func (c *newestCache) watch(lin *lineage, first, last uint64) newestWatch {
	w := newestWatch{linEpoch: lin.cacheEpoch.Load(), first: first}
	if n := last - first + 1; n > newestMaxRun {
		w.more = make([]uint32, n-newestMaxRun)
	}
	for blk := first; blk <= last; blk++ {
		k := blockRef{lin.rec.ID, blk}
		e := c.shard(k.lin, blk).epochOf(k).Load()
		if i := blk - first; i < newestMaxRun {
			w.epochs[i] = e
		} else {
			w.more[i-newestMaxRun] = e
		}
	}
	return w
}

// epoch is what w noted for block first+i.
func (w *newestWatch) epoch(i uint64) uint32 {
	if i < newestMaxRun {
		return w.epochs[i]
	}
	return w.more[i-newestMaxRun]
}

// entryOf decodes a version value for the cache; inline 4 KiB values are
// not kept.
func entryOf(gen uint64, val []byte) (newestEntry, bool) {
	e := newestEntry{gen: gen, valueLen: uint8(len(val))}
	switch {
	case len(val) == 0:
		e.kind = newestHole
	case len(val) == 1 && val[0] == valueZero[0]:
		e.kind = newestZero
	case isPointer(val):
		v := decodeSegValue(val)
		e.kind, e.seg, e.slot, e.crc = newestPointer, v.cur.seg, v.cur.slot, v.cur.crc
		e.epoch, e.prevKind, e.prev = v.epoch, v.prevKind, v.prev
	default:
		return newestEntry{}, false
	}
	return e, true
}

// remember adds what a read found for blk, the newest version of it in lin
// at generation gen, unless something changed since w was noted.
func (c *newestCache) remember(lin *lineage, w *newestWatch, blk, gen uint64, val []byte) {
	e, ok := entryOf(gen, val)
	if !ok {
		return
	}
	e.linEpoch = w.linEpoch
	k := blockRef{lin.rec.ID, blk}
	sh := c.shard(k.lin, blk)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.epochOf(k).Load() != w.epoch(blk-w.first) || lin.cacheEpoch.Load() != w.linEpoch {
		return
	}
	sh.put(k, e)
}

// testHookBeforeSettle, if set, runs between a write's commit and its
// settle (tests shuffle the two writers' order with it).
var testHookBeforeSettle func()

// newestWrite is what a write will have stored, noted as it is batched,
// for the cache once it commits.
type newestWrite struct {
	entries [newestMaxRun]newestEntry
	set     uint32 // bit i: entries[i] holds block first+i's new version
	// The blocks past those, for a write of more than newestMaxRun.
	more    []newestEntry
	moreSet []bool
}

// grow makes room for a write of n blocks.
func (nw *newestWrite) grow(n uint64) {
	if n > newestMaxRun {
		nw.more = make([]newestEntry, n-newestMaxRun)
		nw.moreSet = make([]bool, n-newestMaxRun)
	}
}

func (nw *newestWrite) note(first, blk uint64, e newestEntry, ok bool) {
	i := blk - first
	if i >= newestMaxRun {
		if j := i - newestMaxRun; j < uint64(len(nw.more)) {
			nw.more[j], nw.moreSet[j] = e, ok
		}
		return
	}
	bit := uint32(1) << i
	if ok {
		nw.entries[i] = e
		nw.set |= bit
	} else {
		nw.set &^= bit
	}
}

// entry returns what block first+i will hold, if noted.
func (nw *newestWrite) entry(i uint64) (newestEntry, bool) {
	if i < newestMaxRun {
		return nw.entries[i], nw.set&(1<<i) != 0
	}
	j := i - newestMaxRun
	if j >= uint64(len(nw.more)) {
		return newestEntry{}, false
	}
	return nw.more[j], nw.moreSet[j]
}

// settle is forget for a write of blocks [first, last] (fewer than
// newestForgetMax) that noted w before committing: where it committed and no
// other change to the shard or lineage was dropped since w, the block's
// entry becomes what the write stored. Another write of the block that
// committed after this one drops its entry after this runs, or made the
// epoch move before; one that committed before this one's w was noted is
// older.
func (c *newestCache) settle(lin *lineage, w *newestWatch, first, last uint64, nw *newestWrite, committed bool) {
	for blk := first; blk <= last; blk++ {
		i := blk - first
		k := blockRef{lin.rec.ID, blk}
		sh := c.shard(k.lin, blk)
		sh.mu.Lock()
		ep := sh.epochOf(k)
		if e, ok := nw.entry(i); committed && ok && ep.Load() == w.epoch(i) && lin.cacheEpoch.Load() == w.linEpoch {
			e.linEpoch = w.linEpoch
			sh.put(k, e)
		} else {
			sh.del(k)
		}
		ep.Add(1)
		sh.mu.Unlock()
	}
}

// forget drops blocks [first, last] of lin. Call it after the change to
// them committed (or failed) and before the change returns.
func (c *newestCache) forget(lin *lineage, first, last uint64) {
	if c == nil {
		return
	}
	if last-first >= newestForgetMax {
		c.forgetLineage(lin)
		return
	}
	for blk := first; blk <= last; blk++ {
		c.forgetBlock(lin.rec.ID, blk)
	}
}

// forgetBlock drops block blk of lineage lin.
func (c *newestCache) forgetBlock(lin, blk uint64) {
	if c == nil {
		return
	}
	k := blockRef{lin, blk}
	sh := c.shard(lin, blk)
	sh.mu.Lock()
	sh.del(k)
	sh.epochOf(k).Add(1)
	sh.mu.Unlock()
}

// forgetLineage drops every entry of lin: they stay in memory until
// evicted, but no lookup accepts them.
func (c *newestCache) forgetLineage(lin *lineage) {
	if c == nil {
		return
	}
	lin.cacheEpoch.Add(1)
}

// len counts entries, stale ones included (tests).
func (c *newestCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, s := range sh.slots {
			if s.k.lin != 0 {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
