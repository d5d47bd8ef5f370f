package cbt

import "github.com/RoaringBitmap/roaring/v2"

// NextAbsent returns the first value in [from, limit) not in bm, or limit.
// NB: roaring v2.30.0's NextAbsentValue is wrong once a container is full
// (it answers 65536 for {0..76799}, and 11264 from 65536), so this finds
// the end of the run by binary search on a monotone predicate: "all of
// [from, x) is present". O(log(limit-from)) cardinality queries.
func NextAbsent(bm *roaring.Bitmap, from, limit uint64) uint64 {
	lo, hi := from, limit // [from, lo) all present; the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if bm.CardinalityInRange(from, mid) == mid-from {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// NextPresent returns the first value in [from, limit) in bm, or limit.
func NextPresent(bm *roaring.Bitmap, from, limit uint64) uint64 {
	if from >= limit || from > 1<<32-1 {
		return limit
	}
	v := bm.NextValue(uint32(from))
	if v < 0 || uint64(v) > limit {
		return limit
	}
	return uint64(v)
}

// Runs calls fn for the maximal runs of [first, last) that are all in bm
// (set) or all outside it, in ascending order.
func Runs(bm *roaring.Bitmap, first, last uint64, fn func(lo, hi uint64, set bool) error) error {
	for at := first; at < last; {
		set := at <= 1<<32-1 && bm.Contains(uint32(at))
		var next uint64
		if set {
			next = NextAbsent(bm, at, last)
		} else {
			next = NextPresent(bm, at, last)
		}
		if err := fn(at, next, set); err != nil {
			return err
		}
		at = next
	}
	return nil
}
