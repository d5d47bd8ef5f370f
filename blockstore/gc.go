package blockstore

import (
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
// changed in generations (lo, hi] of a lineage.
type gcJob struct {
	lin, lo, hi uint64
}

// addJob records a job in the batch and in memory. REQUIRES: s.mu held.
func (s *Store) addJob(b *pebble.Batch, j gcJob) {
	_ = b.Set(gcKey(j.lin, j.lo, j.hi), nil, nil)
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
		for {
			select {
			case <-w.quit:
				return
			case <-w.wake:
			case <-t.C:
			}
			if err := s.CollectGarbage(); err != nil {
				s.opts.Logf("blockstore: garbage collection: %v", err)
			}
		}
	}()
}

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

// collectBlocks deletes dead versions among the 64 KiB blocks candidates
// picks (called with s.mu held), using the pins as they are now. Pins
// added meanwhile sit at the head, above every version planned dead, so
// planning outside s.mu is safe.
//
// It also prunes the lineage's orphan set: a 64 KiB block left with no
// version between the newest pin and the head holds nothing a later
// overwrite could orphan, so writes there stop scheduling collection.
func (s *Store) collectBlocks(linID uint64, candidates func(*lineage) *roaring.Bitmap) (blocks, deleted int, err error) {
	s.mu.Lock()
	lin := s.lineages[linID]
	if lin == nil || s.usable() != nil {
		s.mu.Unlock()
		return 0, 0, nil
	}
	cand := candidates(lin)
	pins := lin.sortedDataPins()
	floor := uint64(0)
	if len(pins) > 0 {
		floor = pins[len(pins)-1]
	}
	head := lin.rec.Head
	pinChanges := lin.pinChanges
	headPinned := lin.live != nil
	hasParent := lin.parent != nil
	s.mu.Unlock()

	b := s.db.NewBatch()
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	clean := roaring.New() // 64 KiB blocks with no orphan version left
	var vs []version
	var keys [][]byte
	orphaned := false
	flushBlock := func() {
		for i, dead := range deadVersions(vs, pins, headPinned, hasParent) {
			if dead {
				_ = b.Delete(keys[i], nil)
				deleted++
			} else if vs[i].gen > floor && vs[i].gen < head {
				orphaned = true
			}
		}
		vs, keys = vs[:0], keys[:0]
	}
	it := cand.Iterator()
	for it.HasNext() {
		c := uint64(it.Next())
		blocks++
		lo, hi := blockSpan(linID, c<<4, (c+1)<<4)
		iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return blocks, deleted, err
		}
		cur := ^uint64(0)
		orphaned = false
		for iter.First(); iter.Valid(); iter.Next() {
			blk, gen, ok := decodeDataKey(iter.Key(), linID)
			if !ok {
				iter.Close()
				return blocks, deleted, fmt.Errorf("blockstore: gc lineage %d: %w: key %x", linID, ErrCorrupt, iter.Key())
			}
			if blk != cur {
				flushBlock()
				cur = blk
			}
			lv := iter.LazyValue()
			vs = append(vs, version{gen: gen, hole: lv.Len() == 0})
			keys = append(keys, append([]byte(nil), iter.Key()...))
		}
		flushBlock()
		if err := iter.Close(); err != nil {
			return blocks, deleted, err
		}
		if !orphaned {
			clean.Add(uint32(c))
		}
		if b.Count() >= 4096 {
			lin.changes.Add(1)
			if err := commit(b, false); err != nil {
				b = nil
				return blocks, deleted, err
			}
			b = s.db.NewBatch()
		}
	}
	err = commit(b, false)
	b = nil
	lin.changes.Add(1)
	if err != nil {
		return blocks, deleted, err
	}
	s.mu.Lock()
	if s.lineages[linID] == lin && lin.pinChanges == pinChanges && lin.rec.Head == head {
		lin.mu.Lock()
		if lin.orphan != nil {
			lin.orphan.AndNot(clean)
			if lin.orphan.IsEmpty() {
				lin.orphan = nil
			}
		}
		lin.mu.Unlock()
	}
	s.mu.Unlock()
	return blocks, deleted, nil
}
