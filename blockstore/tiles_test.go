package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// slotCRC is the CRC the tests give slot (seg, slot): slicing a version
// must keep each block's CRC with its slot.
func slotCRC(seg, slot uint32) uint32 { return seg<<20 ^ slot*2654435761 }

// TestTilePlans runs testdata/tiles:
//
//	tiles gen=<g> [synced=<epoch>] [retiring=<seg>,...]
//	tile <first>-<last>: <version>, <version>, ...
//	write <first>-<last> data <seg>:<slot>/<epoch> | zero | hole | drop
//
// where a version is <gen>[s] data <seg>:<slot>/<epoch>, <gen>[s] zero or
// <gen>[s] hole (s: a shadow). It prints the plan: deleted keys (a tile's
// last block), tiles set, reverse records, and whether to sync first.
func TestTilePlans(t *testing.T) {
	datadriven.RunTest(t, "testdata/tiles", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "tiles" {
			return "unknown command " + d.Cmd
		}
		gen, segs := scanPlanArgs(t, d)
		var now []tile
		var writes []tileWrite
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			cmd, rest, _ := strings.Cut(line, " ")
			switch cmd {
			case "tile":
				rng, vs, ok := strings.Cut(rest, ": ")
				if !ok {
					t.Fatalf("%q: want tile <first>-<last>: <versions>", line)
				}
				first, last := scanRange(t, rng)
				tl := tile{first: first, last: last}
				for _, v := range strings.Split(vs, ", ") {
					tl.vs = append(tl.vs, scanTileVersion(t, v, last-first+1))
				}
				now = append(now, tl)
			case "write":
				f := strings.Fields(rest)
				first, last := scanRange(t, f[0])
				v := scanTileVersion(t, "0 "+strings.Join(f[1:], " "), last-first+1)
				writes = append(writes, tileWrite{first: first, n: last - first + 1, kind: v.kind, seg: v.seg, slot: v.slot, epoch: v.epoch, crcs: v.crcs})
			default:
				t.Fatalf("unknown line %q", line)
			}
		}
		p := planTiles(gen, writes, now, segs)
		var out strings.Builder
		for _, last := range p.deletes {
			fmt.Fprintf(&out, "delete %d\n", last)
		}
		for _, tl := range p.sets {
			fmt.Fprintf(&out, "set %s\n", describeTile(t, tl))
		}
		for _, r := range p.reverse {
			fmt.Fprintf(&out, "reverse %d:%d = blocks %d+%d@%d\n", r.seg, r.slot, r.first, r.n, r.gen)
		}
		if p.syncFirst {
			out.WriteString("sync the segments first\n")
		}
		return out.String()
	})
}

func scanRange(t *testing.T, s string) (uint64, uint64) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		t.Fatalf("range %q: want <first>-<last>", s)
	}
	return uint64(atoi(t, a)), uint64(atoi(t, b))
}

func scanTileVersion(t *testing.T, s string, n uint64) tileVersion {
	f := strings.Fields(s)
	if len(f) < 2 {
		t.Fatalf("version %q", s)
	}
	var v tileVersion
	g, shadow := strings.CutSuffix(f[0], "s")
	gen, err := strconv.ParseUint(g, 10, 64)
	if err != nil {
		t.Fatalf("version %q: %v", s, err)
	}
	v.gen, v.shadow = gen, shadow
	switch f[1] {
	case "zero":
		v.kind = tileZero
	case "hole":
		v.kind = tileHole
	case "drop":
		v.kind = tileDrop
	case "data":
		if len(f) != 3 {
			t.Fatalf("version %q: want data <seg>:<slot>/<epoch>", s)
		}
		p, epoch := scanSlot(t, f[2])
		v.kind, v.seg, v.slot, v.epoch = tileData, p.seg, p.slot, epoch
		for i := range uint32(n) {
			v.crcs = append(v.crcs, slotCRC(p.seg, p.slot+i))
		}
	default:
		t.Fatalf("version %q: unknown kind", s)
	}
	return v
}

// describeTile spells a tile out, checking that each data version has a
// CRC per block, each its slot's.
func describeTile(t *testing.T, tl tile) string {
	var vs []string
	for _, v := range tl.vs {
		s := strconv.FormatUint(v.gen, 10)
		if v.shadow {
			s += "s"
		}
		switch v.kind {
		case tileData:
			checkCRCs(t, tl, v)
			s += fmt.Sprintf(" data %d:%d/%d", v.seg, v.slot, v.epoch)
		case tileZero:
			s += " zero"
		case tileHole:
			s += " hole"
		default:
			t.Fatalf("tile %d-%d: a version of kind %d", tl.first, tl.last, v.kind)
		}
		vs = append(vs, s)
	}
	return fmt.Sprintf("%d-%d: %s", tl.first, tl.last, strings.Join(vs, ", "))
}

func checkCRCs(t *testing.T, tl tile, v tileVersion) {
	t.Helper()
	if uint64(len(v.crcs)) != tl.last-tl.first+1 {
		t.Fatalf("tile %d-%d: version %d has %d CRCs", tl.first, tl.last, v.gen, len(v.crcs))
	}
	for i, c := range v.crcs {
		if c != slotCRC(v.seg, v.slot+uint32(i)) {
			t.Fatalf("tile %d-%d: block %d's CRC is not its slot's", tl.first, tl.last, tl.first+uint64(i))
		}
	}
}

// blockVersion is a version of one block in the per-block model of
// TestTilesModel: what today's keys hold.
type blockVersion struct {
	gen  uint64
	kind tileKind
	at   pointer
	sv   segValue // data: cur, epoch, prev as planVersions would write them
}

// TestTilesModel applies random writes, snapshots and syncs to tiles
// through planTiles and to a per-block model through prevOf, the rules of
// today's pointers, and checks after each step that:
//   - tiles are in order, apart, inside one chunk, no stack empty, every
//     data version carries its slots' CRCs, and no two neighbours in a
//     chunk could be one tile;
//   - every block reads the same version at every generation as the model;
//   - where the head's version of a block is data not yet durable, the
//     tile's shadow is what the block's prev would be, and both planners
//     agree on syncing first.
func TestTilesModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 21} {
		steps := 3000
		if testing.Short() {
			steps = 800
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runTilesModel(t, seed, steps, nil) })
	}
}

// TestTileIndexModel runs TestTilesModel's steps with the tiles in pebble
// as well: after each step pebble holds exactly the tiles of the model's
// list, readTilesNear gives the planner what the list would, and
// visitTiles reads what readTile reads from the list.
func TestTileIndexModel(t *testing.T) {
	for _, seed := range []uint64{4, 5} {
		steps := 1500
		if testing.Short() {
			steps = 500
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quietLogger{}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			runTilesModel(t, seed, steps, db)
		})
	}
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// runTilesModel runs seeded random steps; with db, the tiles are kept in
// pebble too and checked against the list.
func runTilesModel(t *testing.T, seed uint64, steps int, db *pebble.DB) {
	const disk = 4 * chunkBlocks
	rng := rand.New(rand.NewPCG(seed, 0))
	var tiles []tile
	model := map[uint64][]blockVersion{} // newest first
	gen := uint64(1)
	segs := fakeSlots{retiring: map[uint32]bool{}}
	// epoch counts syncs, as the segments' does: a slot written at an
	// epoch below synced is durable. Writes take slots from four lanes,
	// so slots follow on across writes as well as within one.
	epoch, lastEnd := uint32(0), uint64(0)
	ls := &lanes{next: 4}
	chunks := map[uint64]*chunkTiles{} // each chunk's cache, kept by its plans
	for ch := range uint64(disk / chunkBlocks) {
		chunks[ch] = &chunkTiles{ch: ch}
	}
	for i := range ls.seg {
		ls.seg[i] = uint32(i)
	}
	for step := range steps {
		what := ""
		switch r := rng.IntN(100); {
		case r < 5:
			gen++
			epoch++
			segs.synced = epoch // a snapshot syncs the segments
			what = "snapshot"
		case r < 12:
			epoch++
			segs.synced = epoch
			what = "sync"
		case r < 15:
			seg := uint32(rng.IntN(int(ls.next)))
			segs.retiring[seg] = !segs.retiring[seg]
			what = fmt.Sprintf("retiring %d %v", seg, segs.retiring[seg])
		default:
			first := uint64(rng.IntN(disk))
			if rng.IntN(3) == 0 && lastEnd < disk {
				first = lastEnd // a stream: slots and blocks follow on
			}
			n := min(uint64(1+rng.IntN(600)), disk-first)
			if rng.IntN(2) == 0 {
				n = min(uint64(1+rng.IntN(8)), disk-first)
			}
			writes := randomRuns(rng, first, n, epoch, ls)
			lastEnd = first + n
			what = fmt.Sprintf("write %d+%d in %d runs", first, n, len(writes))
			near := tilesNear(tiles, first, first+n)
			if db != nil {
				got, err := readTilesNear(db, scriptLineage, first, first+n)
				if err != nil || !slices.EqualFunc(got, near, sameTile) {
					t.Fatalf("step %d: readTilesNear(%d, %d) = %d tiles (%v), the list's %d\n%v\n%v", step, first, first+n, len(got), err, len(near), got, near)
				}
			}
			p := planTiles(gen, writes, near, segs)
			if wide := planTiles(gen, writes, tilesAround(tiles, first, first+n), segs); !samePlan(p, wide) {
				t.Fatalf("step %d (%s): the plan from the tiles near differs from the plan from every tile around", step, what)
			}
			sync := applyToModel(model, gen, writes, segs)
			if sync != p.syncFirst {
				t.Fatalf("step %d (%s): tiles say sync first %v, the per-block rules %v", step, what, p.syncFirst, sync)
			}
			tiles = applyTilePlan(t, tiles, p)
			checkChunkTiles(t, step, chunks, tiles, p, rng)
			if db != nil {
				b := db.NewBatch()
				p.addTo(b, scriptLineage)
				if err := b.Commit(pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				checkTileIndex(t, step, db, tiles, gen, rng)
			}
			if p.syncFirst {
				epoch++
				segs.synced = epoch
			}
		}
		// Every generation's reads now and then, the head's and one other
		// at every step.
		gens := []uint64{gen, 1 + rng.Uint64N(gen)}
		if step%200 == 0 || step == steps-1 {
			gens = gens[:0]
			for g := uint64(1); g <= gen; g++ {
				gens = append(gens, g)
			}
		}
		checkTiles(t, step, what, tiles, model, gens, segs)
	}
}

// checkChunkTiles applies plan p to the chunks' caches and checks that
// each holds the list's tiles of its chunk, and that near picks from a
// chunk what tilesNear picks from the list, but for tiles of other chunks.
func checkChunkTiles(t *testing.T, step int, chunks map[uint64]*chunkTiles, tiles []tile, p tilePlan, rng *rand.Rand) {
	t.Helper()
	for ch, c := range chunks {
		c.apply(&p)
		want := slices.DeleteFunc(slices.Clone(tiles), func(tl tile) bool { return tl.first/chunkBlocks != ch })
		if !slices.EqualFunc(c.tiles, want, sameTile) {
			t.Fatalf("step %d: chunk %d holds %d tiles, the list %d there, or they differ", step, ch, len(c.tiles), len(want))
		}
		lo := ch*chunkBlocks + rng.Uint64N(chunkBlocks)
		hi := lo + 1 + rng.Uint64N(min(16, (ch+1)*chunkBlocks-lo))
		if rng.IntN(4) == 0 {
			hi = lo + 1 + rng.Uint64N((ch+1)*chunkBlocks-lo)
		}
		want = slices.DeleteFunc(slices.Clone(tilesNear(tiles, lo, hi)), func(tl tile) bool { return tl.first/chunkBlocks != ch })
		if got := c.near(lo, hi); !slices.EqualFunc(got, want, sameTile) {
			t.Fatalf("step %d: chunk %d near [%d,%d) gives %d tiles, the list %d", step, ch, lo, hi, len(got), len(want))
		}
	}
}

// checkTileIndex compares pebble's tiles with the list, and visitTiles
// over a random range at a random generation with readTile on the list.
func checkTileIndex(t *testing.T, step int, db *pebble.DB, tiles []tile, gen uint64, rng *rand.Rand) {
	t.Helper()
	lo, hi := tileSpan(scriptLineage)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		t.Fatal(err)
	}
	var stored []tile
	for valid := it.First(); valid; valid = it.Next() {
		tl, err := decodeTile(scriptLineage, it.Key(), it.Value())
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		stored = append(stored, tl)
	}
	it.Close()
	if !slices.EqualFunc(stored, tiles, sameTile) {
		t.Fatalf("step %d: pebble holds %d tiles, the list %d, or they differ", step, len(stored), len(tiles))
	}
	first := rng.Uint64N(4 * chunkBlocks)
	last := first + 1 + rng.Uint64N(700)
	g := 1 + rng.Uint64N(gen)
	want := map[uint64]string{}
	for i := range tiles {
		tl := &tiles[i]
		if v, ok := readTile(tl, g); ok {
			for blk := max(first, tl.first); blk < min(last, tl.last+1); blk++ {
				want[blk] = describeRead(v, blk-tl.first)
			}
		}
	}
	got := map[uint64]string{}
	next := first
	err = visitTiles(db, scriptLineage, g, first, last, func(blk, n uint64, v tileVersion) error {
		if blk < next || n == 0 || blk+n > last {
			t.Fatalf("step %d: visitTiles gave blocks %d+%d after %d, within [%d,%d)", step, blk, n, next, first, last)
		}
		next = blk + n
		for i := range n {
			got[blk+i] = describeRead(v, i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("step %d: visitTiles over [%d,%d) at gen %d read %d blocks, the list %d, or other versions", step, first, last, g, len(got), len(want))
	}
}

// describeRead is what block i of version v reads as.
func describeRead(v tileVersion, i uint64) string {
	if v.kind == tileData {
		return fmt.Sprintf("%d data %d:%d/%d %08x", v.gen, v.seg, v.slot+uint32(i), v.epoch, v.crcs[i])
	}
	return fmt.Sprintf("%d kind %d", v.gen, v.kind)
}

// tilesAround is the tiles overlapping [lo, hi) and every tile touching
// those: all a plan could ever look at, where tilesNear leaves out the
// ones it cannot join.
func tilesAround(tiles []tile, lo, hi uint64) []tile {
	i, j := overlapping(tiles, lo, hi)
	u0, u1 := lo, hi
	if j > i {
		u0, u1 = min(lo, tiles[i].first), max(hi, tiles[j-1].last+1)
	}
	if i > 0 && tiles[i-1].last+1 == u0 {
		i--
	}
	if j < len(tiles) && tiles[j].first == u1 {
		j++
	}
	return tiles[i:j]
}

// samePlan reports whether two plans make the same changes.
func samePlan(a, b tilePlan) bool {
	return a.syncFirst == b.syncFirst && slices.Equal(a.deletes, b.deletes) &&
		slices.EqualFunc(a.sets, b.sets, sameTile) && slices.Equal(a.reverse, b.reverse)
}

// overlapping is the index range of the tiles overlapping [lo, hi).
func overlapping(tiles []tile, lo, hi uint64) (i, j int) {
	for i < len(tiles) && tiles[i].last < lo {
		i++
	}
	j = i
	for j < len(tiles) && tiles[j].first < hi {
		j++
	}
	return i, j
}

// lanes are the open segments slots come from, and the next segment's
// number.
type lanes struct {
	seg, slot [4]uint32
	next      uint32
}

// randomRuns splits blocks [first, first+n) into runs of data (taking
// slots from one lane, which moves on to a new segment now and then, and
// sometimes skips a slot), zeros, discards and drops.
func randomRuns(rng *rand.Rand, first, n uint64, epoch uint32, ls *lanes) []tileWrite {
	var ws []tileWrite
	lane := int(first/64) % len(ls.seg) // a stream keeps to its lane
	if rng.IntN(8) == 0 {
		ls.seg[lane], ls.slot[lane] = ls.next, 0
		ls.next++
	}
	seg, slot := ls.seg[lane], ls.slot[lane]
	defer func() { ls.slot[lane] = slot }()
	for at := first; at < first+n; {
		k := min(uint64(1+rng.IntN(int(n))), first+n-at)
		w := tileWrite{first: at, n: k}
		switch r := rng.IntN(20); {
		case r < 14:
			w.kind, w.seg, w.slot, w.epoch = tileData, seg, slot, epoch
			for i := range uint32(k) {
				w.crcs = append(w.crcs, slotCRC(seg, slot+i))
			}
			slot += uint32(k)
			if rng.IntN(4) == 0 {
				slot++ // the next run does not follow on
			}
		case r < 16:
			w.kind = tileZero
		case r < 19:
			w.kind = tileHole
		default:
			w.kind = tileDrop
		}
		ws = append(ws, w)
		at += k
	}
	return ws
}

// applyToModel writes each block as today's keys would take it and
// reports whether a pointer's prev made the writer sync first.
func applyToModel(model map[uint64][]blockVersion, gen uint64, writes []tileWrite, segs fakeSlots) (syncFirst bool) {
	for _, w := range writes {
		for i := range w.n {
			blk := w.first + i
			vs := model[blk]
			if w.kind == tileDrop {
				delete(model, blk)
				continue
			}
			var now held
			if len(vs) > 0 && vs[0].gen == gen {
				switch top := vs[0]; top.kind {
				case tileHole:
					now = held{kind: heldHole}
				case tileZero:
					now = held{kind: heldZero}
				case tileData:
					now = held{kind: heldSlot, slot: top.sv}
				}
				vs = vs[1:]
			}
			nv := blockVersion{gen: gen, kind: w.kind}
			if w.kind == tileData {
				nv.at = pointer{seg: w.seg, slot: w.slot + uint32(i), crc: w.crcs[i]}
				nv.sv = segValue{cur: nv.at, epoch: w.epoch}
				nv.sv.prevKind, nv.sv.prev = prevOf(now, segs, &syncFirst)
			}
			model[blk] = append([]blockVersion{nv}, vs...)
		}
	}
	return syncFirst
}

// applyTilePlan applies p to tiles, keyed by their last block.
func applyTilePlan(t *testing.T, tiles []tile, p tilePlan) []tile {
	byLast := map[uint64]tile{}
	for _, tl := range tiles {
		byLast[tl.last] = tl
	}
	for _, last := range p.deletes {
		if _, ok := byLast[last]; !ok {
			t.Fatalf("plan deletes tile %d, which is not there", last)
		}
		delete(byLast, last)
	}
	for _, tl := range p.sets {
		byLast[tl.last] = tl
	}
	out := make([]tile, 0, len(byLast))
	for _, tl := range byLast {
		out = append(out, tl)
	}
	slices.SortFunc(out, func(a, b tile) int { return int(a.first) - int(b.first) })
	return out
}

func checkTiles(t *testing.T, step int, what string, tiles []tile, model map[uint64][]blockVersion, gens []uint64, segs fakeSlots) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("step %d (%s): %s", step, what, fmt.Sprintf(format, args...))
	}
	covered := map[uint64]bool{}
	for i, tl := range tiles {
		if tl.last < tl.first || tl.first/chunkBlocks != tl.last/chunkBlocks || len(tl.vs) == 0 {
			fail("tile %s crosses a chunk or is empty", describeTile(t, tl))
		}
		if i > 0 {
			prev := &tiles[i-1]
			if prev.last >= tl.first {
				fail("tiles %d-%d and %d-%d overlap", prev.first, prev.last, tl.first, tl.last)
			}
			if prev.last+1 == tl.first && prev.first/chunkBlocks == tl.first/chunkBlocks && stacksContinue(prev, &tl) {
				fail("tiles %s and %s could be one", describeTile(t, *prev), describeTile(t, tl))
			}
		}
		key := tileKey(nil, scriptLineage, tl.last)
		if back, err := decodeTile(scriptLineage, key, appendTile(nil, &tl)); err != nil || !sameTile(back, tl) {
			fail("tile %s does not come back from its stored form: %v", describeTile(t, tl), err)
		}
		for j, v := range tl.vs {
			if v.kind == tileData {
				checkCRCs(t, tl, v)
			}
			if v.shadow && (j == 0 || tl.vs[j-1].gen != v.gen) {
				fail("tile %s: a shadow not below a version of its generation", describeTile(t, tl))
			}
		}
		for blk := tl.first; blk <= tl.last; blk++ {
			covered[blk] = true
			checkBlock(fail, &tl, blk, model[blk], gens, segs)
		}
	}
	for blk, vs := range model {
		if !covered[blk] && len(vs) > 0 {
			fail("block %d has %d versions and no tile", blk, len(vs))
		}
	}
}

// checkBlock compares blk's reads at gens (the head's first) and its
// fallback after a power cut with the model's.
func checkBlock(fail func(string, ...any), tl *tile, blk uint64, vs []blockVersion, gens []uint64, segs fakeSlots) {
	i, gen := blk-tl.first, gens[0]
	for _, g := range gens {
		tv, tok := readTile(tl, g)
		var want *blockVersion
		for j := range vs {
			if vs[j].gen <= g {
				want = &vs[j]
				break
			}
		}
		switch {
		case want == nil && !tok:
		case want == nil || !tok:
			fail("block %d at gen %d: tile has a version %v, the model %v", blk, g, tok, want != nil)
		case tv.gen != want.gen || tv.kind != want.kind:
			fail("block %d at gen %d: tile reads gen %d kind %d, the model gen %d kind %d", blk, g, tv.gen, tv.kind, want.gen, want.kind)
		case tv.kind == tileData && (tv.seg != want.at.seg || tv.slot+uint32(i) != want.at.slot || tv.crcs[i] != want.at.crc || tv.epoch != want.sv.epoch):
			fail("block %d at gen %d: tile reads slot %d:%d/%d, the model %d:%d/%d", blk, g, tv.seg, tv.slot+uint32(i), tv.epoch, want.at.seg, want.at.slot, want.sv.epoch)
		}
	}
	// The fallback after a power cut, where the head's data may not be
	// durable yet.
	if len(vs) == 0 || vs[0].gen != gen || vs[0].kind != tileData || segs.durable(vs[0].at, vs[0].sv.epoch) {
		return
	}
	top := tl.vs[0]
	var sh *tileVersion
	if len(tl.vs) > 1 && tl.vs[1].shadow {
		sh = &tl.vs[1]
	}
	sv := vs[0].sv
	switch {
	case sv.prevKind == prevNone && sh != nil:
		fail("block %d: no prev, but the tile keeps a shadow", blk)
	case sv.prevKind != prevNone && sh == nil:
		fail("block %d: prev kind %d, but the tile keeps no shadow (top gen %d)", blk, sv.prevKind, top.gen)
	case sv.prevKind == prevHole && sh.kind != tileHole, sv.prevKind == prevZero && sh.kind != tileZero:
		fail("block %d: prev kind %d, shadow kind %d", blk, sv.prevKind, sh.kind)
	case sv.prevKind == prevPointer && (sh.kind != tileData || sh.seg != sv.prev.seg || sh.slot+uint32(i) != sv.prev.slot || sh.crcs[i] != sv.prev.crc):
		fail("block %d: prev %d:%d, shadow %+v", blk, sv.prev.seg, sv.prev.slot, *sh)
	}
}

// FuzzDecodeTile: whatever decodeTile accepts, appendTile writes back
// byte for byte, and it fits the rules of a tile.
func FuzzDecodeTile(f *testing.F) {
	seeds := []tile{
		{first: 0, last: 255, vs: []tileVersion{{gen: 1, kind: tileData, seg: 1, slot: 0, epoch: 3, crcs: make([]uint32, 256)}}},
		{first: 600, last: 601, vs: []tileVersion{
			{gen: 5, kind: tileData, seg: 2, slot: 9, epoch: 4, crcs: []uint32{1, 2}},
			{gen: 5, kind: tileZero, shadow: true},
			{gen: 2, kind: tileHole},
		}},
	}
	for _, tl := range seeds {
		f.Add(tl.last, appendTile(nil, &tl))
	}
	f.Add(uint64(7), []byte{0, 0, 0, 0, 0, 0, 0, 7})
	f.Fuzz(func(t *testing.T, last uint64, val []byte) {
		key := tileKey(nil, scriptLineage, last)
		tl, err := decodeTile(scriptLineage, key, val)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if got := appendTile(nil, &tl); !bytes.Equal(got, val) {
			t.Fatalf("decoded %+v, encoded back as %x, from %x", tl, got, val)
		}
		if tl.first/chunkBlocks != tl.last/chunkBlocks || len(tl.vs) == 0 {
			t.Fatalf("accepted %+v", tl)
		}
		for _, v := range tl.vs {
			if v.kind == tileData && uint64(len(v.crcs)) != tl.last-tl.first+1 {
				t.Fatalf("accepted %+v", tl)
			}
		}
	})
}

// TestDecodeTileRefuses names what a stored tile must not be.
func TestDecodeTileRefuses(t *testing.T) {
	good := tile{first: 10, last: 11, vs: []tileVersion{{gen: 3, kind: tileData, seg: 1, slot: 2, epoch: 1, crcs: []uint32{5, 6}}, {gen: 1, kind: tileZero}}}
	val := appendTile(nil, &good)
	key := tileKey(nil, scriptLineage, good.last)
	if back, err := decodeTile(scriptLineage, key, val); err != nil || !sameTile(back, good) {
		t.Fatalf("good tile: %+v, %v", back, err)
	}
	for _, tc := range []struct {
		name     string
		key, val []byte
	}{
		{"another lineage", tileKey(nil, scriptLineage+1, 11), val},
		{"short key", key[:16], val},
		{"first after last", tileKey(nil, scriptLineage, 9), val},
		{"across a chunk", tileKey(nil, scriptLineage, chunkBlocks), val},
		{"no versions", key, val[:8]},
		{"cut short", key, val[:len(val)-1]},
		{"bytes left over", key, append(bytes.Clone(val), 0)},
		{"a drop stored", key, appendTile(nil, &tile{first: 10, last: 11, vs: []tileVersion{{gen: 1, kind: tileDrop}}})},
		{"generations ascending", key, appendTile(nil, &tile{first: 10, last: 11, vs: []tileVersion{{gen: 1, kind: tileZero}, {gen: 2, kind: tileHole}}})},
		{"a shadow on top", key, appendTile(nil, &tile{first: 10, last: 11, vs: []tileVersion{{gen: 1, kind: tileZero, shadow: true}}})},
		{"a shadow of another generation", key, appendTile(nil, &tile{first: 10, last: 11, vs: []tileVersion{{gen: 2, kind: tileZero}, {gen: 1, kind: tileZero, shadow: true}}})},
		{"slots past the segment", key, appendTile(nil, &tile{first: 10, last: 11, vs: []tileVersion{{gen: 1, kind: tileData, slot: 1<<32 - 1, crcs: []uint32{0, 0}}}})},
	} {
		if _, err := decodeTile(scriptLineage, tc.key, tc.val); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		}
	}
}
