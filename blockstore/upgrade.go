package blockstore

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// The upgrade of a store with a key per block version (v2, and v1 before
// it) to tiles (v3), on open, after power-loss recovery has made every
// slot durable, so no shadow is needed. Chunk by chunk, a block's
// versions become a one-block tile, tiles that continue each other join,
// and the chunk's per-block keys go, in the same batch; blocks kept in
// pebble itself (the v2 option of 4 KiB values) are first written to
// segment slots and synced. A crash leaves the store in formatUpgrading,
// every chunk either converted or not, and the next open carries on.

// formatUpgrading marks a store part v2, part tiles: only a build that can
// finish the upgrade may open it.
const formatUpgrading = "vdiskd-blockstore-v3-upgrading"

// upgradeChunksPerBatch bounds one batch of the upgrade (a variable for
// tests).
var upgradeChunksPerBatch = 64

// testHookUpgradeBatch, if set, runs after each batch of the upgrade
// commits, with the number committed so far; an error stops the upgrade
// there, as a crash would.
var testHookUpgradeBatch func(batches int) error

// upgradeStats says what the upgrade did.
type upgradeStats struct {
	chunks, tiles, blocks, moved uint64 // moved: blocks written from pebble to segments
}

func (s *Store) upgradeToTiles() (upgradeStats, error) {
	var st upgradeStats
	if err := s.setFormat(formatUpgrading); err != nil {
		return st, err
	}
	lo, hi := tagSpan(tagData)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return st, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	var (
		ch      chunkVersions
		inBatch int
		batches int
		moved   bool // the batch names slots not yet synced
	)
	var commitUpgrade func() error
	flush := func() error {
		if len(ch.blocks) == 0 {
			return nil
		}
		n, err := s.convertChunk(b, &ch, &st)
		if err != nil {
			return err
		}
		moved = moved || n > 0
		ch = chunkVersions{}
		if inBatch++; inBatch < upgradeChunksPerBatch {
			return nil
		}
		return commitUpgrade()
	}
	commitUpgrade = func() error {
		if moved {
			if err := s.segs.sync(); err != nil {
				return err
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b = s.db.NewBatch()
		inBatch, moved = 0, false
		batches++
		if testHookUpgradeBatch != nil {
			return testHookUpgradeBatch(batches)
		}
		return nil
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != dataKeyLen {
			return st, fmt.Errorf("%w: data key %x", ErrCorrupt, k)
		}
		lin := binary.BigEndian.Uint64(k[1:])
		blk, gen, _ := decodeDataKey(k, lin)
		if lin != ch.lin || blk/chunkBlocks != ch.ch || len(ch.blocks) == 0 {
			if err := flush(); err != nil {
				return st, err
			}
			ch.lin, ch.ch = lin, blk/chunkBlocks
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return st, err
		}
		if err := ch.add(blk, gen, val); err != nil {
			return st, fmt.Errorf("lineage %d block %d: %w", lin, blk, err)
		}
	}
	if err := it.Error(); err != nil {
		return st, err
	}
	if err := flush(); err != nil {
		return st, err
	}
	if inBatch > 0 {
		if err := commitUpgrade(); err != nil {
			return st, err
		}
	}
	if err := s.db.Flush(); err != nil {
		return st, err
	}
	return st, s.setFormat(formatTiles)
}

// chunkVersions is one chunk's versions as the per-block keys hold them,
// in key order: blocks ascending, each block's versions newest first.
type chunkVersions struct {
	lin, ch uint64
	blocks  []blockStack
}

type blockStack struct {
	blk    uint64
	vs     []tileVersion
	inline [][]byte // the data of vs[i] kept in pebble, else nil
}

// add takes one per-block version in key order. A pointer's epoch goes:
// every slot is durable by now (recovery ran), and versions that differ
// only in the epochs of earlier runs must be able to join.
func (c *chunkVersions) add(blk, gen uint64, val []byte) error {
	if n := len(c.blocks); n == 0 || c.blocks[n-1].blk != blk {
		c.blocks = append(c.blocks, blockStack{blk: blk})
	}
	bs := &c.blocks[len(c.blocks)-1]
	v := tileVersion{gen: gen}
	var data []byte
	switch {
	case len(val) == 0:
		v.kind = tileHole
	case len(val) == 1 && val[0] == 'z':
		v.kind = tileZero
	case len(val) == BlockSize:
		v.kind, data = tileData, append([]byte(nil), val...)
		v.crcs = []uint32{blockCRC(val)}
	case isPointer(val):
		p := decodeSegValue(val).cur
		v.kind, v.seg, v.slot, v.crcs = tileData, p.seg, p.slot, []uint32{p.crc}
	default:
		return fmt.Errorf("%w: value of %d bytes", ErrCorrupt, len(val))
	}
	bs.vs = append(bs.vs, v)
	bs.inline = append(bs.inline, data)
	return nil
}

// convertChunk puts c's tiles into b and deletes its per-block keys,
// after writing its data kept in pebble to segment slots. It returns how
// many blocks it wrote so.
func (s *Store) convertChunk(b *pebble.Batch, c *chunkVersions, st *upgradeStats) (uint64, error) {
	moved0 := st.moved
	var p tilePlan
	var run []*tileVersion // data versions of consecutive blocks, one generation, bound for consecutive slots
	var data []byte
	var runFirst uint64
	writeRun := func() error {
		if len(run) == 0 {
			return nil
		}
		sf, slot, err := s.segs.reserve(len(run))
		if err != nil {
			return err
		}
		defer s.segs.release(sf)
		epoch, err := s.segs.write(sf, slot, data)
		if err != nil {
			return err
		}
		for i, v := range run {
			v.seg, v.slot, v.epoch = sf.id, slot+uint32(i), epoch
		}
		p.reverse = append(p.reverse, tileRun{seg: sf.id, slot: slot, first: runFirst, n: uint64(len(run)), gen: run[0].gen})
		st.moved += uint64(len(run))
		run, data = run[:0], data[:0]
		return nil
	}
	tiles := make([]tile, 0, len(c.blocks))
	for i := range c.blocks {
		bs := &c.blocks[i]
		for k := range bs.vs {
			if bs.inline[k] == nil {
				continue
			}
			v := &bs.vs[k]
			if n := len(run); n > 0 && (run[n-1].gen != v.gen || runFirst+uint64(n) != bs.blk || n == s.segs.slots) {
				if err := writeRun(); err != nil {
					return 0, err
				}
			}
			if len(run) == 0 {
				runFirst = bs.blk
			}
			run = append(run, v)
			data = append(data, bs.inline[k]...)
		}
		tiles = append(tiles, tile{first: bs.blk, last: bs.blk, vs: bs.vs})
		st.blocks++
	}
	if err := writeRun(); err != nil {
		return 0, err
	}
	p.sets = mergeTiles(tiles)
	p.addTo(b, c.lin)
	lo, hi := blockSpan(c.lin, c.ch*chunkBlocks, (c.ch+1)*chunkBlocks)
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return 0, err
	}
	st.chunks++
	st.tiles += uint64(len(p.sets))
	return st.moved - moved0, nil
}

// setFormat records the store's format, synced.
func (s *Store) setFormat(format string) error {
	b := s.db.NewBatch()
	_ = b.Set(storeMetaKey("format"), []byte(format), nil)
	if err := commit(b, true); err != nil {
		return fmt.Errorf("blockstore: record format %q: %w", format, err)
	}
	return nil
}
