package blockstore

import (
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkMetadata1M measures what extent-granular keys would save on
// 1 MiB requests, in pebble alone: the metadata of a 1 MiB write (256
// pointers and a reverse run, against one tile from planTiles and a
// reverse record) and of a 1 MiB read (256 pointers through an iterator,
// against one seek and a tile decoded), over 1 GiB of 1 MiB writes, and of
// a 4 KiB write at random into that GiB after a snapshot. The
// data's CRCs are computed once beforehand for both: they are the same
// work either way.
func BenchmarkMetadata1M(b *testing.B) {
	const (
		run     = 256 // blocks in 1 MiB
		regions = 1024
		lin     = 3
	)
	crcs := make([]uint32, run)
	for i := range crcs {
		crcs[i] = uint32(i) * 2654435761
	}
	writePointers := func(db *pebble.DB, region uint64) error {
		batch := db.NewBatchWithSize(run * (dataKeyLen + pointerLen + 16))
		var key [dataKeyLen]byte
		var val [pointerPrevLen]byte
		first := region * run
		for i := range uint64(run) {
			v := segValue{cur: pointer{seg: uint32(region), slot: uint32(i), crc: crcs[i]}, epoch: 1}
			_ = batch.Set(dataKey(key[:0], lin, first+i, 1), v.append(val[:0]), nil)
		}
		var rk [9]byte
		var rv [dataKeyLen + 4]byte
		_ = batch.Set(reverseKey(rk[:0], uint32(region), 0), reverseValue(rv[:0], dataKey(key[:0], lin, first, 1), run), nil)
		return batch.Commit(pebble.NoSync)
	}
	writeTile := func(db *pebble.DB, region uint64) error {
		first := region * run
		p := planTiles(1, []tileWrite{{first: first, n: run, kind: tileData, seg: uint32(region), epoch: 1, crcs: crcs}}, nil, fakeSlots{})
		batch := db.NewBatchWithSize(run*4 + 128)
		var key [tileKeyLen]byte
		for _, t := range p.sets {
			_ = batch.Set(tileKey(key[:0], lin, t.last), appendTile(nil, &t), nil)
		}
		var rk [9]byte
		var dk [dataKeyLen]byte
		for _, r := range p.reverse {
			_ = batch.Set(reverseKey(rk[:0], r.seg, r.slot), dataKey(dk[:0], lin, r.first, r.gen), nil)
		}
		return batch.Commit(pebble.NoSync)
	}
	readPointers := func(db *pebble.DB, region uint64) (n int, err error) {
		lo, hi := blockSpan(lin, region*run, region*run+run)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return 0, err
		}
		var key [dataKeyLen]byte
		for valid := it.SeekGE(dataKey(key[:0], lin, region*run, 1)); valid; valid = it.Next() {
			if _, _, ok := decodeDataKey(it.Key(), lin); !ok {
				b.Fatal("bad key")
			}
			val, err := it.ValueAndErr()
			if err != nil || !isPointer(val) {
				b.Fatalf("bad value: %v", err)
			}
			if decodePointer(val).crc == crcs[n] {
				n++
			}
		}
		return n, it.Close()
	}
	readTile := func(db *pebble.DB, region uint64) (n int, err error) {
		lo := tileKey(nil, lin, region*run)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: tileKey(nil, lin+1, 0)})
		if err != nil {
			return 0, err
		}
		if it.SeekGE(lo) {
			val, err := it.ValueAndErr()
			if err != nil {
				b.Fatal(err)
			}
			t, err := decodeTile(lin, it.Key(), val)
			if err != nil {
				b.Fatal(err)
			}
			v, _ := readTile(&t, 1)
			for i, c := range v.crcs {
				if c == crcs[i] {
					n++
				}
			}
		}
		return n, it.Close()
	}
	// A 4 KiB write at random over 1 GiB written in 1 MiB pieces, one
	// generation later (a snapshot in between): read what the key or tile
	// holds now, plan, commit. Tiles pay for cutting each 1 MiB tile the
	// first time a block of it is written. The pointer's planVersions also
	// takes the block's CRC, which the tile is handed: that favours tiles.
	//
	// With a cache, what the write reads is kept in memory, as the newest
	// cache keeps a block's pointer and chunkTiles a chunk's tiles: no
	// pebble read once the block or chunk is known.
	write4kPointer := func(cache map[uint64]held) func(*pebble.DB, uint64, uint32) error {
		return func(db *pebble.DB, blk uint64, slot uint32) error {
			now, ok := cache[blk]
			if !ok {
				var key [dataKeyLen]byte
				val, closer, err := db.Get(dataKey(key[:0], lin, blk, 2))
				if err == nil {
					now = heldOf(val)
					closer.Close()
				} else if err != pebble.ErrNotFound {
					return err
				}
			}
			var p versionPlan
			planVersions(&p, lin, 2, []newVersion{{blk: blk, val: zeroBlock[:], placed: true, seg: 1 << 20, slot: slot, epoch: 1, now: now}}, fakeSlots{synced: 2})
			batch := db.NewBatch()
			for _, kv := range p.sets {
				_ = batch.Set(kv.key, kv.val, nil)
			}
			if cache != nil {
				cache[blk] = heldOf(p.sets[0].val)
			}
			return batch.Commit(pebble.NoSync)
		}
	}
	write4kTile := func(cache map[uint64]*chunkTiles) func(*pebble.DB, uint64, uint32) error {
		return func(db *pebble.DB, blk uint64, slot uint32) error {
			var near []tile
			c := cache[blk/chunkBlocks]
			var err error
			switch {
			case c != nil:
				near = c.near(blk, blk+1)
			case cache != nil:
				if c, err = readChunkTiles(db, lin, blk/chunkBlocks); err != nil {
					return err
				}
				cache[blk/chunkBlocks] = c
				near = c.near(blk, blk+1)
			default:
				if near, err = readTilesNear(db, lin, blk, blk+1); err != nil {
					return err
				}
			}
			p := planTiles(2, []tileWrite{{first: blk, n: 1, kind: tileData, seg: 1 << 20, slot: slot, epoch: 1, crcs: crcs[:1]}}, near, fakeSlots{synced: 2})
			batch := db.NewBatch()
			p.addTo(batch, lin)
			if c != nil {
				c.apply(&p)
			}
			return batch.Commit(pebble.NoSync)
		}
	}
	forms := []struct {
		name    string
		write   func(*pebble.DB, uint64) error
		read    func(*pebble.DB, uint64) (int, error)
		write4k func(db *pebble.DB, blk uint64, slot uint32) error
	}{{"pointers", writePointers, readPointers, write4kPointer(nil)}, {"tiles", writeTile, readTile, write4kTile(nil)}}
	// filled is a pebble holding 1 GiB written in 1 MiB pieces, flushed.
	filled := func(b *testing.B, write func(*pebble.DB, uint64) error) *pebble.DB {
		db := openBenchPebble(b, b.TempDir(), true, 0).db
		for r := range uint64(regions) {
			if err := write(db, r); err != nil {
				b.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			b.Fatal(err)
		}
		return db
	}
	for _, f := range forms {
		b.Run("write/"+f.name, func(b *testing.B) {
			db := openBenchPebble(b, b.TempDir(), true, 0).db
			defer db.Close()
			b.SetBytes(run * BlockSize)
			b.ResetTimer()
			for i := range b.N {
				if err := f.write(db, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	cached := []struct {
		name  string
		write func(*pebble.DB, uint64) error
		w4k   func(db *pebble.DB, blk uint64, slot uint32) error
	}{
		{forms[0].name, forms[0].write, forms[0].write4k},
		{forms[1].name, forms[1].write, forms[1].write4k},
		{"pointers-cached", writePointers, write4kPointer(map[uint64]held{})},
		{"tiles-cached", writeTile, write4kTile(map[uint64]*chunkTiles{})},
	}
	for _, f := range cached {
		b.Run("write4k/"+f.name, func(b *testing.B) {
			db := filled(b, f.write)
			defer db.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			b.SetBytes(BlockSize)
			b.ResetTimer()
			for i := range b.N {
				if err := f.w4k(db, rng.Uint64N(regions*run), uint32(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	for _, f := range forms {
		b.Run("read/"+f.name, func(b *testing.B) {
			db := filled(b, f.write)
			defer db.Close()
			b.SetBytes(run * BlockSize)
			b.ResetTimer()
			for i := range b.N {
				n, err := f.read(db, uint64(i*7919)%regions)
				if err != nil || n != run {
					b.Fatalf("read %d of %d blocks: %v", n, run, err)
				}
			}
		})
	}
}
