package blockstore

import "sort"

// version is one stored version of a block, as the collector sees it.
type version struct {
	gen  uint64
	hole bool // a discard marker: reads zero and hides older versions
}

// deadVersions decides which versions of one block nobody can read any
// more. vs is ordered newest first; pins are the generations snapshots and
// clones read, ascending; headPinned says a live volume reads the newest
// version; hasParent says reads that find nothing fall through to a parent
// lineage (so a hole still hides something).
//
// A version written at g and replaced at g' is visible exactly at the
// generations [g, g'); it is dead when no pin falls in that range. Holes at
// the bottom of the surviving versions hide nothing (an absent block reads
// zero too) unless a parent lies below.
//
// Pure: no I/O, so the rules are tested in isolation (plan_test.go).
func deadVersions(vs []version, pins []uint64, headPinned, hasParent bool) []bool {
	dead := make([]bool, len(vs))
	newer := ^uint64(0) // generation of the next newer version; none yet
	for i, v := range vs {
		seen := i == 0 && headPinned
		if !seen {
			j := sort.Search(len(pins), func(j int) bool { return pins[j] >= v.gen })
			seen = j < len(pins) && pins[j] < newer
		}
		dead[i] = !seen
		newer = v.gen
	}
	if !hasParent {
		for i := len(vs) - 1; i >= 0; i-- {
			if dead[i] {
				continue
			}
			if !vs[i].hole {
				break
			}
			dead[i] = true
		}
	}
	return dead
}
