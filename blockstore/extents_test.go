package blockstore

import (
	"math/rand"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestNextAbsentAndPresent(t *testing.T) {
	full := roaring.New()
	full.AddRange(0, 76800) // a full first container: roaring's own NextAbsentValue fails here
	if got := nextAbsent(full, 0, 1<<20); got != 76800 {
		t.Fatalf("nextAbsent over a full container = %d, want 76800", got)
	}
	if got := nextAbsent(full, 65536, 1<<20); got != 76800 {
		t.Fatalf("nextAbsent from the second container = %d, want 76800", got)
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 1000; i++ {
		bm := roaring.New()
		for j := 0; j < rng.Intn(6); j++ {
			s := uint64(rng.Intn(300000))
			bm.AddRange(s, s+uint64(rng.Intn(100000)))
		}
		if rng.Intn(2) == 0 {
			bm.RunOptimize()
		}
		from, limit := uint64(rng.Intn(400000)), uint64(400000+rng.Intn(100000))
		wantAbsent, wantPresent := limit, limit
		for x := from; x < limit; x++ {
			if !bm.Contains(uint32(x)) {
				wantAbsent = x
				break
			}
		}
		for x := from; x < limit; x++ {
			if bm.Contains(uint32(x)) {
				wantPresent = x
				break
			}
		}
		if got := nextAbsent(bm, from, limit); got != wantAbsent {
			t.Fatalf("nextAbsent(%d, %d) = %d, want %d", from, limit, got, wantAbsent)
		}
		if got := nextPresent(bm, from, limit); got != wantPresent {
			t.Fatalf("nextPresent(%d, %d) = %d, want %d", from, limit, got, wantPresent)
		}
	}
}
