package cbt

import (
	"errors"
	"testing"
)

func TestCheckChain(t *testing.T) {
	snap := func(id string, gen uint64) Point {
		return Point{ID: id, Lineage: 1, Gen: gen, Enabled: true, Epoch: 1}
	}
	live := Point{ID: "live", Lineage: 1, Gen: Head, Enabled: true, Epoch: 1}
	for _, tc := range []struct {
		name     string
		from, to Point
		ok       bool
	}{
		{"snapshot to snapshot", snap("a", 1), snap("b", 3), true},
		{"snapshot to live", snap("a", 1), live, true},
		{"same VDI", snap("a", 1), snap("a", 1), false},
		{"wrong order", snap("b", 3), snap("a", 1), false},
		{"live as from", live, snap("a", 1), false},
		{"same generation", snap("a", 2), snap("b", 2), false},
		{"from without CBT", Point{ID: "a", Lineage: 1, Gen: 1}, live, false},
		{"to without CBT", snap("a", 1), Point{ID: "live", Lineage: 1, Gen: Head}, false},
		{"unrelated", snap("a", 1), Point{ID: "x", Lineage: 2, Gen: 5, Enabled: true, Epoch: 1}, false},
		{"disabled in between", snap("a", 1), Point{ID: "b", Lineage: 1, Gen: 4, Enabled: true, Epoch: 2}, false},
	} {
		err := CheckChain(tc.from, tc.to)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrChain) {
			t.Errorf("%s: err = %v, want ErrChain", tc.name, err)
		}
	}
}
