package blockstore

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// A Change is several volume changes made at one point in time and committed
// in one durable batch: after a crash, all of them are there or none is.
// Every snapshot and every clone of a live volume in it freezes its source
// at the same instant, so a Change over several volumes is a consistent
// (crash-consistent) image of all of them, as a consistency group needs.
//
// Records are opaque key/value pairs kept beside the volumes and committed
// with them, so a caller can keep an object that spans volumes (a Cinder
// consistency group, its group snapshots) exactly in step with them.
type Change struct {
	Snapshots []SnapshotRequest
	Clones    []CloneRequest
	Attrs     []AttrsRequest // replace volumes' opaque fields
	Destroys  []string       // volume IDs; none may be attached
	Records   []Record       // a nil Value deletes the record
}

// AttrsRequest replaces one volume's opaque fields.
type AttrsRequest struct {
	ID    string
	Attrs []byte
}

// Record is one opaque record kept with the volumes.
type Record struct {
	Key   string
	Value []byte // nil: delete
}

// Changed is what a Change made, in the order it asked.
type Changed struct {
	Snapshots []VolumeInfo
	Clones    []VolumeInfo
	Attrs     []VolumeInfo
}

// maxRecordKey bounds a record key.
const maxRecordKey = 1024

// Apply makes every change of c or none: everything is checked first, then
// the batch is built and committed with fsync. Each snapshot and clone
// includes every write acknowledged before the call and none that starts
// after it returns. A volume may appear in one role only (a source may not
// also be destroyed or re-attributed), and a new ID only once.
func (s *Store) Apply(c Change) (Changed, error) {
	if len(c.Snapshots)+len(c.Clones)+len(c.Attrs)+len(c.Destroys)+len(c.Records) == 0 {
		return Changed{}, fmt.Errorf("blockstore: change: %w: nothing to do", ErrInvalid)
	}
	if len(c.Destroys) > 0 && len(c.Snapshots)+len(c.Clones) > 0 {
		// A destroy plans its garbage against the pins it leaves, and a
		// freeze adds one only after the commit: kept apart, neither
		// plan has to know of the other.
		return Changed{}, fmt.Errorf("blockstore: change: %w: destroys cannot share a change with snapshots or clones", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.prepare(c)
	if err != nil {
		return Changed{}, err
	}
	if len(c.Snapshots)+len(c.Clones) > 0 {
		// A snapshot keeps the versions later writes replace; a clone
		// will write.
		if err := s.space.check(p.op, p.firstSource); err != nil {
			return Changed{}, err
		}
	}
	// Lock in ID order; writers hold at most one lineage lock at a time.
	for _, lin := range p.seal {
		lin.mu.Lock()
		defer lin.mu.Unlock()
	}
	b := s.db.NewBatch()
	frozen := map[*lineage]uint64{}
	sealed := map[*lineage]*roaring.Bitmap{}
	for _, lin := range p.seal {
		frozen[lin], sealed[lin] = s.sealHead(b, lin)
	}
	genOf := func(src *volume) uint64 {
		if src.rec.Kind == KindLive {
			return frozen[src.lin]
		}
		return src.rec.Gen
	}
	now := s.opts.Now().UTC()
	snaps := make([]*volume, len(c.Snapshots))
	for i, r := range c.Snapshots {
		src := p.snapSources[i]
		rec := volumeRecord{
			ID: r.ID, Pool: src.rec.Pool, Kind: KindSnapshot, Lineage: src.lin.rec.ID, Gen: genOf(src),
			Size: src.rec.Size, ReadOnly: true, SnapshotOf: src.rec.ID, Created: now,
			CBTEnabled: src.rec.CBTEnabled, CBTEpoch: src.rec.CBTEpoch, Attrs: r.Attrs,
		}
		putJSON(b, volumeKey(r.ID), rec)
		snaps[i] = newVolume(rec, src.lin)
	}
	clones := make([]*volume, len(c.Clones))
	next := s.nextLineage
	for i, r := range c.Clones {
		src := p.cloneSources[i]
		pool := r.Pool
		if pool == "" {
			pool = src.rec.Pool
		}
		lin := newLineage(lineageRecord{
			ID: next, Parent: src.lin.rec.ID, ParentGen: genOf(src), Head: 1, NextEpoch: 1,
		}, src.lin)
		next++
		vol := newVolume(volumeRecord{
			ID: r.ID, Pool: pool, Kind: KindLive, Lineage: lin.rec.ID, Size: p.cloneSizes[i],
			CloneOf: src.rec.ID, Created: now, Attrs: r.Attrs,
		}, lin)
		putJSON(b, lineageKey(lin.rec.ID), lin.rec)
		putJSON(b, volumeKey(r.ID), vol.rec)
		clones[i] = vol
	}
	if next != s.nextLineage {
		putNextLineage(b, next)
	}
	attrs := make([]volumeRecord, len(c.Attrs))
	for i, r := range c.Attrs {
		rec := p.attrTargets[i].rec
		rec.Attrs = append([]byte(nil), r.Attrs...)
		putJSON(b, volumeKey(r.ID), rec)
		attrs[i] = rec
	}
	for _, r := range c.Records {
		if r.Value == nil {
			_ = b.Delete(recordKey(r.Key), nil)
		} else {
			_ = b.Set(recordKey(r.Key), r.Value, nil)
		}
	}
	// Destroys change memory as they go (unpin plans against the pins
	// left); everything was checked above, and a failed commit stops the
	// store until a restart reloads the last committed state.
	for _, v := range p.destroys {
		s.destroyInBatch(b, v)
	}
	err = s.commitMeta(b)
	for _, v := range p.destroys {
		// The lineage's data may be gone (no one can read it now, but its
		// IDs are never reused either way): drop its cached entries.
		s.newest.forgetLineage(v.lin)
	}
	if err != nil {
		return Changed{}, fmt.Errorf("blockstore: %s: %w", p.op, err)
	}
	for _, lin := range p.seal {
		s.afterSeal(lin, frozen[lin], sealed[lin])
	}
	var out Changed
	for _, v := range snaps {
		s.volumes[v.rec.ID] = v
		addPin(v.lin.dataPins, v.rec.Gen)
		out.Snapshots = append(out.Snapshots, v.info())
	}
	s.nextLineage = next
	for _, v := range clones {
		addPin(v.lin.parent.dataPins, v.lin.rec.ParentGen)
		v.lin.live = v
		s.lineages[v.lin.rec.ID] = v.lin
		s.volumes[v.rec.ID] = v
		out.Clones = append(out.Clones, v.info())
	}
	for i, rec := range attrs {
		v := p.attrTargets[i]
		v.rec = rec
		out.Attrs = append(out.Attrs, v.info())
	}
	if len(p.destroys) > 0 {
		s.gc.poke()
	}
	return out, nil
}

// preparedChange is a Change checked against the store.
type preparedChange struct {
	op           string // for messages: the one kind of change, or "change"
	firstSource  string
	snapSources  []*volume
	cloneSources []*volume
	cloneSizes   []uint64
	attrTargets  []*volume
	destroys     []*volume
	seal         []*lineage // live lineages to freeze, by ID
}

// prepare checks c against the store without changing anything.
// REQUIRES: s.mu held.
func (s *Store) prepare(c Change) (*preparedChange, error) {
	p := &preparedChange{op: changeOp(c)}
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("blockstore: %s: %w", p.op, err)
	}
	newIDs := map[string]bool{}
	role := map[string]string{} // existing volume -> the role it plays
	claim := func(op, id, as string) error {
		if prev, ok := role[id]; ok && (prev != as || as != "source") {
			return fmt.Errorf("blockstore: %s %s: %w: named as %s and as %s in one change", op, id, ErrInvalid, prev, as)
		}
		role[id] = as
		return nil
	}
	source := func(op, srcID, newID string) (*volume, error) {
		if err := checkID(newID); err != nil {
			return nil, fmt.Errorf("blockstore: %s %s: %w", op, srcID, err)
		}
		src, err := s.lookup(op, srcID)
		if err != nil {
			return nil, err
		}
		if src.rec.Kind == KindCBTMetadata {
			return nil, fmt.Errorf("blockstore: %s %s: %w", op, srcID, ErrCBTMetadata)
		}
		if s.volumes[newID] != nil || newIDs[newID] {
			return nil, fmt.Errorf("blockstore: %s %s as %s: %w", op, srcID, newID, ErrExists)
		}
		newIDs[newID] = true
		if err := claim(op, srcID, "source"); err != nil {
			return nil, err
		}
		if src.rec.Kind == KindLive && !containsLineage(p.seal, src.lin) {
			p.seal = append(p.seal, src.lin)
		}
		if p.firstSource == "" {
			p.firstSource = srcID
		}
		return src, nil
	}
	for _, r := range c.Snapshots {
		src, err := source("snapshot", r.Source, r.ID)
		if err != nil {
			return nil, err
		}
		p.snapSources = append(p.snapSources, src)
	}
	for _, r := range c.Clones {
		src, err := source("clone", r.Source, r.ID)
		if err != nil {
			return nil, err
		}
		size := src.rec.Size
		if r.Size != 0 {
			rounded, ok := roundSize(r.Size)
			switch {
			case !ok:
				return nil, fmt.Errorf("blockstore: clone %s: %w: size %d exceeds %d", r.Source, ErrInvalid, r.Size, uint64(MaxSize))
			case rounded < size:
				return nil, fmt.Errorf("blockstore: clone %s to %d: %w below %d", r.Source, r.Size, ErrShrink, size)
			}
			size = rounded
		}
		p.cloneSources = append(p.cloneSources, src)
		p.cloneSizes = append(p.cloneSizes, size)
	}
	for _, r := range c.Attrs {
		v, err := s.lookup("set attrs", r.ID)
		if err != nil {
			return nil, err
		}
		if err := claim("set attrs", r.ID, "attributes"); err != nil {
			return nil, err
		}
		p.attrTargets = append(p.attrTargets, v)
	}
	for _, id := range c.Destroys {
		v, err := s.lookup("destroy", id)
		if err != nil {
			return nil, err
		}
		if n := v.attached.Load(); n > 0 {
			return nil, fmt.Errorf("blockstore: destroy %s: %w (%d attached)", id, ErrInUse, n)
		}
		if err := claim("destroy", id, "destroyed"); err != nil {
			return nil, err
		}
		p.destroys = append(p.destroys, v)
	}
	keys := map[string]bool{}
	for _, r := range c.Records {
		if r.Key == "" || len(r.Key) > maxRecordKey || keys[r.Key] {
			return nil, fmt.Errorf("blockstore: record %q: %w: keys are 1 to %d bytes, once per change",
				r.Key, ErrInvalid, maxRecordKey)
		}
		keys[r.Key] = true
	}
	sort.Slice(p.seal, func(i, j int) bool { return p.seal[i].rec.ID < p.seal[j].rec.ID })
	return p, nil
}

// changeOp names a change for messages: its one kind, as the single-volume
// calls always named theirs.
func changeOp(c Change) string {
	kinds := map[string]int{"snapshot": len(c.Snapshots), "clone": len(c.Clones),
		"set attrs": len(c.Attrs), "destroy": len(c.Destroys), "record": len(c.Records)}
	op := ""
	for k, n := range kinds {
		if n > 0 {
			if op != "" {
				return "change"
			}
			op = k
		}
	}
	return op
}

// destroyInBatch removes v from memory and records its removal, and what
// follows from it, in b. REQUIRES: s.mu held.
func (s *Store) destroyInBatch(b *pebble.Batch, v *volume) {
	lin := v.lin
	_ = b.Delete(volumeKey(v.rec.ID), nil)
	delete(s.volumes, v.rec.ID)
	switch v.rec.Kind {
	case KindLive:
		lin.live = nil
		s.unpin(b, lin, cbt.Head, false)
	case KindSnapshot:
		s.unpin(b, lin, v.rec.Gen, dropPin(lin.dataPins, v.rec.Gen))
	case KindCBTMetadata:
		dropPin(lin.cbtPins, v.rec.Gen)
		s.unpin(b, lin, v.rec.Gen, false)
	}
}

// Records calls fn for every record whose key starts with prefix, in key
// order. The value is only valid during the call.
func (s *Store) Records(prefix string, fn func(key string, value []byte) error) error {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("blockstore: records: %w", err)
	}
	s.mu.Unlock()
	lo := recordKey(prefix)
	hi := prefixEnd(lo)
	return s.scanSpan(lo, hi, func(k, v []byte) error {
		return fn(string(k[1:]), v)
	})
}

// prefixEnd is the smallest key above every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
