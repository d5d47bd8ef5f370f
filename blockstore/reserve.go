package blockstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vdiskd/vdiskd/internal/bytesize"
)

// The store refuses new data before its file system fills, rather than let
// pebble meet ENOSPC: pebble treats a failed WAL write as fatal for the
// open database, while a refused NBD write (ENOSPC) or REST call (SR_FULL)
// changes nothing, and writes resume by themselves once space is freed.
// The reserve left free covers what acknowledged writes will still take:
// memtables not yet flushed (up to four of MemTableSize) and compactions.

// NoSpaceError is returned for a write or a growing metadata change refused
// because the file system holding the store has less than the reserve
// free. It unwraps to syscall.ENOSPC, which NBD and REST map (ENOSPC,
// XenAPI SR_FULL).
type NoSpaceError struct {
	Op, ID  string
	Free    uint64 // bytes free, as last seen, less writes admitted since
	Reserve uint64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("blockstore: %s %s: no space left: %s free on the store's file system, below the %s reserve",
		e.Op, e.ID, bytesize.Format(int64(e.Free)), bytesize.Format(int64(e.Reserve)))
}

func (e *NoSpaceError) Unwrap() error { return syscall.ENOSPC }

// spaceAmplification is what one byte admitted costs on disk before the
// next look at the file system: the WAL now and the memtable flush later.
const spaceAmplification = 2

// How often the guard asks the file system: at most once per lookEvery
// while far from the reserve, at most once per lookNearEvery within twice
// the reserve, where a stale figure would let a burst through.
const (
	lookEvery     = time.Second
	lookNearEvery = 10 * time.Millisecond
)

// spaceGuard admits writes while the file system keeps the reserve free.
// The fast path is two atomic loads; the file system is asked again only
// when the last answer is old or the margin is thin.
type spaceGuard struct {
	free    func() (uint64, error) // bytes available to the store
	reserve uint64
	now     func() time.Time
	logf    func(format string, args ...any)

	avail    atomic.Int64 // bytes free at the last look
	admitted atomic.Int64 // bytes admitted since, times spaceAmplification
	lookedAt atomic.Int64 // unix nanoseconds of the last look; 0: look now

	full atomic.Bool // refusing, until free space is back above the reserve and a quarter

	mu sync.Mutex // one look at a time
}

// newSpaceGuard returns nil (admit everything) when free is nil.
func newSpaceGuard(free func() (uint64, error), reserve uint64, now func() time.Time, logf func(string, ...any)) *spaceGuard {
	if free == nil {
		return nil
	}
	g := &spaceGuard{free: free, reserve: reserve, now: now, logf: logf}
	g.look(0)
	return g
}

// statfsFree reports the bytes an unprivileged writer may still use in
// dir's file system.
func statfsFree(dir string) func() (uint64, error) {
	return func() (uint64, error) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			return 0, fmt.Errorf("statfs %s: %w", dir, err)
		}
		return st.Bavail * uint64(st.Bsize), nil
	}
}

// admit accounts for n bytes about to be written, or refuses them.
// Concurrent admissions may pass the check together: the reserve absorbs
// what a few in-flight requests add. Once it refused, the guard stays full
// until a quarter of the reserve more is free, so writes and REST calls
// near the line do not flap between taken and refused.
func (g *spaceGuard) admit(op, id string, n uint64) error {
	if g == nil {
		return nil
	}
	cost := int64(n) * spaceAmplification
	need := int64(g.reserve)
	if g.full.Load() {
		need += int64(g.reserve / 4)
	}
	left := g.avail.Load() - g.admitted.Load() - cost
	if left < need+int64(g.reserve) || g.now().UnixNano()-g.lookedAt.Load() >= int64(lookEvery) {
		left = g.look(lookNearEvery) - g.admitted.Load() - cost
	}
	if left < need {
		g.setFull(true, left+cost)
		return &NoSpaceError{Op: op, ID: id, Free: uint64(max(left+cost, 0)), Reserve: g.reserve}
	}
	g.setFull(false, left+cost)
	g.admitted.Add(cost)
	return nil
}

// setFull records whether the guard refuses, logging each change.
func (g *spaceGuard) setFull(full bool, free int64) {
	if g.full.Load() == full || !g.full.CompareAndSwap(!full, full) {
		return
	}
	if full {
		g.logf("blockstore: %s free, below the %s reserve: refusing new data until space is freed",
			bytesize.Format(max(free, 0)), bytesize.Format(int64(g.reserve)))
	} else {
		g.logf("blockstore: %s free: taking new data again", bytesize.Format(free))
	}
}

// check refuses a growing metadata change (create, snapshot, clone, grow)
// when below the reserve, without accounting for any bytes.
func (g *spaceGuard) check(op, id string) error {
	return g.admit(op, id, 0)
}

// look asks the file system unless someone did within minAge, and returns
// the bytes free. Admissions counted before the statfs call are taken to be
// in its answer; those that race with it stay counted (the safe side).
func (g *spaceGuard) look(minAge time.Duration) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now().UnixNano()
	if minAge > 0 && now-g.lookedAt.Load() < int64(minAge) {
		return g.avail.Load()
	}
	before := g.admitted.Load()
	free, err := g.free()
	if err != nil {
		// Keep the last figure: a failing statfs should not stop writes
		// the file system itself would take.
		g.logf("blockstore: cannot read free space: %v", err)
		g.lookedAt.Store(now)
		return g.avail.Load()
	}
	g.admitted.Add(-before)
	g.avail.Store(int64(free))
	g.lookedAt.Store(now)
	return int64(free)
}

// diskFull is pebble's ENOSPC callback (vfs.OnDiskFull): the reserve was
// not enough, so look again before the next write.
func (g *spaceGuard) diskFull() {
	if g == nil {
		return
	}
	g.lookedAt.Store(0)
	g.logf("blockstore: the file system returned ENOSPC to pebble despite the reserve")
}

// FreeSpace reports the bytes free on the store's file system at the last
// look, less writes admitted since, and the reserve kept; ok is false when
// the store does not watch free space (an in-memory file system).
func (s *Store) FreeSpace() (free, reserve uint64, ok bool) {
	g := s.space
	if g == nil {
		return 0, 0, false
	}
	return uint64(max(g.avail.Load()-g.admitted.Load(), 0)), g.reserve, true
}
