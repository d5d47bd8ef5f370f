package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// A store of keys per block version (v2), written with block data both in
// pebble and in segments, with snapshots, a clone, trims, zeroes and CBT,
// opens as tiles: every volume and snapshot reads the same, with the same
// extents and changed blocks, no per-block key is left, and the store
// goes on working. An upgrade stopped after its first batch (as a crash
// would stop it) carries on at the next open.
func TestUpgradeToTiles(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopped=%v", stop), func(t *testing.T) {
			e := &env{t: t, mode: modes[4], dir: t.TempDir()} // disk-segments, a key per block version
			e.mode.segments = false                           // first: data in pebble
			e.open()
			t.Cleanup(func() {
				if e.s != nil {
					e.s.Close()
				}
			})
			const size = 24 << 20 // 12 chunks
			e.create("a", size)
			if _, err := e.s.EnableCBT("a"); err != nil {
				t.Fatal(err)
			}
			e.write("a", 0, randomData(3<<20, 1))
			e.snapshot("a", "s1")
			e.reopen()
			e.mode.segments = true // then: data in segments
			e.reopen()
			e.write("a", 1<<20, randomData(5<<20, 2))
			e.write("a", 9<<20+512, randomData(100000, 3))
			d := e.attach("a")
			if err := d.Trim(2<<20, 1<<20, 0); err != nil {
				t.Fatal(err)
			}
			if err := d.Zero(12<<20, 3<<20, NoHole); err != nil {
				t.Fatal(err)
			}
			d.Close()
			e.snapshot("a", "s2")
			if _, err := e.s.Clone(CloneRequest{Source: "s1", ID: "c"}); err != nil {
				t.Fatal(err)
			}
			e.write("c", 20<<20, randomData(2<<20, 4))
			e.write("a", 4096*7, randomData(4096*300, 5))

			ids := []string{"a", "s1", "s2", "c"}
			before := map[string]volumeView{}
			for _, id := range ids {
				before[id] = e.view(id, size)
			}
			changed := e.changed("s1", "s2")

			e.mode.tiles = true
			if stop {
				testHookUpgradeBatch = func(n int) error { return errors.New("stopped") }
				upgradeChunksPerBatch = 2
				t.Cleanup(func() { testHookUpgradeBatch, upgradeChunksPerBatch = nil, 64 })
				if err := e.s.Close(); err != nil {
					t.Fatal(err)
				}
				e.s = nil
				if _, err := Open(e.dir, e.options()); err == nil {
					t.Fatal("open with the upgrade stopped after a batch: no error")
				}
				testHookUpgradeBatch = nil
				e.open()
			} else {
				e.reopen()
			}
			if !e.s.tiles {
				t.Fatal("the store did not become tiles")
			}
			mo := &model{t: t, e: e}
			if n := mo.countSpan(tagSpan(tagData)); n != 0 {
				t.Fatalf("%d per-block keys left after the upgrade", n)
			}
			for _, id := range ids {
				if got := e.view(id, size); !got.equal(before[id]) {
					t.Fatalf("%s after the upgrade: %s, before: %s", id, got, before[id])
				}
			}
			if got := e.changed("s1", "s2"); !slices.Equal(got, changed) {
				t.Fatalf("changed blocks s1..s2 after the upgrade: %v, before %v", got, changed)
			}

			// And on: overwrite, drop a snapshot, collect, reclaim, reopen.
			want := e.read("a", 0, size)
			p := randomData(3<<20, 6)
			e.write("a", 1<<20+4096, p)
			copy(want[1<<20+4096:], p)
			if err := e.s.Destroy("s2"); err != nil {
				t.Fatal(err)
			}
			if err := e.s.CollectGarbage(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.s.ReclaimSegments(1.0); err != nil {
				t.Fatal(err)
			}
			e.reopen()
			if got := e.read("a", 0, size); !bytes.Equal(got, want) {
				t.Fatalf("after writes, GC and reclaim on the upgraded store, a differs at byte %d", firstDiff(got, want))
			}
			if got := e.view("s1", size); !got.equal(before["s1"]) {
				t.Fatalf("s1 after GC and reclaim: %s, before: %s", got, before["s1"])
			}
		})
	}
}

// volumeView is what a reader sees of a volume: its bytes and extents.
type volumeView struct {
	data    []byte
	extents []Extent
}

func (v volumeView) equal(w volumeView) bool {
	return bytes.Equal(v.data, w.data) && slices.Equal(v.extents, w.extents)
}

func (v volumeView) String() string {
	return fmt.Sprintf("%d bytes, %d extents", len(v.data), len(v.extents))
}

func (e *env) view(id string, size uint64) volumeView {
	e.t.Helper()
	v := volumeView{data: e.read(id, 0, int(size))}
	d := e.attach(id)
	defer d.Close()
	if err := d.Extents(0, size, func(x Extent) error {
		v.extents = append(v.extents, x)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return v
}
