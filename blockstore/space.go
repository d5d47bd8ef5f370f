package blockstore

import (
	"context"
	"fmt"
)

// Space is measured, not estimated from sizes: it is what pebble reports on
// disk (sstables and the blob files they reference) for a lineage's data
// keys. Two consequences, both documented for operators:
//   - writes still in the memtable count once flushed (within seconds under
//     load; Store.Compact forces it);
//   - pebble cannot attribute bytes to a generation, so a lineage's bytes are
//     reported on one owner: its live volume, else its newest snapshot.
//     Other snapshots report 0. Summing over volumes gives the pool total.

// PhysicalUtilisation returns the bytes a volume occupies on disk under the
// attribution above.
func (s *Store) PhysicalUtilisation(id string) (uint64, error) {
	s.mu.Lock()
	v, err := s.lookup("usage", id)
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	owner := s.owner(v.lin) == v
	lin := v.lin.rec.ID
	s.mu.Unlock()
	if !owner {
		return 0, nil
	}
	return s.lineageBytes(lin)
}

// PoolUsage returns the bytes on disk of every lineage owned by a volume in
// the pool (the OVS stored_data of a vPool).
func (s *Store) PoolUsage(pool string) (uint64, error) {
	s.mu.Lock()
	var lins []uint64
	for id, lin := range s.lineages {
		if o := s.owner(lin); o != nil && o.rec.Pool == pool {
			lins = append(lins, id)
		}
	}
	s.mu.Unlock()
	var total uint64
	for _, id := range lins {
		n, err := s.lineageBytes(id)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// owner returns the volume a lineage's bytes are reported on.
// REQUIRES: s.mu held.
func (s *Store) owner(lin *lineage) *volume {
	if lin.live != nil {
		return lin.live
	}
	var best *volume
	for _, v := range s.volumes {
		if v.lin != lin || v.rec.Kind != KindSnapshot {
			continue
		}
		if best == nil || v.rec.Gen > best.rec.Gen || (v.rec.Gen == best.rec.Gen && v.rec.ID < best.rec.ID) {
			best = v
		}
	}
	return best
}

func (s *Store) lineageBytes(lin uint64) (uint64, error) {
	lo, hi := lineageSpan(tagData, lin)
	n, err := s.db.EstimateDiskUsage(lo, hi)
	if err != nil {
		return 0, fmt.Errorf("blockstore: usage of lineage %d: %w", lin, err)
	}
	return n, nil
}

// Compact flushes memtables and compacts the whole key space, so deleted
// data leaves the disk now rather than eventually. For operators and tests;
// the store never needs it for correctness.
func (s *Store) Compact() error {
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("blockstore: compact: %w", err)
	}
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		return fmt.Errorf("blockstore: compact: %w", err)
	}
	return nil
}
