package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Segment reclaim. Slots die when their key is overwritten or deleted, but
// a segment is only ever freed whole: the live slots of a mostly dead
// sealed segment are copied forward into the open lanes, then the file
// goes.
//
// A slot is live while its key's pointer names it (cur), and also while a
// pointer not yet durable names it as prev (power-loss fallback). prev is
// always an earlier value of the same key, so the segment's reverse keys
// find both. For the second kind, reclaim makes sure every such pointer is
// durable before the file goes:
//
//  1. the segment is marked retiring, so a writer that would carry a prev
//     into it syncs the segments instead and takes the current value as
//     prev (writeplan.go, prevOf);
//  2. each key whose cur is in the segment gets, under the block's stripe
//     lock (exclusive: no write of that block is halfway), a copy of the
//     block in a lane and a pointer to it whose prev is the old slot;
//  3. the segments are synced: every copy, and every write that committed
//     before (whose prev may name the segment), is durable;
//  4. the reverse keys go in a synced commit, then the file.
//
// A crash before 4 leaves the old slots in place for any copy a power cut
// tore; after it, the file may linger with no reverse keys, and the next
// Open removes it.

// SegmentStats describes the segment files, for the exposition.
type SegmentStats struct {
	Files int
	// Bytes is what the files' written slots take, live or dead: the
	// data's share of the disk, beside pebble's own files.
	Bytes uint64
	// Since Open: segments reclaimed, and live blocks they moved.
	Reclaimed, Moved uint64
	// Since Open: bytes written and read past the page cache (direct.go).
	DirectWritten, DirectRead uint64
}

// SegmentStats reports the segment files and the reclaim work so far.
func (s *Store) SegmentStats() SegmentStats {
	files, slots := s.segs.usage()
	return SegmentStats{Files: files, Bytes: slots * BlockSize,
		Reclaimed: s.reclaimed.Load(), Moved: s.moved.Load(),
		DirectWritten: s.segs.directWrote.Load(), DirectRead: s.segs.directRead.Load()}
}

// ReclaimStats says what ReclaimSegments did.
type ReclaimStats struct {
	Scanned, Freed int    // sealed segments looked at, and removed
	Moved          uint64 // live blocks copied forward
}

// ReclaimSegments frees every sealed segment at most maxLive of whose
// capacity is live (0.5: half or less), copying its live blocks forward.
// Its cost is a pointer lookup per slot ever written to a sealed segment.
func (s *Store) ReclaimSegments(maxLive float64) (ReclaimStats, error) {
	return s.reclaim(maxLive, 0)
}

// reclaimLive is the live share at or below which the background collector
// reclaims a segment, and reclaimBatch how many sealed segments it looks
// at per pass (each costs a lookup per slot: 65,536 for a full one).
const (
	reclaimLive  = 0.5
	reclaimBatch = 4
)

// reclaim looks at up to limit sealed segments (0: all), starting after
// the last one the previous call looked at.
func (s *Store) reclaim(maxLive float64, limit int) (ReclaimStats, error) {
	s.gc.mu.Lock() // no collector deleting versions the copies would revive
	defer s.gc.mu.Unlock()
	s.data.RLock()
	defer s.data.RUnlock()
	var st ReclaimStats
	if s.dataClosed {
		return st, fmt.Errorf("blockstore: reclaim: %w", ErrClosed)
	}
	ids := s.segs.sealed()
	if limit > 0 && len(ids) > limit {
		i, _ := slices.BinarySearch(ids, s.reclaimNext)
		ids = slices.Concat(ids[i:], ids[:i])[:limit]
	}
	for _, id := range ids {
		s.reclaimNext = id + 1
		st.Scanned++
		slots, err := s.segmentSlots(id)
		if err != nil {
			return st, err
		}
		live := 0
		for _, sl := range slots {
			if sl.live {
				live++
			}
		}
		if float64(live) > maxLive*float64(s.segs.slots) {
			continue
		}
		moved, err := s.reclaimSegment(id, slots)
		st.Moved += moved
		s.moved.Add(moved)
		if err != nil {
			return st, err
		}
		st.Freed++
		s.reclaimed.Add(1)
	}
	return st, nil
}

// slotRef is a slot of a segment and the data key it was written for.
type slotRef struct {
	slot uint32
	key  []byte
	live bool // the key's pointer names the slot
}

// segmentSlots lists the written slots of segment id from its reverse keys.
func (s *Store) segmentSlots(id uint32) (refs []slotRef, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: reverseKey(nil, id, 0), UpperBound: reverseKey(nil, id+1, 0)})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, it.Close()) }()
	// One iterator over the data keys for the whole segment, not a Get
	// per slot: a Get builds an iterator of its own each time, and a
	// run's keys ascend, so each seek is a step from the last
	// (BenchmarkReclaimScan). Its point-in-time view is no staler than
	// Gets would be: a slot, once dead, never lives again, and moveSlot
	// checks a live one again under its stripe.
	lo, hi := tagSpan(s.versionTag())
	data, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, data.Close()) }()
	var last linTile // tiles only
	for it.First(); it.Valid(); it.Next() {
		_, first, run, err := decodeReverse(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		for i := range run.n {
			slot, key := first+i, run.keyAt(nil, i)
			if s.tiles {
				live, err := tileSlotLive(data, &last, id, slot, key)
				if err != nil {
					return nil, err
				}
				refs = append(refs, slotRef{slot: slot, key: key, live: live})
				continue
			}
			live := false
			found := data.SeekGE(key)
			if err := data.Error(); err != nil {
				return nil, err
			}
			if found && bytes.Equal(data.Key(), key) {
				val, err := data.ValueAndErr()
				if err != nil {
					return nil, err
				}
				cur, ok := pointerIn(val)
				live = ok && cur.names(id, slot)
			}
			refs = append(refs, slotRef{slot: slot, key: key, live: live})
		}
	}
	return refs, it.Error()
}

// pointerAt returns the segment value a data key holds, if it holds one.
func (s *Store) pointerAt(key []byte) (pointer, bool, error) {
	val, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return pointer{}, false, nil
	}
	if err != nil {
		return pointer{}, false, err
	}
	defer closer.Close()
	cur, ok := pointerIn(val)
	return cur, ok, nil
}

func (s *Store) reclaimSegment(id uint32, slots []slotRef) (moved uint64, err error) {
	s.segs.setRetiring(id, true)
	defer s.segs.setRetiring(id, false)
	for _, sl := range slots {
		if !sl.live {
			continue
		}
		n, err := s.moveSlot(id, sl)
		if err != nil {
			return moved, fmt.Errorf("blockstore: reclaim segment %08x: %w", id, err)
		}
		moved += n
	}
	// A write that made a slot dead before the scan may not have settled
	// the cache yet: drop every block the segment held, so that no entry,
	// new or old, names it once it is gone (pebble names it no more).
	for _, sl := range slots {
		s.newest.forgetBlock(binary.BigEndian.Uint64(sl.key[1:]), binary.BigEndian.Uint64(sl.key[9:]))
	}
	if err := s.segs.sync(); err != nil {
		return moved, err
	}
	b := s.db.NewBatch()
	_ = b.DeleteRange(reverseKey(nil, id, 0), reverseKey(nil, id+1, 0), nil)
	if err := commit(b, true); err != nil {
		return moved, fmt.Errorf("blockstore: reclaim segment %08x: %w", id, err)
	}
	return moved, s.segs.remove(id)
}

// moveSlot copies a live slot forward if its key still names it, and
// returns how many slots moved (in a store of tiles, moveTileRun's run). It holds
// what a write of the block holds, with the stripe exclusive, and s.mu so
// that no destroy drops the lineage between the check and the commit.
func (s *Store) moveSlot(id uint32, sl slotRef) (uint64, error) {
	linID, blk := binary.BigEndian.Uint64(sl.key[1:]), binary.BigEndian.Uint64(sl.key[9:])
	s.mu.Lock()
	defer s.mu.Unlock()
	lin := s.lineages[linID]
	if lin == nil {
		return 0, nil // dropped: its keys are gone
	}
	lin.mu.RLock()
	defer lin.mu.RUnlock()
	if s.tiles {
		return s.moveTileRun(lin, blk, id, sl.slot)
	}
	stripe := &lin.stripes[blk%stripeCount]
	stripe.Lock()
	defer stripe.Unlock()
	// The slot moves: no cached pointer may name the old one once this
	// returns (the segment file goes after the last move).
	defer s.newest.forget(lin, blk, blk)
	cur, ok, err := s.pointerAt(sl.key)
	if err != nil || !ok || !cur.names(id, sl.slot) {
		return 0, err
	}
	var buf [BlockSize]byte
	if err := s.segs.readAt(buf[:], id, sl.slot); err != nil {
		return 0, err
	}
	if blockCRC(buf[:]) != cur.crc {
		return 0, fmt.Errorf("block %d of lineage %d: %w: slot %d fails its CRC", blk, linID, ErrCorrupt, sl.slot)
	}
	sf, slot, err := s.segs.reserve(1)
	if err != nil {
		return 0, err
	}
	defer s.segs.release(sf)
	epoch, err := s.segs.write(sf, slot, buf[:])
	if err != nil {
		return 0, err
	}
	v := segValue{cur: pointer{seg: sf.id, slot: slot, crc: cur.crc}, epoch: epoch, prevKind: prevPointer, prev: cur}
	b := s.db.NewBatch()
	_ = b.Set(sl.key, v.append(nil), nil)
	_ = b.Set(reverseKey(nil, sf.id, slot), reverseValue(nil, sl.key, 1), nil)
	if err := commit(b, false); err != nil {
		return 0, err
	}
	return 1, nil
}

// removeUnreferencedSegments deletes segment files of earlier runs that no
// reverse key names: reclaimed ones whose removal a crash interrupted, and
// ones created but never written.
func (s *Store) removeUnreferencedSegments() error {
	for _, id := range s.segs.sealed() {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: reverseKey(nil, id, 0), UpperBound: reverseKey(nil, id+1, 0)})
		if err != nil {
			return err
		}
		used := it.First()
		if err := it.Close(); err != nil {
			return err
		}
		if !used {
			if err := s.segs.remove(id); err != nil {
				return err
			}
		}
	}
	return nil
}
