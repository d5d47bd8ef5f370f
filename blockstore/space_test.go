package blockstore

import "testing"

// A clone keeps reading its source's data after the source is destroyed.
// No volume owns that lineage any more, but its bytes are still stored:
// PoolUsage counts them in the clone's pool until the clone goes too (the
// crash test of destroy found stored_data dropping by data still held).
func TestPoolUsageCountsDataOnlyAClonesReads(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		usage := func(pool string) uint64 {
			t.Helper()
			n, err := e.s.PoolUsage(pool)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		e.create("a", mib(8))
		e.write("a", 0, fill(1, 1<<20))
		if _, err := e.s.Clone(CloneRequest{Source: "a", ID: "c", Pool: "other"}); err != nil {
			t.Fatal(err)
		}
		e.write("c", mib(4), fill(2, 64<<10))
		if a, o := usage("local"), usage("other"); a != 1<<20 || o != 64<<10 {
			t.Fatalf("before the destroy: local %d, other %d; want %d and %d", a, o, 1<<20, 64<<10)
		}
		if err := e.s.Destroy("a"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		if a, o := usage("local"), usage("other"); a != 0 || o != 1<<20+64<<10 {
			t.Fatalf("a destroyed, its clone still reading its data: local %d, other %d; want 0 and %d", a, o, 1<<20+64<<10)
		}
		if got, _ := e.s.PhysicalUtilisation("c"); got != 64<<10 {
			t.Fatalf("the clone's own physical utilisation %d, want %d (its own blocks)", got, 64<<10)
		}
		if err := e.s.Destroy("c"); err != nil {
			t.Fatal(err)
		}
		if a, o := usage("local"), usage("other"); a != 0 || o != 0 {
			t.Fatalf("after destroying everything: local %d, other %d", a, o)
		}
	})
}
