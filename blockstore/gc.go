package blockstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// Garbage collection. Pebble has no compaction filter, so dead versions are
// found and deleted explicitly, in O(blocks changed) rather than O(volume):
//
//   - When a pin at g goes (snapshot destroyed, clone dropped), the versions
//     only it saw were overwritten in (g, next pin]: a job (lineage, g, next)
//     is persisted in the same batch and looks only at the 64 KiB blocks the
//     intervals there mark.
//   - When the head overwrites a block whose older version no pin sees (an
//     orphan, left by a destroyed snapshot), the write notes the block in
//     the lineage's pending set.
//
// Deletes are committed without fsync: losing them in a crash only means the
// job, still persisted, runs again.

// gcJob is a persisted piece of work: dead versions may exist among blocks
// changed in generations (lo, hi] of a lineage, or, when blocks is set,
// among those 64 KiB blocks (hi is then 0).
type gcJob struct {
	lin, lo, hi uint64
	blocks      *roaring.Bitmap
}

// addJob records a job in the batch and in memory. REQUIRES: s.mu held.
func (s *Store) addJob(b *pebble.Batch, j gcJob) {
	var val []byte
	if j.blocks != nil {
		var err error
		if val, err = j.blocks.ToBytes(); err != nil {
			panic(err) // serialising an in-memory bitmap cannot fail
		}
	}
	_ = b.Set(gcKey(j.lin, j.lo, j.hi), val, nil)
	s.gcJobs = append(s.gcJobs, j)
}

// dropJobs forgets the jobs of a lineage being dropped. REQUIRES: s.mu held.
func (s *Store) dropJobs(lin uint64) {
	out := s.gcJobs[:0]
	for _, j := range s.gcJobs {
		if j.lin != lin {
			out = append(out, j)
		}
	}
	s.gcJobs = out
}

type gcWorker struct {
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
	mu   sync.Mutex // one collection at a time
}

func (w *gcWorker) start(s *Store) {
	w.wake = make(chan struct{}, 1)
	w.quit = make(chan struct{})
	w.done = make(chan struct{})
	if s.opts.GCInterval < 0 {
		close(w.done)
		return
	}
	go func() {
		defer close(w.done)
		t := time.NewTicker(s.opts.GCInterval)
		defer t.Stop()
		lastReclaim := time.Now()
		var quiet quietFlush
		for {
			tick := false
			select {
			case <-w.quit:
				return
			case <-w.wake:
			case <-t.C:
				tick = true
			}
			if err := s.CollectGarbage(); err != nil {
				s.opts.Logf("blockstore: garbage collection: %v", err)
			}
			if tick { // quiet means a whole interval without writes
				if err := s.flushIfQuiet(&quiet); err != nil {
					s.opts.Logf("%v", err)
				}
			}
			if time.Since(lastReclaim) >= reclaimInterval {
				lastReclaim = time.Now()
				st, err := s.reclaim(reclaimLive, reclaimBatch)
				if err != nil {
					s.opts.Logf("blockstore: segment reclaim: %v", err)
				} else if st.Freed > 0 {
					s.opts.Logf("blockstore: segment reclaim: freed %d segments, moved %d live blocks", st.Freed, st.Moved)
				}
			}
		}
	}()
}

// reclaimInterval spaces the background reclaim passes (reclaim.go).
const reclaimInterval = 30 * time.Second

// poke wakes the collector without blocking.
func (w *gcWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *gcWorker) stop() {
	close(w.quit)
	<-w.done
}

// GCStats reports collector work done by one CollectGarbage call.
type GCStats struct {
	Jobs, Blocks, Deleted int
}

// CollectGarbage runs every pending collection now and returns when done.
// The background collector calls it; tests and operators may too.
func (s *Store) CollectGarbage() error {
	_, err := s.collect()
	return err
}

func (s *Store) collect() (GCStats, error) {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	var st GCStats
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return st, err
	}
	jobs := append([]gcJob(nil), s.gcJobs...)
	type pendingWork struct {
		lin    uint64
		blocks *roaring.Bitmap
	}
	var pend []pendingWork
	for id, lin := range s.lineages {
		lin.liveMu.Lock()
		if !lin.pending.IsEmpty() {
			pend = append(pend, pendingWork{id, lin.pending})
			lin.pending = roaring.New()
		}
		lin.liveMu.Unlock()
	}
	s.mu.Unlock()

	for _, p := range pend {
		n, d, err := s.collectBlocks(p.lin, func(*lineage) *roaring.Bitmap { return p.blocks })
		st.Blocks += n
		st.Deleted += d
		if err != nil {
			return st, err
		}
	}
	for _, j := range jobs {
		n, d, err := s.collectBlocks(j.lin, func(lin *lineage) *roaring.Bitmap {
			if j.blocks != nil {
				return j.blocks
			}
			bm := lin.intervals.Union(j.lo, j.hi)
			if j.hi == cbt.Head {
				lin.liveMu.Lock()
				bm.Or(lin.liveBM)
				lin.liveMu.Unlock()
			}
			return bm
		})
		st.Blocks += n
		st.Deleted += d
		if err != nil {
			return st, err
		}
		if err := s.finishJob(j); err != nil {
			return st, err
		}
		st.Jobs++
	}
	return st, nil
}

func (s *Store) finishJob(j gcJob) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err // the job may not have run: keep it for the next open
	}
	for i, x := range s.gcJobs {
		if x == j {
			s.gcJobs = append(s.gcJobs[:i], s.gcJobs[i+1:]...)
			break
		}
	}
	b := s.db.NewBatch()
	_ = b.Delete(gcKey(j.lin, j.lo, j.hi), nil)
	return commit(b, false)
}

// gcChunk is how many 64 KiB candidate blocks one view covers.
const gcChunk = 256

// gcView is what one chunk of collection is planned against: the pins and
// an iterator opened in the same critical section, so every version it
// shows was written before every pin it does not list.
type gcView struct {
	it         *pebble.Iterator
	pins       []uint64
	floor      uint64 // newest data pin, or 0
	head       uint64
	headPinned bool // a live volume writes at head
	hasParent  bool
	pinChanges uint64
}

// collectBlocks deletes dead versions among the 64 KiB blocks candidates
// picks (called with s.mu held). It works in chunks; each chunk's versions
// and pins come from one moment (see gcView), which is what makes planning
// outside s.mu safe:
//
//   - a pin created later sits at a head at least as new as every version
//     in the view, so it sees none of the versions planned dead (each has a
//     newer version in the view);
//   - writes only create versions at the head, so a version below the head
//     is never rewritten under the collector's feet; versions at the head
//     of a live lineage are never deleted (a write may be re-setting that
//     very key).
//
// It also prunes the lineage's orphan set: a 64 KiB block left with no
// version between the newest pin and the head holds nothing a later
// overwrite could orphan, so writes there stop scheduling collection.
func (s *Store) collectBlocks(linID uint64, candidates func(*lineage) *roaring.Bitmap) (blocks, deleted int, err error) {
	s.mu.Lock()
	if err := s.usable(); err != nil {
		s.mu.Unlock()
		return 0, 0, err
	}
	lin := s.lineages[linID]
	if lin == nil {
		s.mu.Unlock()
		return 0, 0, nil // dropped with all its keys
	}
	all := candidates(lin).ToArray()
	s.mu.Unlock()
	for len(all) > 0 {
		n := min(len(all), gcChunk)
		b, d, err := s.collectChunk(lin, all[:n])
		blocks += b
		deleted += d
		if err != nil {
			return blocks, deleted, err
		}
		all = all[n:]
	}
	return blocks, deleted, nil
}

func (s *Store) openGCView(lin *lineage, first, last uint64) (*gcView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return nil, err
	}
	if s.lineages[lin.rec.ID] != lin {
		return nil, nil // dropped with all its keys: nothing to collect
	}
	lo, hi := blockSpan(lin.rec.ID, first<<4, (last+1)<<4)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	v := &gcView{
		it: it, pins: lin.sortedDataPins(), head: lin.rec.Head,
		headPinned: lin.live != nil, hasParent: lin.parent != nil, pinChanges: lin.pinChanges,
	}
	if len(v.pins) > 0 {
		v.floor = v.pins[len(v.pins)-1]
	}
	return v, nil
}

func (s *Store) collectChunk(lin *lineage, cands []uint32) (blocks, deleted int, err error) {
	if s.tiles {
		return s.collectTiles(lin, cands)
	}
	linID := lin.rec.ID
	view, err := s.openGCView(lin, uint64(cands[0]), uint64(cands[len(cands)-1]))
	if view == nil || err != nil {
		return 0, 0, err
	}
	it := view.it
	defer it.Close()
	b := s.db.NewBatch()
	defer b.Close()
	clean := roaring.New() // 64 KiB blocks with no orphan version left
	var vs []version
	var keys, headHoles [][]byte
	orphaned := false
	flushBlock := func() {
		for i, dead := range deadVersions(vs, view.pins, view.headPinned, view.hasParent) {
			switch {
			case dead && view.headPinned && vs[i].gen >= view.head:
				// Only a redundant hole can be dead at a live head; a write
				// may be re-setting its key, so it is deleted under lock.
				headHoles = append(headHoles, keys[i])
			case dead:
				_ = b.Delete(keys[i], nil)
				deleted++
			case vs[i].gen > view.floor && vs[i].gen < view.head:
				orphaned = true
			}
		}
		vs, keys = vs[:0], keys[:0]
	}
	var seek [dataKeyLen]byte
	for _, c32 := range cands {
		c := uint64(c32)
		blocks++
		orphaned = false
		cur := ^uint64(0)
		for ok := it.SeekGE(dataKey(seek[:0], linID, c<<4, cbt.Head)); ok; ok = it.Next() {
			blk, gen, valid := decodeDataKey(it.Key(), linID)
			if !valid {
				return blocks, deleted, fmt.Errorf("blockstore: gc lineage %d: %w: key %x", linID, ErrCorrupt, it.Key())
			}
			if blk >= (c+1)<<4 {
				break
			}
			if blk != cur {
				flushBlock()
				cur = blk
			}
			lv := it.LazyValue()
			vs = append(vs, version{gen: gen, hole: lv.Len() == 0})
			keys = append(keys, append([]byte(nil), it.Key()...))
		}
		flushBlock()
		if err := it.Error(); err != nil {
			return blocks, deleted, err
		}
		if !orphaned {
			clean.Add(c32)
		}
	}
	if b.Count() > 0 {
		// The versions that replaced these may be pointers whose slots are
		// still in the page cache only; after a power cut they fall back
		// to no key (recover.go) and what is deleted here must not be gone.
		if err := s.segs.sync(); err != nil {
			return blocks, deleted, fmt.Errorf("blockstore: gc lineage %d: %w", linID, err)
		}
	}
	err = b.Commit(pebble.NoSync)
	// Dead versions are never the newest one a layer sees, so no cached
	// entry should name them; drop the lineage's entries all the same.
	s.newest.forgetLineage(lin)
	if err != nil {
		return blocks, deleted, fmt.Errorf("blockstore: gc lineage %d: %w", linID, err)
	}
	lin.changes.Add(1)
	if len(headHoles) > 0 {
		n, err := s.deleteHeadHoles(lin, view.head, headHoles)
		deleted += n
		if err != nil {
			return blocks, deleted, err
		}
	}
	s.pruneOrphans(lin, view.head, view.pinChanges, clean)
	return blocks, deleted, nil
}

// pruneOrphans takes the 64 KiB blocks clean (no version left between the
// newest pin and the head) out of the lineage's orphan set, unless its
// pins or head moved since the collector read them.
func (s *Store) pruneOrphans(lin *lineage, head, pinChanges uint64, clean *roaring.Bitmap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lineages[lin.rec.ID] == lin && lin.pinChanges == pinChanges && lin.rec.Head == head {
		lin.mu.Lock()
		if lin.orphan != nil {
			lin.orphan.AndNot(clean)
			if lin.orphan.IsEmpty() {
				lin.orphan = nil
			}
		}
		lin.mu.Unlock()
	}
}

// deleteHeadHoles deletes redundant discard markers at the head generation
// of a live lineage. It holds what a write holds (the lineage read lock and
// the block's stripe, exclusively here), re-reads each key and deletes it
// only if it is still a hole, all before releasing: a write to the block
// either committed before (the key is data now: kept) or waits until after.
func (s *Store) deleteHeadHoles(lin *lineage, head uint64, keys [][]byte) (int, error) {
	lin.mu.RLock()
	defer lin.mu.RUnlock()
	if lin.rec.Head != head {
		return 0, nil // sealed meanwhile: a later job sees them below the head
	}
	var mode [stripeCount]uint8
	for _, k := range keys {
		blk, _, _ := decodeDataKey(k, lin.rec.ID)
		mode[blk%stripeCount] = stripeExclusive
	}
	defer lin.lockStripeModes(&mode)()
	b := s.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		val, closer, err := s.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("blockstore: gc lineage %d: %w", lin.rec.ID, err)
		}
		hole := len(val) == 0
		closer.Close()
		if hole {
			_ = b.Delete(k, nil)
		}
	}
	n := int(b.Count())
	err := b.Commit(pebble.NoSync)
	s.newest.forgetLineage(lin) // the holes were the newest versions
	if err != nil {
		return 0, fmt.Errorf("blockstore: gc lineage %d: %w", lin.rec.ID, err)
	}
	return n, nil
}
