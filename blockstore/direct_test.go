package blockstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestDirectIOTakesLargeRuns: on disk, a run of at least DirectIOMin
// bytes is written past the page cache and read back the same way when
// the cache does not hold it; smaller runs and cached data keep to the
// page cache; everything reads back, after a reopen too.
func TestDirectIOTakesLargeRuns(t *testing.T) {
	e := directEnv(t, 256<<10)
	e.create("v", 8<<20)
	big := fill(7, 1<<20)
	e.write("v", 0, big)
	if wrote, _ := e.directIO(); wrote != 1<<20 {
		t.Fatalf("O_DIRECT wrote %d bytes of a 1 MiB write, want all", wrote)
	}
	if got := e.read("v", 0, 1<<20); !bytes.Equal(got, big) {
		t.Fatal("1 MiB read back differs")
	}
	if _, read := e.directIO(); read != 1<<20 {
		t.Fatalf("O_DIRECT read %d bytes of 1 MiB the page cache never held, want all", read)
	}

	// Below the threshold, writes go through the page cache, and a large
	// read of what it holds is served from there.
	small := fill(8, 256<<10)
	for off := 0; off < len(small); off += 64 << 10 {
		e.write("v", 2<<20+uint64(off), small[off:off+64<<10])
	}
	wrote, read := e.directIO()
	if wrote != 1<<20 {
		t.Fatalf("64 KiB writes went direct: %d bytes direct in all", wrote)
	}
	if got := e.read("v", 2<<20, len(small)); !bytes.Equal(got, small) {
		t.Fatal("256 KiB read of 64 KiB writes differs")
	}
	if _, r := e.directIO(); r != read && !noCachestat.Load() {
		t.Fatalf("a read of cached data went direct (%d bytes)", r-read)
	}

	// Unaligned and partial-block reads around the direct run.
	if got := e.read("v", 4096*3+17, 300<<10); !bytes.Equal(got, big[4096*3+17:4096*3+17+300<<10]) {
		t.Fatal("unaligned read of direct-written data differs")
	}
	e.reopen()
	if got := e.read("v", 0, 1<<20); !bytes.Equal(got, big) {
		t.Fatal("1 MiB read back after reopen differs")
	}
	if got := e.read("v", 2<<20, len(small)); !bytes.Equal(got, small) {
		t.Fatal("256 KiB read back after reopen differs")
	}
}

// TestDirectReadChecksCRCs: a bit flipped on disk under a direct-written
// run is ErrCorrupt on a direct read too, never wrong data.
func TestDirectReadChecksCRCs(t *testing.T) {
	e := directEnv(t, 256<<10)
	e.create("v", 8<<20)
	data := fill(9, 1<<20)
	e.write("v", 0, data)
	e.flipOnDisk(0, 200*BlockSize+33, 0x01)
	_, before := e.directIO()
	d := e.attach("v")
	defer d.Close()
	p := make([]byte, 1<<20)
	if _, err := d.ReadAt(p, 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block 200") {
		t.Fatalf("1 MiB read over a flipped bit: %v, want ErrCorrupt naming block 200", err)
	}
	if _, after := e.directIO(); after == before {
		t.Fatal("the read did not go direct: the test checks the buffered path only")
	}
}

// TestDirectIOOff: DirectIOMin 0 (the default) keeps every run in the
// page cache.
func TestDirectIOOff(t *testing.T) {
	e := segmentEnv(t)
	e.create("v", 8<<20)
	data := fill(10, 1<<20)
	e.write("v", 0, data)
	if got := e.read("v", 0, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if w, r := e.directIO(); w != 0 || r != 0 {
		t.Fatalf("with direct I/O off, %d bytes were written and %d read direct", w, r)
	}
}

// directEnv is disk-segments with runs of min bytes or more going direct.
func directEnv(t *testing.T, min int) *env {
	m := modes[4]
	if m.name != "disk-segments" {
		t.Fatalf("modes[4] is %s", m.name)
	}
	m.directMin = min
	return newEnv(t, m)
}
