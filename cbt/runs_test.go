package cbt

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

func TestNextAbsentAndPresent(t *testing.T) {
	full := roaring.New()
	full.AddRange(0, 76800) // a full first container: roaring's own NextAbsentValue fails here
	if got := NextAbsent(full, 0, 1<<20); got != 76800 {
		t.Fatalf("nextAbsent over a full container = %d, want 76800", got)
	}
	if got := NextAbsent(full, 65536, 1<<20); got != 76800 {
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
		if got := NextAbsent(bm, from, limit); got != wantAbsent {
			t.Fatalf("NextAbsent(%d, %d) = %d, want %d", from, limit, got, wantAbsent)
		}
		if got := NextPresent(bm, from, limit); got != wantPresent {
			t.Fatalf("NextPresent(%d, %d) = %d, want %d", from, limit, got, wantPresent)
		}
	}
}

func TestRuns(t *testing.T) {
	bm := roaring.New()
	bm.AddRange(3, 5)
	bm.Add(9)
	var got []string
	_ = Runs(bm, 1, 11, func(lo, hi uint64, set bool) error {
		got = append(got, fmt.Sprintf("%d-%d:%v", lo, hi, set))
		return nil
	})
	want := "[1-3:false 3-5:true 5-9:false 9-10:true 10-11:false]"
	if fmt.Sprint(got) != want {
		t.Fatalf("Runs = %v, want %s", got, want)
	}
}
