package blockstore

import (
	"fmt"

	"github.com/vdiskd/vdiskd/cbt"
)

// Revert makes live volume id read exactly as snapshot snap does, in one
// durable batch: its write history is dropped and replaced by a new lineage
// that falls through to the snapshot, as a clone would. The volume keeps its
// ID, pool, attributes and read-only flag; CBT is off afterwards (XenAPI
// refuses CBT on on_boot=reset VDIs, which is what Revert serves). The
// snapshot stays. Refused while the volume is attached.
func (s *Store) Revert(id, snap string) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("revert", id)
	if err != nil {
		return VolumeInfo{}, err
	}
	sn, err := s.lookup("revert", snap)
	if err != nil {
		return VolumeInfo{}, err
	}
	switch {
	case v.rec.Kind != KindLive:
		return VolumeInfo{}, fmt.Errorf("blockstore: revert %s: %w", id, ErrIsSnapshot)
	case sn.rec.Kind == KindCBTMetadata:
		return VolumeInfo{}, fmt.Errorf("blockstore: revert %s to %s: %w", id, snap, ErrCBTMetadata)
	case sn.rec.Kind != KindSnapshot:
		return VolumeInfo{}, fmt.Errorf("blockstore: revert %s to %s: %w", id, snap, ErrNotSnapshot)
	case v.attached.Load() > 0:
		return VolumeInfo{}, fmt.Errorf("blockstore: revert %s: %w (%d attached)", id, ErrInUse, v.attached.Load())
	}
	parent, gen, old := sn.lin, sn.rec.Gen, v.lin
	lin := newLineage(lineageRecord{
		ID: s.nextLineage, Parent: parent.rec.ID, ParentGen: gen, Head: 1, NextEpoch: 1,
	}, parent)
	rec := v.rec
	rec.Lineage, rec.Size, rec.CloneOf = lin.rec.ID, sn.rec.Size, sn.rec.ID
	rec.CBTEnabled, rec.CBTEpoch = false, 0

	b := s.db.NewBatch()
	// Pin the snapshot's generation for the new lineage before the old head
	// lets go, so a drop of the old lineage cannot take the parent with it.
	addPin(parent.dataPins, gen)
	putJSON(b, lineageKey(lin.rec.ID), lin.rec)
	putJSON(b, volumeKey(id), rec)
	putNextLineage(b, s.nextLineage+1)
	old.live = nil
	s.unpin(b, old, cbt.Head, false)
	if err := s.commitMeta(b); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: revert %s: %w", id, err)
	}
	s.nextLineage++
	lin.live = v
	s.lineages[lin.rec.ID] = lin
	v.lin = lin
	v.rec = rec
	v.size.Store(rec.Size)
	s.gc.poke()
	return v.info(), nil
}

// MovePool moves volumes to another pool in one durable batch (pools are
// key spaces of one database, so no data moves).
func (s *Store) MovePool(pool string, ids ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vols := make([]*volume, len(ids))
	b := s.db.NewBatch()
	for i, id := range ids {
		v, err := s.lookup("move pool", id)
		if err != nil {
			_ = b.Close()
			return err
		}
		vols[i] = v
		rec := v.rec
		rec.Pool = pool
		putJSON(b, volumeKey(id), rec)
	}
	if err := s.commitMeta(b); err != nil {
		return fmt.Errorf("blockstore: move pool: %w", err)
	}
	for _, v := range vols {
		v.rec.Pool = pool
	}
	return nil
}
