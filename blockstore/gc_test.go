package blockstore

import (
	"bytes"
	"testing"
	"time"
)

// usage returns the measured bytes of a volume.
func (e *env) usage(id string) uint64 {
	e.t.Helper()
	e.advance(time.Minute) // past the usage cache's age
	n, err := e.s.PhysicalUtilisation(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func randomData(n int, seed int64) []byte {
	p := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8; j++ {
			p[i+j] = byte(x >> (8 * j))
		}
	}
	return p
}

// Destroying a snapshot whose blocks were all overwritten frees them: the
// measured space falls from two copies to one, and destroying the volume
// frees the rest.
func TestGCReclaimsSnapshotSpace(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		const size = 16 << 20
		e.create("a", mib(32))
		e.write("a", 0, randomData(size, 1))
		one := e.usage("a")
		if one != size {
			t.Fatalf("16 MiB of data measures %d bytes", one)
		}
		e.snapshot("a", "s")
		e.write("a", 0, randomData(size, 2))
		two := e.usage("a")
		if two != 2*size {
			t.Fatalf("with a snapshot holding the old data: %d bytes, want about %d", two, 2*size)
		}
		if got, _ := e.s.PhysicalUtilisation("s"); got != 0 {
			t.Fatalf("snapshot reports %d bytes; its space is counted on its live volume", got)
		}
		if err := e.s.Destroy("s"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		after := e.usage("a")
		if after != size {
			t.Fatalf("after destroying the snapshot: %d bytes, want about %d (before: %d)", after, one, two)
		}
		pool, err := e.s.PoolUsage("local")
		if err != nil || pool != after {
			t.Fatalf("pool usage %d (%v), want %d", pool, err, after)
		}
		if got := e.read("a", 0, size); !bytes.Equal(got, randomData(size, 2)) {
			t.Fatal("collection damaged live data")
		}
		if err := e.s.Destroy("a"); err != nil {
			t.Fatal(err)
		}
		if pool, _ := e.s.PoolUsage("local"); pool != 0 {
			t.Fatalf("pool usage after destroying everything: %d", pool)
		}
	})
}

// The backup cycle (snapshot, export, data_destroy) leaves every written
// block possibly orphaned; the collector must stop scheduling work for
// blocks it found clean, and must not lose versions in the process.
func TestGCPrunesOrphans(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(8))
		if _, err := e.s.EnableCBT("a"); err != nil {
			t.Fatal(err)
		}
		e.write("a", 0, randomData(4<<20, 1)) // 64 64-KiB blocks
		e.snapshot("a", "s")
		if _, err := e.s.DataDestroy("s"); err != nil {
			t.Fatal(err)
		}
		lin := e.s.volumes["a"].lin
		if lin.orphan == nil || lin.orphan.GetCardinality() != 64 {
			t.Fatalf("after data_destroy the orphan set is %v, want the 64 written blocks", lin.orphan)
		}
		// Overwrite the first 16 64-KiB blocks fully: their old versions die.
		e.write("a", 0, randomData(1<<20, 2))
		if got := lin.pending.GetCardinality(); got != 16 {
			t.Fatalf("pending after overwrite: %d blocks, want 16", got)
		}
		st, err := e.s.collect()
		if err != nil {
			t.Fatal(err)
		}
		if st.Deleted != 256 {
			t.Fatalf("collector deleted %d versions, want 256 (16 x 64 KiB)", st.Deleted)
		}
		if got := lin.orphan.GetCardinality(); got != 48 {
			t.Fatalf("orphan set after collection: %d blocks, want 48", got)
		}
		// A partial overwrite leaves older versions beside it: still orphaned.
		e.write("a", 20*65536, randomData(4096, 3))
		if _, err := e.s.collect(); err != nil {
			t.Fatal(err)
		}
		if !lin.orphan.Contains(20) {
			t.Fatal("block 20 still holds 15 orphan versions but left the orphan set")
		}
		want := randomData(4<<20, 1)
		copy(want, randomData(1<<20, 2))
		copy(want[20*65536:], randomData(4096, 3))
		if got := e.read("a", 0, 4<<20); !bytes.Equal(got, want) {
			t.Fatal("collection damaged live data")
		}
		// The chain survives data_destroy.
		if got := e.changed("s", "a"); len(got) != 17 {
			t.Fatalf("changed since the metadata snapshot: %v", got)
		}
	})
}

// Orphaned versions the head overwrote are noted in memory; a snapshot that
// seals them before the collector ran must persist them, or a restart
// could never find those dead versions again.
func TestGCPendingSurvivesSealAndRestart(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(4))
		e.write("a", 0, randomData(1<<20, 1))
		e.snapshot("a", "s")
		if err := e.s.Destroy("s"); err != nil { // versions at s's generation: orphans
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		e.write("a", 0, randomData(1<<20, 2)) // overwrites them: pending, in memory
		e.snapshot("a", "t")                  // seals the interval
		e.reopen()                            // without collecting first
		if err := e.s.Destroy("t"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		mo := &model{t: t, e: e}
		if n := mo.countVersions(e.s.volumes["a"].lin.rec.ID); n != 256 {
			t.Fatalf("%d versions of 256 written blocks remain", n)
		}
	})
}
