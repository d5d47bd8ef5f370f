package blockstore

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

// A lineage is one write history: a live volume writing at its head
// generation, the snapshots frozen at earlier generations, and the clones
// whose reads fall through to one of those generations. A snapshot is
// "head++", so it costs O(1) whatever the data size.
type lineage struct {
	rec    lineageRecord
	parent *lineage // reads that miss here continue at (parent, rec.ParentGen)

	// Guarded by Store.mu.
	live      *volume        // nil once the live volume is destroyed
	dataPins  map[uint64]int // generation -> snapshots and clones reading it
	cbtPins   map[uint64]int // generation -> metadata-only snapshots
	intervals cbt.Intervals  // sealed history, for diffs and GC

	// mu orders data writes (read lock, held from reading head to commit)
	// against anything that moves head or the orphan set (write lock), so a
	// snapshot never sees a write land after it returned.
	mu     sync.RWMutex
	orphan *roaring.Bitmap // 64 KiB blocks whose older versions only the head can see; nil if none
	shared bool            // some snapshot or clone reads this lineage (len(dataPins) > 0)
	// pinChanges counts changes of the pin set (guarded by Store.mu); the
	// collector only prunes orphan when it did not change meanwhile.
	pinChanges uint64

	// liveMu guards the live interval: 64 KiB blocks written at head whose
	// markers are committed, and those that overwrote orphaned versions.
	liveMu  sync.Mutex
	liveBM  *roaring.Bitmap
	pending *roaring.Bitmap

	// changes counts committed changes to the lineage's data, so usage
	// counts know when they are stale.
	changes atomic.Uint64
	// cacheEpoch is bumped when a change to many blocks drops the
	// lineage's entries from the newest cache (newest.go).
	cacheEpoch atomic.Uint64
	usageMu    sync.Mutex
	usage      usageCache

	// stripes serialise read-modify-write of partial blocks against every
	// other write of the same block (exclusive for RMW, shared otherwise).
	stripes [stripeCount]sync.RWMutex
	chunks  chunkLocks // a store of tiles: writers of a chunk, one at a time
	// tileFence moves when every tile of the lineage is deleted (fenceTiles).
	tileFence atomic.Uint64
}

const stripeCount = 128

// lineageRecord is what the store persists for a lineage (JSON under 'l').
type lineageRecord struct {
	ID        uint64 `json:"id"`
	Parent    uint64 `json:"parent,omitempty"`
	ParentGen uint64 `json:"parent_gen,omitempty"`
	Head      uint64 `json:"head"`
	NextEpoch uint64 `json:"next_epoch"`
}

func newLineage(rec lineageRecord, parent *lineage) *lineage {
	return &lineage{
		rec: rec, parent: parent,
		dataPins: map[uint64]int{}, cbtPins: map[uint64]int{},
		liveBM: roaring.New(), pending: roaring.New(),
	}
}

// sortedDataPins returns the generations snapshots and clones read, ascending.
func (l *lineage) sortedDataPins() []uint64 {
	out := make([]uint64, 0, len(l.dataPins))
	for g := range l.dataPins {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// allPins returns every generation someone can still ask about.
func (l *lineage) allPins() []uint64 {
	out := l.sortedDataPins()
	for g := range l.cbtPins {
		if l.dataPins[g] == 0 {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// unused reports whether nothing refers to the lineage any more.
func (l *lineage) unused() bool {
	return l.live == nil && len(l.dataPins) == 0 && len(l.cbtPins) == 0
}

// computeOrphan returns the 64 KiB blocks that may hold versions older than
// head that no pin sees: they were written in intervals above the newest
// data pin (snapshots there were deleted). When the head overwrites such a
// block, the older version becomes garbage. REQUIRES: Store.mu held.
func (l *lineage) computeOrphan() *roaring.Bitmap {
	floor := uint64(0)
	if pins := l.sortedDataPins(); len(pins) > 0 {
		floor = pins[len(pins)-1]
	}
	if l.intervals.LastEnd() <= floor {
		return nil
	}
	bm := l.intervals.Union(floor, cbt.Head)
	if bm.IsEmpty() {
		return nil
	}
	return bm
}

// refreshWriteState recomputes what the write path reads from the pins,
// under the write lock. REQUIRES: Store.mu held, l.mu not held.
func (l *lineage) refreshWriteState() {
	o := l.computeOrphan()
	l.pinChanges++
	l.mu.Lock()
	l.orphan = o
	l.shared = len(l.dataPins) > 0
	l.mu.Unlock()
}

func addPin(m map[uint64]int, g uint64) { m[g]++ }

func dropPin(m map[uint64]int, g uint64) (last bool) {
	m[g]--
	if m[g] <= 0 {
		delete(m, g)
		return true
	}
	return false
}
