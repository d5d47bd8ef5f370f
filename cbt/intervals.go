package cbt

import (
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
)

// Interval is the set of 64 KiB blocks written in generations (Start, End]
// of one lineage. Start is implicit: the End of the interval before it, or 0.
type Interval struct {
	End    uint64
	Blocks *roaring.Bitmap
}

// Intervals is the sealed history of one lineage, ordered by End. Every End
// is a generation at which a snapshot or clone was once taken (a pin), so a
// diff between two pins is always a union of whole intervals.
//
// NB: Intervals is not safe for concurrent use; the store guards it.
type Intervals struct {
	list []Interval
}

// Len returns the number of sealed intervals.
func (s *Intervals) Len() int { return len(s.list) }

// All returns the intervals, oldest first. The caller must not modify them.
func (s *Intervals) All() []Interval { return s.list }

// LastEnd returns the End of the newest interval, or 0.
func (s *Intervals) LastEnd() uint64 {
	if len(s.list) == 0 {
		return 0
	}
	return s.list[len(s.list)-1].End
}

// Seal appends the interval ending at end. It must be newer than every
// interval already sealed.
func (s *Intervals) Seal(end uint64, blocks *roaring.Bitmap) error {
	if end <= s.LastEnd() && len(s.list) > 0 {
		return fmt.Errorf("cbt: seal interval ending at %d after one ending at %d", end, s.LastEnd())
	}
	s.list = append(s.list, Interval{End: end, Blocks: blocks})
	return nil
}

// Union returns the blocks written in generations (lo, hi]: the union of
// every interval that overlaps that range. When lo and hi are pins the
// answer is exact; otherwise it may include more, never less.
func (s *Intervals) Union(lo, hi uint64) *roaring.Bitmap {
	var parts []*roaring.Bitmap
	start := uint64(0)
	for _, iv := range s.list {
		if start < hi && iv.End > lo {
			parts = append(parts, iv.Blocks)
		}
		start = iv.End
	}
	switch len(parts) {
	case 0:
		return roaring.New()
	case 1:
		return parts[0].Clone()
	}
	return roaring.FastOr(parts...)
}

// Plan is the change Compact asks for: delete the intervals ending at Drop
// and store Put (which replace some of them). Apply both or neither.
type Plan struct {
	Drop []uint64
	Put  []Interval
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Drop) == 0 && len(p.Put) == 0 }

// Compact plans how to shrink the history once the set of pins changed.
// pins are every generation someone can still ask about (snapshots, clones'
// parents, metadata-only CBT snapshots), in any order.
//
// Neighbours whose shared boundary is no longer a pin merge into one, so a
// diff between the remaining pins is still a union of whole intervals and a
// deleted middle snapshot's blocks carry into the next (XenAPI's coalesce on
// VDI.destroy). Nothing is dropped: below the oldest pin everything merges
// into one interval, which still says where versions older than the head
// may exist. The store's collector needs that once those pins are gone and
// the head overwrites such a block. So the history costs at most one
// interval per pin plus one, each at most one bit per 64 KiB block.
//
// Compact does not modify s; call Apply with the returned plan.
func (s *Intervals) Compact(pins []uint64) Plan {
	pinned := make(map[uint64]bool, len(pins))
	for _, p := range pins {
		pinned[p] = true
	}
	var plan Plan
	var run []Interval // consecutive intervals to merge into one
	flush := func() {
		if len(run) > 1 {
			bms := make([]*roaring.Bitmap, len(run))
			for i, iv := range run {
				bms[i] = iv.Blocks
				plan.Drop = append(plan.Drop, iv.End)
			}
			merged := roaring.FastOr(bms...)
			merged.RunOptimize()
			plan.Put = append(plan.Put, Interval{End: run[len(run)-1].End, Blocks: merged})
		}
		run = run[:0]
	}
	for _, iv := range s.list {
		run = append(run, iv)
		if pinned[iv.End] {
			flush()
		}
	}
	flush()
	return plan
}

// Apply carries out a plan made by Compact on the same intervals.
func (s *Intervals) Apply(p Plan) {
	if p.Empty() {
		return
	}
	drop := make(map[uint64]bool, len(p.Drop))
	for _, e := range p.Drop {
		drop[e] = true
	}
	out := s.list[:0]
	for _, iv := range s.list {
		if !drop[iv.End] {
			out = append(out, iv)
		}
	}
	out = append(out, p.Put...)
	slices.SortFunc(out, func(a, b Interval) int {
		switch {
		case a.End < b.End:
			return -1
		case a.End > b.End:
			return 1
		}
		return 0
	})
	s.list = out
}
