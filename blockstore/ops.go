package blockstore

import (
	"fmt"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// Metadata operations validate everything first, then change memory and a
// batch together, then commit the batch with fsync. If that commit fails the
// disk is failing; the store refuses further work (s.failed) and a restart
// reloads the last committed state, which the batch kept atomic.

// CreateRequest describes a new empty volume.
type CreateRequest struct {
	ID       string
	Pool     string
	Size     uint64 // rounded up to SizeAlign
	ReadOnly bool
	Attrs    []byte
}

// SnapshotRequest asks for a snapshot ID of volume Source.
type SnapshotRequest struct {
	Source, ID string
	Attrs      []byte
}

// CloneRequest asks for a writable volume ID sharing Source's blocks.
type CloneRequest struct {
	Source, ID string
	Pool       string // empty: Source's pool
	// Size, if larger than Source's, grows the clone in the same commit
	// (rounded up to SizeAlign); smaller is refused.
	Size  uint64
	Attrs []byte
}

func checkID(id string) error {
	if id == "" || len(id) > 255 {
		return fmt.Errorf("%w: volume ID must be 1 to 255 bytes, got %d", ErrInvalid, len(id))
	}
	return nil
}

// lookup returns the volume. REQUIRES: s.mu held.
func (s *Store) lookup(op, id string) (*volume, error) {
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("blockstore: %s %s: %w", op, id, err)
	}
	v := s.volumes[id]
	if v == nil {
		return nil, fmt.Errorf("blockstore: %s %s: %w", op, id, ErrNotFound)
	}
	return v, nil
}

// usable reports why the store can take no more work. REQUIRES: s.mu held.
func (s *Store) usable() error {
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("store failed earlier, restart to recover: %w", s.failed)
	}
	return nil
}

// commitMeta commits a metadata batch durably. REQUIRES: s.mu held.
func (s *Store) commitMeta(b *pebble.Batch) error {
	// A snapshot or clone holds every write acknowledged before it,
	// durably: their segment data first.
	err := s.segs.sync()
	if err == nil {
		err = commit(b, true)
	} else {
		b.Close()
	}
	if err != nil {
		s.failed = err
		s.opts.Logf("blockstore: metadata commit failed, refusing further changes until restart: %v", err)
		return err
	}
	return nil
}

// Create makes an empty thin volume.
func (s *Store) Create(req CreateRequest) (VolumeInfo, error) {
	if err := checkID(req.ID); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: create: %w", err)
	}
	size, ok := roundSize(req.Size)
	if !ok {
		return VolumeInfo{}, fmt.Errorf("blockstore: create %s: %w: size %d exceeds %d", req.ID, ErrInvalid, req.Size, uint64(MaxSize))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: create %s: %w", req.ID, err)
	}
	if s.volumes[req.ID] != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: create %s: %w", req.ID, ErrExists)
	}
	if err := s.space.check("create", req.ID); err != nil {
		return VolumeInfo{}, err
	}
	lin := newLineage(lineageRecord{ID: s.nextLineage, Head: 1, NextEpoch: 1}, nil)
	vol := newVolume(volumeRecord{
		ID: req.ID, Pool: req.Pool, Kind: KindLive, Lineage: lin.rec.ID, Size: size,
		ReadOnly: req.ReadOnly, Created: s.opts.Now().UTC(), Attrs: req.Attrs,
	}, lin)
	b := s.db.NewBatch()
	putJSON(b, lineageKey(lin.rec.ID), lin.rec)
	putJSON(b, volumeKey(req.ID), vol.rec)
	putNextLineage(b, s.nextLineage+1)
	if err := s.commitMeta(b); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: create %s: %w", req.ID, err)
	}
	s.nextLineage++
	lin.live = vol
	s.lineages[lin.rec.ID] = lin
	s.volumes[req.ID] = vol
	return vol.info(), nil
}

// Snapshot freezes one or more volumes at one point in time, atomically:
// each snapshot includes every write acknowledged before the call and none
// that starts after it returns. Cost is O(1) in the data each volume holds.
func (s *Store) Snapshot(reqs ...SnapshotRequest) ([]VolumeInfo, error) {
	if len(reqs) == 0 {
		return nil, fmt.Errorf("blockstore: snapshot: %w: no volumes", ErrInvalid)
	}
	out, err := s.Apply(Change{Snapshots: reqs})
	return out.Snapshots, err
}

func containsLineage(ls []*lineage, l *lineage) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

// sealHead freezes the head generation of a live lineage into the batch:
// the live interval becomes a sealed one, its markers go, head moves on.
// REQUIRES: s.mu and lin.mu (write) held, so no write is in flight.
func (s *Store) sealHead(b *pebble.Batch, lin *lineage) (uint64, *roaring.Bitmap) {
	frozen := lin.rec.Head
	lin.liveMu.Lock()
	bm := lin.liveBM.Clone()
	lin.liveMu.Unlock()
	bm.RunOptimize()
	buf, err := bm.ToBytes()
	if err != nil {
		panic(err) // serialising an in-memory bitmap cannot fail
	}
	_ = b.Set(intervalKey(lin.rec.ID, frozen), buf, nil)
	lo, hi := lineageSpan(tagMarker, lin.rec.ID)
	_ = b.DeleteRange(lo, hi, nil)
	// Blocks whose orphaned versions the head overwrote are only noted in
	// memory; once sealed, a restart could not find them again (the new pin
	// ends the orphan range), so they become a persisted job.
	lin.liveMu.Lock()
	if !lin.pending.IsEmpty() {
		s.addJob(b, gcJob{lin: lin.rec.ID, lo: frozen, blocks: lin.pending})
		lin.pending = roaring.New()
	}
	lin.liveMu.Unlock()
	rec := lin.rec
	rec.Head++
	putJSON(b, lineageKey(lin.rec.ID), rec)
	return frozen, bm
}

// afterSeal applies a committed sealHead to memory. A new pin now sits at
// the frozen generation, above every older version, so nothing is orphaned.
// REQUIRES: s.mu and lin.mu (write) held.
func (s *Store) afterSeal(lin *lineage, frozen uint64, bm *roaring.Bitmap) {
	lin.rec.Head = frozen + 1
	if err := lin.intervals.Seal(frozen, bm); err != nil {
		panic(err) // head only grows
	}
	lin.liveMu.Lock()
	lin.liveBM = roaring.New()
	lin.liveMu.Unlock()
	lin.orphan = nil
	lin.shared = true // the caller pins frozen
	lin.pinChanges++
}

// Clone makes a writable volume that shares every block of Source and
// copies none. A clone of a live volume freezes its head first (like a
// snapshot nobody sees). Clones start with CBT off (XenAPI).
func (s *Store) Clone(req CloneRequest) (VolumeInfo, error) {
	out, err := s.Apply(Change{Clones: []CloneRequest{req}})
	if err != nil {
		return VolumeInfo{}, err
	}
	return out.Clones[0], nil
}

// Destroy removes a volume. Blocks nobody else can see are reclaimed by
// the collector in the background, in O(blocks changed around it).
func (s *Store) Destroy(id string) error {
	_, err := s.Apply(Change{Destroys: []string{id}})
	return err
}

// unpin records in the batch (and memory) what follows once a pin of lin at
// gen is gone: dropping the lineage, its data, or scheduling GC of the
// versions only that pin saw, then compacting the interval history.
// gen is cbt.Head when the live volume went; dataGone is true when no data
// pin at gen remains. REQUIRES: s.mu held.
func (s *Store) unpin(b *pebble.Batch, lin *lineage, gen uint64, dataGone bool) {
	switch {
	case lin.unused():
		s.dropLineageInBatch(b, lin)
		return
	case lin.live == nil && len(lin.dataPins) == 0:
		// Only CBT metadata is left: every data version is garbage.
		s.fenceTiles(lin)
		for _, tag := range []byte{tagData, tagTile, tagMarker, tagGC} {
			lo, hi := lineageSpan(tag, lin.rec.ID)
			_ = b.DeleteRange(lo, hi, nil)
		}
		s.dropJobs(lin.rec.ID)
		lin.changes.Add(1)
	case gen == cbt.Head:
		// Versions above the newest remaining pin were only the head's.
		pins := lin.sortedDataPins()
		s.addJob(b, gcJob{lin: lin.rec.ID, lo: pins[len(pins)-1], hi: cbt.Head})
	case dataGone:
		// Versions seen by gen and overwritten before the next pin are dead.
		pins := lin.sortedDataPins()
		lo, hi := gen, nextPin(pins, gen)
		if hi == cbt.Head && lin.live == nil {
			// gen was the newest reader and no head reads above it, so
			// everything written after the newest remaining pin is dead.
			lo = pins[len(pins)-1]
		}
		s.addJob(b, gcJob{lin: lin.rec.ID, lo: lo, hi: hi})
	}
	plan := lin.intervals.Compact(lin.allPins())
	for _, end := range plan.Drop {
		_ = b.Delete(intervalKey(lin.rec.ID, end), nil)
	}
	for _, iv := range plan.Put {
		buf, err := iv.Blocks.ToBytes()
		if err != nil {
			panic(err)
		}
		_ = b.Set(intervalKey(lin.rec.ID, iv.End), buf, nil)
	}
	lin.intervals.Apply(plan)
	lin.refreshWriteState()
}

// nextPin returns the smallest pin above gen, or cbt.Head.
func nextPin(pins []uint64, gen uint64) uint64 {
	i := sort.Search(len(pins), func(i int) bool { return pins[i] > gen })
	if i == len(pins) {
		return cbt.Head
	}
	return pins[i]
}

// dropLineageInBatch deletes every key of an unused lineage and releases its
// pin on the parent. REQUIRES: s.mu held.
func (s *Store) dropLineageInBatch(b *pebble.Batch, lin *lineage) {
	s.fenceTiles(lin)
	for _, tag := range []byte{tagData, tagTile, tagMarker, tagInterval, tagGC} {
		lo, hi := lineageSpan(tag, lin.rec.ID)
		_ = b.DeleteRange(lo, hi, nil)
	}
	_ = b.Delete(lineageKey(lin.rec.ID), nil)
	delete(s.lineages, lin.rec.ID)
	s.dropJobs(lin.rec.ID)
	if p := lin.parent; p != nil {
		s.unpin(b, p, lin.rec.ParentGen, dropPin(p.dataPins, lin.rec.ParentGen))
	}
}

// dropLineage finishes a drop a crash interrupted (called by load).
func (s *Store) dropLineage(lin *lineage) error {
	b := s.db.NewBatch()
	s.dropLineageInBatch(b, lin)
	return commit(b, true)
}

// Resize grows a live volume. Shrinking is refused (XenAPI VDI_TOO_SMALL).
func (s *Store) Resize(id string, size uint64) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("resize", id)
	if err != nil {
		return VolumeInfo{}, err
	}
	if err := v.checkWritableMeta("resize"); err != nil {
		return VolumeInfo{}, err
	}
	rounded, ok := roundSize(size)
	if !ok {
		return VolumeInfo{}, fmt.Errorf("blockstore: resize %s: %w: size %d exceeds %d", id, ErrInvalid, size, uint64(MaxSize))
	}
	if rounded < v.rec.Size {
		return VolumeInfo{}, fmt.Errorf("blockstore: resize %s to %d: %w below %d", id, size, ErrShrink, v.rec.Size)
	}
	if rounded == v.rec.Size {
		return v.info(), nil
	}
	rec := v.rec
	rec.Size = rounded
	if err := s.putVolume(v, rec); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: resize %s: %w", id, err)
	}
	return v.info(), nil
}

// checkWritableMeta refuses metadata changes that only a live, writable
// volume allows.
func (v *volume) checkWritableMeta(op string) error {
	switch {
	case v.rec.Kind == KindCBTMetadata:
		return fmt.Errorf("blockstore: %s %s: %w", op, v.rec.ID, ErrCBTMetadata)
	case v.rec.Kind == KindSnapshot:
		return fmt.Errorf("blockstore: %s %s: %w", op, v.rec.ID, ErrIsSnapshot)
	case v.rec.ReadOnly:
		return fmt.Errorf("blockstore: %s %s: %w", op, v.rec.ID, ErrReadOnly)
	}
	return nil
}

// putVolume durably replaces a volume's record. REQUIRES: s.mu held.
func (s *Store) putVolume(v *volume, rec volumeRecord) error {
	b := s.db.NewBatch()
	putJSON(b, volumeKey(rec.ID), rec)
	if err := s.commitMeta(b); err != nil {
		return err
	}
	v.rec = rec
	v.size.Store(rec.Size)
	v.readOnly.Store(rec.ReadOnly || rec.Kind != KindLive)
	return nil
}

// SetAttrs replaces the caller's opaque record fields.
func (s *Store) SetAttrs(id string, attrs []byte) (VolumeInfo, error) {
	out, err := s.Apply(Change{Attrs: []AttrsRequest{{ID: id, Attrs: attrs}}})
	if err != nil {
		return VolumeInfo{}, err
	}
	return out.Attrs[0], nil
}

// SetReadOnly sets the read-only flag of a live volume.
func (s *Store) SetReadOnly(id string, ro bool) (VolumeInfo, error) {
	return s.update("set read-only", id, func(r *volumeRecord) error {
		if r.Kind != KindLive {
			return ErrIsSnapshot
		}
		r.ReadOnly = ro
		return nil
	})
}

// SetPool moves a volume to another pool (accounting only: one database).
func (s *Store) SetPool(id, pool string) (VolumeInfo, error) {
	return s.update("set pool", id, func(r *volumeRecord) error {
		r.Pool = pool
		return nil
	})
}

func (s *Store) update(op, id string, change func(*volumeRecord) error) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup(op, id)
	if err != nil {
		return VolumeInfo{}, err
	}
	rec := v.rec
	if err := change(&rec); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: %s %s: %w", op, id, err)
	}
	if err := s.putVolume(v, rec); err != nil {
		return VolumeInfo{}, fmt.Errorf("blockstore: %s %s: %w", op, id, err)
	}
	return v.info(), nil
}

// Volume returns one volume's description.
func (s *Store) Volume(id string) (VolumeInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("get", id)
	if err != nil {
		return VolumeInfo{}, err
	}
	return v.info(), nil
}

// Volumes returns every volume, ordered by ID.
func (s *Store) Volumes() []VolumeInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VolumeInfo, 0, len(s.volumes))
	for _, v := range s.volumes {
		out = append(out, v.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
