package blockstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Power-loss recovery of segment pointers.
//
// pebble can make a pointer durable before the page cache has written the
// slot it names: a memtable flush or the kernel's writeback of the WAL
// needs no FLUSH from us. After a power cut such a pointer names a slot
// that is short, zero or stale, and its CRC says so. Every write such a
// pointer belongs to was never made durable (FLUSH, FUA and snapshots sync
// the segments first), so the key falls back to what its pointer recorded
// as prev: the last durable value of the same key, or no key at all, which
// lets older generations show through. Those are still there: the
// collector syncs the segments before it deletes versions that newer ones
// replaced (gc.go).
//
// The segments to check are those written since the store last knew all
// of them durable ("segments-durable": set at a clean Close and after each
// recovery); the reverse keys list their slots.

const metaSegmentsDurable = "segments-durable"

// recoverSegments syncs the segments of the last run as they are now, then
// walks their slots and undoes every pointer whose slot did not survive.
// It returns how many keys fell back.
func (s *Store) recoverSegments() (int, error) {
	durableBelow, err := s.getMetaUint32(metaSegmentsDurable)
	if err != nil {
		return 0, err
	}
	// New segments number past every one a reverse key names, even one
	// whose file a power cut lost with its directory entry.
	lo, hi := tagSpan(tagReverse)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	if it.Last() {
		seg, _, err := decodeReverseKey(it.Key())
		if err != nil {
			it.Close()
			return 0, err
		}
		s.segs.startAfter(seg + 1)
	}
	if err := it.Close(); err != nil {
		return 0, err
	}

	// What the page cache holds now is what later reads will see: make it
	// durable before judging it.
	for id, sf := range s.segs.files {
		if id >= durableBelow {
			if err := sf.f.SyncData(); err != nil {
				return 0, fmt.Errorf("blockstore: recover: sync segment %08x: %w", id, err)
			}
		}
	}

	b := s.db.NewBatch()
	defer b.Close()
	it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: reverseKey(nil, durableBelow, 0), UpperBound: hi})
	if err != nil {
		return 0, err
	}
	fixed := 0
	var buf [BlockSize]byte
	var tiles *pebble.Iterator // a store of tiles: its tiles, for findBadTileSlots
	var bad []badSlot
	if s.tiles {
		tlo, thi := tagSpan(tagTile)
		if tiles, err = s.db.NewIter(&pebble.IterOptions{LowerBound: tlo, UpperBound: thi}); err != nil {
			it.Close()
			return 0, err
		}
		defer tiles.Close()
	}
	for it.First(); it.Valid(); it.Next() {
		seg, first, run, err := decodeReverse(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return 0, err
		}
		if s.tiles {
			if bad, err = s.findBadTileSlots(tiles, bad, buf[:], seg, first, run); err != nil {
				it.Close()
				return 0, err
			}
			continue
		}
		for i := range run.n {
			n, err := s.recoverSlot(b, buf[:], seg, first+i, run.keyAt(nil, i))
			if err != nil {
				it.Close()
				return 0, err
			}
			fixed += n
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(bad) > 0 {
		slices.SortFunc(bad, func(x, y badSlot) int {
			return cmp.Or(cmp.Compare(x.lin, y.lin), cmp.Compare(x.last, y.last), cmp.Compare(x.blk, y.blk))
		})
		if err := fixTiles(tiles, b, bad); err != nil {
			return 0, err
		}
		fixed = len(bad)
	}
	putMetaUint32(b, metaSegmentsDurable, s.segs.nextSegment())
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("blockstore: recover: %w", err)
	}
	return fixed, nil
}

// recoverSlot adds to b the fallback of key if key still names the slot
// and the slot fails its CRC, and returns 1 if it did.
func (s *Store) recoverSlot(b *pebble.Batch, buf []byte, seg, slot uint32, key []byte) (int, error) {
	val, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil // deleted since: the slot is garbage
	}
	if err != nil {
		return 0, err
	}
	v, ok := segValue{}, isPointer(val)
	if ok {
		v = decodeSegValue(val)
	}
	closer.Close()
	if !ok || v.cur.seg != seg || v.cur.slot != slot {
		return 0, nil // the key moved on
	}
	if err := s.segs.readAt(buf, seg, slot); err == nil && blockCRC(buf) == v.cur.crc {
		return 0, nil // survived
	}
	switch v.prevKind {
	case prevNone:
		_ = b.Delete(key, nil)
	case prevHole:
		_ = b.Set(key, valueHole, nil)
	case prevZero:
		_ = b.Set(key, valueZero, nil)
	case prevPointer:
		_ = b.Set(key, segValue{cur: v.prev}.append(nil), nil)
	}
	return 1, nil
}

func (s *Store) getMetaUint32(name string) (uint32, error) {
	v, closer, err := s.db.Get(storeMetaKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 4 {
		return 0, fmt.Errorf("%w: %s is %d bytes", ErrCorrupt, name, len(v))
	}
	return binary.BigEndian.Uint32(v), nil
}

func putMetaUint32(b *pebble.Batch, name string, v uint32) {
	_ = b.Set(storeMetaKey(name), binary.BigEndian.AppendUint32(nil, v), nil)
}
