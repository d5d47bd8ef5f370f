package blockstore

import (
	"testing"
)

// IOStats count what the store did for a volume: exact index hits and
// misses per 4 KiB block read, one batch per write, and a cache verdict
// per read.
func TestIOStats(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		s := e.s
		e.create("v", mib(1))
		d := e.attach("v")
		if err := d.Write(0, fill(1, 3*BlockSize), 0); err != nil { // blocks 0..2
			t.Fatal(err)
		}
		if err := d.Write(8<<12+100, []byte("partial"), 0); err != nil { // read-modify-write of block 8
			t.Fatal(err)
		}
		st, err := s.IOStats("v")
		if err != nil {
			t.Fatal(err)
		}
		if st.BackendWrites != 2 || st.BackendWriteBytes < 3*BlockSize+BlockSize {
			t.Fatalf("after two writes: %+v", st)
		}
		if st.IndexHits != 0 || st.CacheHits+st.CacheMisses != 0 {
			t.Fatalf("a write counted as a client read: %+v", st)
		}
		readsBefore := st.BackendReads
		p := make([]byte, 10<<12) // blocks 0..9: 4 written (0,1,2,8), 6 never
		if _, err := d.ReadAt(p, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.ReadSparse(p[:2<<12], 7<<12, nil); err != nil { // blocks 7 (never) and 8
			t.Fatal(err)
		}
		st, _ = s.IOStats("v")
		if st.IndexHits != 4+1 || st.IndexMisses != 6+1 {
			t.Fatalf("index hits %d misses %d, want 5 and 7", st.IndexHits, st.IndexMisses)
		}
		if st.CacheHits+st.CacheMisses != 2 {
			t.Fatalf("cache verdicts %d+%d, want one per read", st.CacheHits, st.CacheMisses)
		}
		if st.BackendReads < readsBefore+2 || st.BackendReadBytes < 4*BlockSize+BlockSize {
			t.Fatalf("backend reads %d (before %d), bytes %d", st.BackendReads, readsBefore, st.BackendReadBytes)
		}
		if _, err := s.IOStats("nope"); err == nil {
			t.Fatal("IOStats of a missing volume succeeded")
		}
	})
}
