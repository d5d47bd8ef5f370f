package blockstore

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Tiles are the extent-granular form of data versions that
// docs/design-extents.md chose: for each lineage, block ranges that never
// overlap, each with the stack of versions covering all of it. This file
// holds the planner of a write over tiles, pure and scripted in
// testdata/tiles; the store does not read or write tiles yet (the design
// note's order of work).

// chunkBlocks bounds a tile: tiles never cross a 2 MiB boundary, which
// bounds a value and names the lock a writer takes.
const chunkBlocks = 512

type tileKind uint8

const (
	tileData tileKind = iota // 4 KiB blocks in consecutive slots of one segment
	tileZero                 // zeroed, allocated
	tileHole                 // discarded
	tileDrop                 // a write only: every version of the blocks goes (a private lineage's trim)
)

// tileVersion is one version of every block of its tile.
type tileVersion struct {
	gen  uint64
	kind tileKind
	// shadow: the value the version above replaced at the same
	// generation, kept while that version's slots may not be durable: what
	// recovery falls back to after a power cut (the per-block prev of
	// today's pointers). Reads skip it.
	shadow bool
	// Data: block first+i of the tile is in slot slot+i of seg, written
	// at epoch, with CRC-32C crcs[i].
	seg, slot, epoch uint32
	crcs             []uint32
}

// tile is blocks [first, last] of a lineage and their versions, newest
// first, a shadow right below the version it backs.
type tile struct {
	first, last uint64
	vs          []tileVersion
}

// slice is v's share of n blocks from the off-th block it covers.
func (v tileVersion) slice(off, n uint64) tileVersion {
	if v.kind == tileData {
		v.slot += uint32(off)
		v.crcs = v.crcs[off : off+n : off+n]
	}
	return v
}

// continues reports whether w, covering the blocks right after the n that
// v covers, is the same version: the two can be one tile.
func (v tileVersion) continues(w tileVersion, n uint64) bool {
	if v.gen != w.gen || v.kind != w.kind || v.shadow != w.shadow {
		return false
	}
	return v.kind != tileData || v.seg == w.seg && v.epoch == w.epoch && uint64(w.slot) == uint64(v.slot)+n
}

// tileWrite is one run of a write: blocks [first, first+n) become data
// in consecutive slots from (seg, slot), written at epoch, or a marker,
// or lose every version (tileDrop).
type tileWrite struct {
	first, n         uint64
	kind             tileKind
	seg, slot, epoch uint32
	crcs             []uint32
}

func (w tileWrite) version(gen uint64) tileVersion {
	return tileVersion{gen: gen, kind: w.kind, seg: w.seg, slot: w.slot, epoch: w.epoch, crcs: w.crcs}
}

// tileRun is a reverse record: slots [slot, slot+n) of seg hold blocks
// [first, first+n) of the lineage at gen.
type tileRun struct {
	seg, slot uint32
	first, n  uint64
	gen       uint64
}

// tilePlan is what a write does to the tiles: delete the keys of tiles
// named by their last block, set tiles, add reverse records, and sync the
// segments first when a shadow must be a value not yet durable.
type tilePlan struct {
	deletes   []uint64
	sets      []tile
	reverse   []tileRun
	syncFirst bool
}

// planTiles plans a write at generation gen. writes are its runs, in
// order, not overlapping; now holds, in order, every tile that overlaps
// the span of the writes, and the tiles right before and after those
// when they touch them (the neighbours a new tile may join).
//
//   - Tiles are cut at the writes' edges and at chunk boundaries, so every
//     version still covers its whole tile.
//   - Each written piece gets the new version on top. If the top was
//     already at gen, the new one replaces it and keeps a shadow: the
//     replaced value if it is durable (a marker always is, a slot once
//     synced), else the shadow it had. If that shadow is in a segment
//     being reclaimed, the segments are synced first and the replaced
//     value becomes the shadow, as planVersions does for prev.
//   - A new marker keeps no shadow: it commits atomically with its key.
//   - Shadows whose version above is durable are dropped from the tiles
//     the write overlaps: nothing can need them any more.
//   - A drop removes the written pieces altogether.
//   - Neighbouring pieces in one chunk whose stacks continue each other
//     become one tile.
func planTiles(gen uint64, writes []tileWrite, now []tile, segs slotState) tilePlan {
	var p tilePlan
	if len(writes) == 0 {
		return p
	}
	// Cut points: every edge of a tile or a write, every chunk boundary
	// between the first and last.
	wlo, whi := writes[0].first, writes[len(writes)-1].first+writes[len(writes)-1].n
	lo, hi := wlo, whi
	if len(now) > 0 {
		lo, hi = min(lo, now[0].first), max(hi, now[len(now)-1].last+1)
	}
	var buf [8]uint64 // a small write's cuts
	cuts := append(buf[:0], lo, hi)
	for _, t := range now {
		cuts = append(cuts, t.first, t.last+1)
	}
	for _, w := range writes {
		cuts = append(cuts, w.first, w.first+w.n)
	}
	for c := (lo/chunkBlocks + 1) * chunkBlocks; c < hi; c += chunkBlocks {
		cuts = append(cuts, c)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)

	var pieces []tile
	ti, wi := 0, 0
	for i := 0; i+1 < len(cuts); i++ {
		x, y := cuts[i], cuts[i+1]
		for ti < len(now) && now[ti].last < x {
			ti++
		}
		for wi < len(writes) && writes[wi].first+writes[wi].n <= x {
			wi++
		}
		var old *tile
		if ti < len(now) && now[ti].first <= x {
			old = &now[ti]
		}
		var w *tileWrite
		if wi < len(writes) && writes[wi].first <= x {
			w = &writes[wi]
		}
		switch {
		case w == nil && old == nil: // a gap nobody writes
			continue
		case w == nil:
			rest := sliceTile(old, x, y)
			if old.last >= wlo && old.first < whi {
				// What a write cut off a tile: the same, but for settled
				// shadows. (A neighbour stays as it is: were it to change,
				// its own neighbour might then continue it unseen.)
				rest.vs = dropSettledShadows(rest.vs, segs)
			}
			pieces = append(pieces, rest)
			continue
		case w.kind == tileDrop:
			continue
		}
		piece := tile{first: x, last: y - 1}
		piece.vs = append(piece.vs, w.version(gen).slice(x-w.first, y-x))
		if old != nil {
			rest := sliceTile(old, x, y).vs
			if len(rest) > 0 && rest[0].gen == gen {
				replaced := rest[0]
				var backing *tileVersion
				rest = rest[1:]
				if len(rest) > 0 && rest[0].shadow {
					backing = &rest[0]
					rest = rest[1:]
				}
				// A marker commits with its key: it never needs a shadow.
				if w.kind == tileData {
					if sh, ok := shadowOf(replaced, backing, segs, &p.syncFirst); ok {
						piece.vs = append(piece.vs, sh)
					}
				}
			}
			piece.vs = append(piece.vs, dropSettledShadows(rest, segs)...)
		}
		pieces = append(pieces, piece)
	}
	pieces = mergeTiles(pieces)

	p.deletes, p.sets = diffTiles(now, pieces)
	for _, w := range writes {
		if w.kind == tileData {
			p.reverse = append(p.reverse, tileRun{seg: w.seg, slot: w.slot, first: w.first, n: w.n, gen: gen})
		}
	}
	return p
}

// diffTiles is what turns tiles now into tiles next in pebble, both in
// block order: a tile is keyed by its last block, so one of next that
// ends where one of now ended overwrites it (or is that tile, unchanged);
// the other tiles of now go.
func diffTiles(now, next []tile) (deletes []uint64, sets []tile) {
	j := 0
	for _, t := range next {
		for ; j < len(now) && now[j].last < t.last; j++ {
			deletes = append(deletes, now[j].last)
		}
		if j < len(now) && now[j].last == t.last {
			j++
			if sharesVersions(now[j-1], t) || sameTile(now[j-1], t) {
				continue
			}
		}
		sets = append(sets, t)
	}
	for ; j < len(now); j++ {
		deletes = append(deletes, now[j].last)
	}
	return deletes, sets
}

// shadowOf is the shadow a version replacing v at its own generation
// keeps (keepsReplaced, as for pointers' prev); ok is false when it needs
// none: v's own shadow was none and v is not durable yet.
func shadowOf(v tileVersion, backing *tileVersion, segs slotState, syncFirst *bool) (tileVersion, bool) {
	durable := v.kind != tileData || segs.durable(pointer{seg: v.seg, slot: v.slot}, v.epoch)
	carriedRetiring := backing != nil && backing.kind == tileData && segs.isRetiring(backing.seg)
	switch {
	case keepsReplaced(durable, carriedRetiring, syncFirst):
		v.shadow = true
		return v, true
	case backing != nil:
		return *backing, true
	}
	return tileVersion{}, false
}

// dropSettledShadows returns vs without the shadows whose version above
// is durable.
// It returns vs itself when there are none.
func dropSettledShadows(vs []tileVersion, segs slotState) []tileVersion {
	settled := func(i int) bool {
		return vs[i].shadow && i > 0 && (vs[i-1].kind != tileData || segs.durable(pointer{seg: vs[i-1].seg, slot: vs[i-1].slot}, vs[i-1].epoch))
	}
	i := 0
	for i < len(vs) && !settled(i) {
		i++
	}
	if i == len(vs) {
		return vs
	}
	out := slices.Clone(vs[:i:i])
	for ; i < len(vs); i++ {
		if !settled(i) {
			out = append(out, vs[i])
		}
	}
	return out
}

// sliceTile is t's blocks [x, y) (within t); all of t is t itself,
// sharing its versions.
func sliceTile(t *tile, x, y uint64) tile {
	if x == t.first && y == t.last+1 {
		return *t
	}
	out := tile{first: x, last: y - 1, vs: make([]tileVersion, len(t.vs))}
	for i, v := range t.vs {
		out.vs[i] = v.slice(x-t.first, y-x)
	}
	return out
}

// mergeTiles joins neighbouring tiles of one chunk whose stacks continue
// each other. It changes no tile's versions in place: they may be shared
// with the tiles planTiles was given.
func mergeTiles(ts []tile) []tile {
	out := ts[:0] // never past the tile being read
	for _, t := range ts {
		if n := len(out); n > 0 {
			prev := &out[n-1]
			if prev.last+1 == t.first && prev.first/chunkBlocks == t.first/chunkBlocks && stacksContinue(prev, &t) {
				prev.vs = slices.Clone(prev.vs)
				for i := range prev.vs {
					if prev.vs[i].kind == tileData {
						prev.vs[i].crcs = append(slices.Clip(prev.vs[i].crcs), t.vs[i].crcs...)
					}
				}
				prev.last = t.last
				continue
			}
		}
		out = append(out, t)
	}
	return out
}

func stacksContinue(a, b *tile) bool {
	if len(a.vs) != len(b.vs) {
		return false
	}
	n := a.last - a.first + 1
	for i := range a.vs {
		if !a.vs[i].continues(b.vs[i], n) {
			return false
		}
	}
	return true
}

// sharesVersions reports whether b is a, passed through as it was.
func sharesVersions(a, b tile) bool {
	return a.first == b.first && a.last == b.last && len(a.vs) == len(b.vs) && len(a.vs) > 0 && &a.vs[0] == &b.vs[0]
}

func sameTile(a, b tile) bool {
	return a.first == b.first && a.last == b.last && slices.EqualFunc(a.vs, b.vs, func(v, w tileVersion) bool {
		return v.gen == w.gen && v.kind == w.kind && v.shadow == w.shadow &&
			v.seg == w.seg && v.slot == w.slot && v.epoch == w.epoch && slices.Equal(v.crcs, w.crcs)
	})
}

// bytes is what t's versions account for in space figures, as a key per
// block would (versionBytes): a block for data, a byte per zero marker.
// Shadows do not, as the prev inside a pointer does not.
func (t *tile) bytes() uint64 {
	var n uint64
	for _, v := range t.vs {
		switch {
		case v.shadow:
		case v.kind == tileData:
			n += (t.last - t.first + 1) * BlockSize
		case v.kind == tileZero:
			n += t.last - t.first + 1
		}
	}
	return n
}

// readTile returns the version of t a read at generation g sees, if any.
func readTile(t *tile, g uint64) (tileVersion, bool) {
	for _, v := range t.vs {
		if !v.shadow && v.gen <= g {
			return v, true
		}
	}
	return tileVersion{}, false
}

// The stored form of a tile (the key names its last block, so that one
// SeekGE from any block lands on the tile that holds it):
//
//	key:   't' lineage(8) last(8)
//	value: first(8), then each version, newest first:
//	       gen(8) flags(1) [seg(4) slot(4) epoch(4) crc(4) x blocks]   flags: kind | shadow<<7
const (
	tagTile     = 't'
	tileKeyLen  = 17
	tileShadow  = 0x80
	tileDataLen = 12 // seg, slot, epoch; then a CRC per block
)

func tileKey(dst []byte, lin, last uint64) []byte {
	dst = append(dst[:0], tagTile)
	dst = binary.BigEndian.AppendUint64(dst, lin)
	return binary.BigEndian.AppendUint64(dst, last)
}

// appendTile encodes t's value.
func appendTile(dst []byte, t *tile) []byte {
	dst = binary.BigEndian.AppendUint64(dst, t.first)
	for _, v := range t.vs {
		dst = binary.BigEndian.AppendUint64(dst, v.gen)
		flags := byte(v.kind)
		if v.shadow {
			flags |= tileShadow
		}
		dst = append(dst, flags)
		if v.kind == tileData {
			dst = binary.BigEndian.AppendUint32(dst, v.seg)
			dst = binary.BigEndian.AppendUint32(dst, v.slot)
			dst = binary.BigEndian.AppendUint32(dst, v.epoch)
			for _, c := range v.crcs {
				dst = binary.BigEndian.AppendUint32(dst, c)
			}
		}
	}
	return dst
}

// decodeTile reads a tile of lineage lin from its key and value, and
// refuses anything appendTile would not have written from a tile the
// planner can make: blocks outside one chunk, no versions, generations
// not descending, a shadow not right below a version of its generation,
// data slots past the end of a segment id space, bytes left over.
func decodeTile(lin uint64, key, val []byte) (tile, error) {
	bad := func(why string) (tile, error) {
		return tile{}, fmt.Errorf("%w: tile %x: %s", ErrCorrupt, key, why)
	}
	if len(key) != tileKeyLen || key[0] != tagTile || binary.BigEndian.Uint64(key[1:]) != lin {
		return bad("not a tile key of this lineage")
	}
	if len(val) < 8 {
		return bad("value too short")
	}
	t := tile{first: binary.BigEndian.Uint64(val), last: binary.BigEndian.Uint64(key[9:])}
	if t.first > t.last || t.first/chunkBlocks != t.last/chunkBlocks {
		return bad(fmt.Sprintf("blocks %d-%d are not in one chunk", t.first, t.last))
	}
	n := t.last - t.first + 1
	rest := val[8:]
	for len(rest) > 0 {
		if len(rest) < 9 {
			return bad("a version cut short")
		}
		v := tileVersion{gen: binary.BigEndian.Uint64(rest), kind: tileKind(rest[8] &^ tileShadow), shadow: rest[8]&tileShadow != 0}
		rest = rest[9:]
		if v.kind > tileHole {
			return bad(fmt.Sprintf("version kind %d", v.kind))
		}
		if k := len(t.vs); v.shadow && (k == 0 || t.vs[k-1].shadow || t.vs[k-1].gen != v.gen) ||
			!v.shadow && k > 0 && v.gen >= t.vs[k-1].gen {
			return bad("versions out of order")
		}
		if v.kind == tileData {
			if uint64(len(rest)) < tileDataLen+4*n {
				return bad("data version cut short")
			}
			v.seg, v.slot, v.epoch = binary.BigEndian.Uint32(rest), binary.BigEndian.Uint32(rest[4:]), binary.BigEndian.Uint32(rest[8:])
			if uint64(v.slot)+n > 1<<32 {
				return bad("slots past the end of a segment")
			}
			v.crcs = make([]uint32, n)
			for i := range v.crcs {
				v.crcs[i] = binary.BigEndian.Uint32(rest[tileDataLen+4*i:])
			}
			rest = rest[tileDataLen+4*n:]
		}
		t.vs = append(t.vs, v)
	}
	if len(t.vs) == 0 {
		return bad("no versions")
	}
	return t, nil
}
