package blockstore

import (
	"fmt"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// The store tracks changed 64 KiB blocks for every volume, always: the
// collector needs the same history to find dead versions in O(changed
// blocks). "CBT enabled" is the XenAPI-visible part: which snapshots start
// a usable chain (an epoch) and may be diffed.

// EnableCBT turns changed-block tracking on for a live volume. Idempotent.
// The first usable base is the next snapshot (XenAPI: the new log starts
// empty and older snapshots have none).
func (s *Store) EnableCBT(id string) (VolumeInfo, error) {
	return s.setCBT("enable cbt", id, true)
}

// DisableCBT turns it off. Idempotent. The chain is broken for good:
// snapshots from before can no longer be diffed against later ones.
func (s *Store) DisableCBT(id string) (VolumeInfo, error) {
	return s.setCBT("disable cbt", id, false)
}

func (s *Store) setCBT(op, id string, on bool) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup(op, id)
	if err != nil {
		return VolumeInfo{}, err
	}
	switch v.rec.Kind {
	case KindCBTMetadata:
		return VolumeInfo{}, fmt.Errorf("blockstore: %s %s: %w", op, id, ErrCBTMetadata)
	case KindSnapshot:
		return VolumeInfo{}, fmt.Errorf("blockstore: %s %s: %w", op, id, ErrIsSnapshot)
	}
	if v.rec.CBTEnabled == on {
		return v.info(), nil
	}
	rec := v.rec
	rec.CBTEnabled = on
	b := s.db.NewBatch()
	lrec := v.lin.rec
	if on {
		rec.CBTEpoch = lrec.NextEpoch
		lrec.NextEpoch++
		putJSON(b, lineageKey(lrec.ID), lrec)
	}
	putJSON(b, volumeKey(id), rec)
	if err := s.commitMeta(b); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: %s %s: %w", op, id, err)
	}
	v.rec = rec
	v.lin.rec.NextEpoch = lrec.NextEpoch
	return v.info(), nil
}

// DataDestroy frees a CBT-enabled snapshot's data and keeps its
// changed-block history: it becomes KindCBTMetadata and can still be the
// base of a diff. Idempotent on KindCBTMetadata.
func (s *Store) DataDestroy(id string) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("data destroy", id)
	if err != nil {
		return VolumeInfo{}, err
	}
	switch {
	case v.rec.Kind == KindCBTMetadata:
		return v.info(), nil
	case v.rec.Kind != KindSnapshot:
		return VolumeInfo{}, fmt.Errorf("blockstore: data destroy %s: %w", id, ErrNotSnapshot)
	case !v.rec.CBTEnabled:
		return VolumeInfo{}, fmt.Errorf("blockstore: data destroy %s: %w", id, ErrNoCBT)
	case v.attached.Load() > 0:
		return VolumeInfo{}, fmt.Errorf("blockstore: data destroy %s: %w", id, ErrInUse)
	}
	rec := v.rec
	rec.Kind = KindCBTMetadata
	b := s.db.NewBatch()
	putJSON(b, volumeKey(id), rec)
	lin := v.lin
	last := dropPin(lin.dataPins, rec.Gen)
	addPin(lin.cbtPins, rec.Gen)
	s.unpin(b, lin, rec.Gen, last)
	if err := s.commitMeta(b); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: data destroy %s: %w", id, err)
	}
	v.rec = rec
	v.readOnly.Store(true)
	s.gc.poke()
	return v.info(), nil
}

// ChangedBlocks returns the 64 KiB blocks written after snapshot from up to
// and including to (a later snapshot or the live volume), and the virtual
// size that bounds the answer. The rules are XenAPI's (cbt.CheckChain);
// errors wrap cbt.ErrChain.
func (s *Store) ChangedBlocks(from, to string) (*roaring.Bitmap, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.lookup("changed blocks", from)
	if err != nil {
		return nil, 0, err
	}
	t, err := s.lookup("changed blocks", to)
	if err != nil {
		return nil, 0, err
	}
	if err := cbt.CheckChain(f.cbtPoint(), t.cbtPoint()); err != nil {
		return nil, 0, fmt.Errorf("blockstore: changed blocks %s..%s: %w", from, to, err)
	}
	tp := t.cbtPoint()
	bm := f.lin.intervals.Union(f.rec.Gen, tp.Gen)
	if tp.Gen == cbt.Head {
		f.lin.liveMu.Lock()
		bm.Or(f.lin.liveBM)
		f.lin.liveMu.Unlock()
	}
	bm.RemoveRange(cbt.Blocks(t.rec.Size), uint64(1)<<32)
	return bm, t.rec.Size, nil
}

func (v *volume) cbtPoint() cbt.Point {
	gen := v.rec.Gen
	if v.rec.Kind == KindLive {
		gen = cbt.Head
	}
	return cbt.Point{
		ID: v.rec.ID, Lineage: v.lin.rec.ID, Gen: gen,
		Enabled: v.rec.CBTEnabled, Epoch: v.rec.CBTEpoch,
	}
}

// CBTBases lists the volumes that ChangedBlocks(base, to) accepts as base:
// the snapshots before to in its changed-block chain.
func (s *Store) CBTBases(to string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookup("changed-block bases", to)
	if err != nil {
		return nil, err
	}
	tp := t.cbtPoint()
	var out []string
	for id, f := range s.volumes {
		if f.lin == t.lin && cbt.CheckChain(f.cbtPoint(), tp) == nil {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}
