package blockstore

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/vdiskd/vdiskd/cbt"
)

func TestCreateRoundsAndValidates(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		v := e.create("a", 1)
		if v.Size != SizeAlign || v.Kind != KindLive || v.ReadOnly || v.CBTEnabled {
			t.Fatalf("created %+v", v)
		}
		if _, err := e.s.Create(CreateRequest{ID: "a", Size: 1}); !errors.Is(err, ErrExists) {
			t.Fatalf("duplicate create: %v", err)
		}
		if _, err := e.s.Create(CreateRequest{ID: "", Size: 1}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("empty id: %v", err)
		}
		if _, err := e.s.Create(CreateRequest{ID: "huge", Size: MaxSize + 1}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("huge: %v", err)
		}
		if _, err := e.s.Volume("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing volume: %v", err)
		}
		if got := len(e.s.Volumes()); got != 1 {
			t.Fatalf("failed creates left %d volumes", got)
		}
	})
}

func TestReadWriteThinAndUnaligned(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(4))
		if got := e.read("a", 0, 8192); !bytes.Equal(got, make([]byte, 8192)) {
			t.Fatal("unwritten space is not zero")
		}
		data := fill(1, 3*BlockSize)
		e.write("a", BlockSize, data)
		if got := e.read("a", BlockSize, len(data)); !bytes.Equal(got, data) {
			t.Fatal("aligned read back differs")
		}
		// Unaligned write across a block boundary, then unaligned read.
		small := fill(9, 1000)
		e.write("a", 2*BlockSize-300, small)
		want := slices.Clone(data)
		copy(want[BlockSize-300:], small)
		if got := e.read("a", BlockSize, len(data)); !bytes.Equal(got, want) {
			t.Fatal("read-modify-write lost bytes")
		}
		if got := e.read("a", 2*BlockSize-301, 1002); !bytes.Equal(got, want[BlockSize-301:BlockSize+701]) {
			t.Fatal("unaligned read differs")
		}
		e.reopen()
		if got := e.read("a", BlockSize, len(data)); !bytes.Equal(got, want) {
			t.Fatal("data differs after reopen")
		}
	})
}

func TestRangeAndReadOnlyErrors(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		d := e.attach("a")
		p := make([]byte, 512)
		if _, err := d.ReadAt(p, int64(mib(2))); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("read past end: %v", err)
		}
		if err := d.Write(mib(2)-256, p, 0); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("write across end: %v", err)
		}
		if err := d.Trim(^uint64(0)-10, 100, 0); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("overflowing trim: %v", err)
		}
		if _, err := d.ReadAt(p, -1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("negative offset: %v", err)
		}
		if err := d.Write(0, fill(3, 512), 0); err != nil {
			t.Fatal(err)
		}
		e.snapshot("a", "s")
		sd := e.attach("s")
		if err := sd.Write(0, p, 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("write to snapshot: %v", err)
		}
		if err := sd.Trim(0, 4096, 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("trim of snapshot: %v", err)
		}
		if _, err := e.s.SetReadOnly("a", true); err != nil {
			t.Fatal(err)
		}
		if err := d.Write(0, p, 0); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("write to read-only volume: %v", err)
		}
		if got := e.read("a", 0, 512); !bytes.Equal(got, fill(3, 512)) {
			t.Fatal("refused write changed data")
		}
	})
}

func TestSnapshotFreezesAndCloneShares(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(8))
		v1 := fill(1, 64<<10)
		e.write("a", 0, v1)
		e.snapshot("a", "s1")
		v2 := fill(2, 64<<10)
		e.write("a", 0, v2)
		if got := e.read("s1", 0, len(v1)); !bytes.Equal(got, v1) {
			t.Fatal("snapshot sees a later write")
		}
		if got := e.read("a", 0, len(v2)); !bytes.Equal(got, v2) {
			t.Fatal("live volume lost its write")
		}
		c, err := e.s.Clone(CloneRequest{Source: "s1", ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		if c.CBTEnabled || c.ReadOnly || c.Size != mib(8) || c.CloneOf != "s1" {
			t.Fatalf("clone %+v", c)
		}
		if got := e.read("c", 0, len(v1)); !bytes.Equal(got, v1) {
			t.Fatal("clone does not share the snapshot's blocks")
		}
		v3 := fill(3, 4096)
		e.write("c", 4096, v3)
		if got := e.read("s1", 4096, 4096); !bytes.Equal(got, v1[4096:8192]) {
			t.Fatal("clone write leaked into its source")
		}
		// A clone of a live volume freezes its head: later writes stay out.
		c2, err := e.s.Clone(CloneRequest{Source: "a", ID: "c2"})
		if err != nil {
			t.Fatal(err)
		}
		e.write("a", 0, v1)
		if got := e.read(c2.ID, 0, len(v2)); !bytes.Equal(got, v2) {
			t.Fatal("clone of live volume sees a later write")
		}
		// Clone of a clone reads through two parents.
		if _, err := e.s.Clone(CloneRequest{Source: "c", ID: "cc"}); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(v1)
		copy(want[4096:], v3)
		if got := e.read("cc", 0, len(v1)); !bytes.Equal(got, want) {
			t.Fatal("clone of clone reads wrong data")
		}
		e.reopen()
		if got := e.read("cc", 0, len(v1)); !bytes.Equal(got, want) {
			t.Fatal("clone of clone reads wrong data after reopen")
		}
		if got := e.read("s1", 0, len(v1)); !bytes.Equal(got, v1) {
			t.Fatal("snapshot changed after reopen")
		}
	})
}

func TestAtomicMultiSnapshot(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		e.create("b", mib(2))
		e.write("a", 0, fill(1, 4096))
		e.write("b", 0, fill(2, 4096))
		_, err := e.s.Snapshot(SnapshotRequest{Source: "a", ID: "sa"}, SnapshotRequest{Source: "b", ID: "a"})
		if !errors.Is(err, ErrExists) {
			t.Fatalf("snapshot onto an existing ID: %v", err)
		}
		if _, err := e.s.Volume("sa"); !errors.Is(err, ErrNotFound) {
			t.Fatal("failed group snapshot left a snapshot behind")
		}
		snaps, err := e.s.Snapshot(SnapshotRequest{Source: "a", ID: "sa"}, SnapshotRequest{Source: "b", ID: "sb"})
		if err != nil || len(snaps) != 2 {
			t.Fatalf("group snapshot: %v", err)
		}
		if !bytes.Equal(e.read("sa", 0, 4096), fill(1, 4096)) || !bytes.Equal(e.read("sb", 0, 4096), fill(2, 4096)) {
			t.Fatal("group snapshot contents")
		}
	})
}

// Writes racing a snapshot: the snapshot must hold every write acknowledged
// before Snapshot was called, and must never change afterwards.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		d := e.attach("a")
		var wg sync.WaitGroup
		var mu sync.Mutex
		acked := map[uint64]byte{} // block -> last acknowledged seed
		stop := make(chan struct{})
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					blk := uint64(w*64 + i%64)
					seed := byte(i%250) + 1
					if err := d.Write(blk*BlockSize, bytes.Repeat([]byte{seed}, BlockSize), 0); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[blk] = seed
					mu.Unlock()
				}
			}(w)
		}
		var before map[uint64]byte
		for i := 0; i < 20; i++ {
			mu.Lock()
			before = maps.Clone(acked)
			mu.Unlock()
			e.snapshot("a", name(i))
			first := e.read(name(i), 0, 256*BlockSize)
			for blk, seed := range before {
				if first[blk*BlockSize] == 0 {
					t.Fatalf("snapshot %d misses block %d acknowledged before it (seed %d)", i, blk, seed)
				}
			}
			if again := e.read(name(i), 0, 256*BlockSize); !bytes.Equal(first, again) {
				t.Fatalf("snapshot %d changed after it was taken", i)
			}
		}
		close(stop)
		wg.Wait()
	})
}

func TestResize(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		d := e.attach("a")
		v, err := e.s.Resize("a", mib(5))
		if err != nil || v.Size != mib(6) {
			t.Fatalf("grow: %+v %v", v, err)
		}
		if err := d.Write(mib(6)-4096, fill(1, 4096), 0); err != nil {
			t.Fatalf("write in grown space through an open handle: %v", err)
		}
		if _, err := e.s.Resize("a", mib(2)); !errors.Is(err, ErrShrink) {
			t.Fatalf("shrink: %v", err)
		}
		e.snapshot("a", "s")
		if _, err := e.s.Resize("s", mib(20)); !errors.Is(err, ErrIsSnapshot) {
			t.Fatalf("resize snapshot: %v", err)
		}
		d.Close()
		e.reopen()
		if v, _ := e.s.Volume("a"); v.Size != mib(6) {
			t.Fatalf("size after reopen %d", v.Size)
		}
	})
}

func TestTrimAndZero(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(4))
		d := e.attach("a")
		data := fill(5, 16*BlockSize)
		if err := d.Write(0, data, 0); err != nil {
			t.Fatal(err)
		}
		e.snapshot("a", "s")
		// Trim with a snapshot present: markers, snapshot keeps its data.
		if err := d.Trim(100, 5*BlockSize, 0); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(data)
		clear(want[100 : 100+5*BlockSize])
		if got := e.read("a", 0, len(data)); !bytes.Equal(got, want) {
			t.Fatal("trim under snapshot")
		}
		if got := e.read("s", 0, len(data)); !bytes.Equal(got, data) {
			t.Fatal("trim changed the snapshot")
		}
		if err := d.Zero(8*BlockSize, 2*BlockSize, NoHole); err != nil {
			t.Fatal(err)
		}
		clear(want[8*BlockSize : 10*BlockSize])
		if got := e.read("a", 0, len(data)); !bytes.Equal(got, want) {
			t.Fatal("zero NoHole")
		}
		var exts []Extent
		if err := d.Extents(0, 16*BlockSize, func(x Extent) error { exts = append(exts, x); return nil }); err != nil {
			t.Fatal(err)
		}
		wantExts := []Extent{
			{0, BlockSize, 0},
			{BlockSize, 4 * BlockSize, Hole | Zero},
			{5 * BlockSize, 3 * BlockSize, 0},
			{8 * BlockSize, 2 * BlockSize, Zero},
			{10 * BlockSize, 6 * BlockSize, 0},
		}
		if !slices.Equal(exts, wantExts) {
			t.Fatalf("extents\n got %v\nwant %v", exts, wantExts)
		}
		// Without snapshots a trim is a range deletion of any length.
		if err := e.s.Destroy("s"); !errors.Is(err, ErrInUse) && err != nil {
			t.Fatal(err)
		}
		if err := d.Trim(0, mib(4), 0); err != nil {
			t.Fatal(err)
		}
		if got := e.read("a", 0, len(data)); !bytes.Equal(got, make([]byte, len(data))) {
			t.Fatal("whole-disk trim")
		}
	})
}

func TestCBTSemantics(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(4))
		e.write("a", 0, fill(1, 4096)) // before enable: not in any chain
		e.snapshot("a", "s0")
		if _, err := e.s.EnableCBT("s0"); !errors.Is(err, ErrIsSnapshot) {
			t.Fatalf("enable on snapshot: %v", err)
		}
		v, err := e.s.EnableCBT("a")
		if err != nil || !v.CBTEnabled {
			t.Fatalf("enable: %v", err)
		}
		if _, err := e.s.EnableCBT("a"); err != nil {
			t.Fatalf("enable is not idempotent: %v", err)
		}
		s1 := e.snapshot("a", "s1")
		if !s1.CBTEnabled {
			t.Fatal("snapshot of CBT volume has CBT off")
		}
		e.write("a", 0, fill(2, 512))                 // block 0
		e.write("a", 33*cbt.BlockSize, fill(3, 4096)) // block 33
		e.snapshot("a", "s2")
		bm, size, err := e.s.ChangedBlocks("s1", "s2")
		if err != nil {
			t.Fatal(err)
		}
		if got := cbt.Encode(bm, size); got != "gAAAAEAAAAA=" {
			t.Fatalf("list_changed_blocks = %s, want the XenAPI vector gAAAAEAAAAA=", got)
		}
		for _, pair := range [][2]string{{"s1", "s1"}, {"s2", "s1"}, {"s0", "s2"}, {"a", "s2"}} {
			if _, _, err := e.s.ChangedBlocks(pair[0], pair[1]); !errors.Is(err, cbt.ErrChain) {
				t.Errorf("changed blocks %s..%s: %v, want ErrChain", pair[0], pair[1], err)
			}
		}
		e.write("a", 2*cbt.BlockSize, fill(4, 4096))
		if got := e.changed("s2", "a"); !slices.Equal(got, []uint32{2}) {
			t.Fatalf("s2..live = %v", got)
		}
		if got := e.changed("s1", "a"); !slices.Equal(got, []uint32{0, 2, 33}) {
			t.Fatalf("s1..live = %v", got)
		}
		// Destroying the middle snapshot keeps the chain and its blocks.
		e.snapshot("a", "s3")
		if err := e.s.Destroy("s2"); err != nil {
			t.Fatal(err)
		}
		if got := e.changed("s1", "s3"); !slices.Equal(got, []uint32{0, 2, 33}) {
			t.Fatalf("after destroying middle snapshot s1..s3 = %v", got)
		}
		// data_destroy keeps the bitmap, frees the data.
		if _, err := e.s.DataDestroy("a"); !errors.Is(err, ErrNotSnapshot) {
			t.Fatalf("data destroy live: %v", err)
		}
		if _, err := e.s.DataDestroy("s0"); !errors.Is(err, ErrNoCBT) {
			t.Fatalf("data destroy non-CBT snapshot: %v", err)
		}
		md, err := e.s.DataDestroy("s1")
		if err != nil || md.Kind != KindCBTMetadata || !md.CBTEnabled {
			t.Fatalf("data destroy: %+v %v", md, err)
		}
		if _, err := e.s.DataDestroy("s1"); err != nil {
			t.Fatalf("data destroy not idempotent: %v", err)
		}
		if _, err := e.s.Attach("s1"); !errors.Is(err, ErrCBTMetadata) {
			t.Fatalf("attach cbt_metadata: %v", err)
		}
		for _, op := range []func() error{
			func() error { _, err := e.s.Snapshot(SnapshotRequest{Source: "s1", ID: "x"}); return err },
			func() error { _, err := e.s.Clone(CloneRequest{Source: "s1", ID: "x"}); return err },
			func() error { _, err := e.s.Resize("s1", mib(8)); return err },
			func() error { _, err := e.s.EnableCBT("s1"); return err },
		} {
			if err := op(); !errors.Is(err, ErrCBTMetadata) {
				t.Errorf("operation on cbt_metadata: %v", err)
			}
		}
		e.reopen()
		if got := e.changed("s1", "s3"); !slices.Equal(got, []uint32{0, 2, 33}) {
			t.Fatalf("after data_destroy and reopen s1..s3 = %v", got)
		}
		// Disable breaks the chain for good, even after re-enabling.
		if _, err := e.s.DisableCBT("a"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.DisableCBT("a"); err != nil {
			t.Fatalf("disable not idempotent: %v", err)
		}
		if s4 := e.snapshot("a", "s4"); s4.CBTEnabled {
			t.Fatal("snapshot after disable has CBT on")
		}
		if _, err := e.s.EnableCBT("a"); err != nil {
			t.Fatal(err)
		}
		e.snapshot("a", "s5")
		if _, _, err := e.s.ChangedBlocks("s3", "s5"); !errors.Is(err, cbt.ErrChain) {
			t.Fatalf("diff across a disable: %v", err)
		}
		if _, _, err := e.s.ChangedBlocks("s3", "a"); !errors.Is(err, cbt.ErrChain) {
			t.Fatalf("diff across a disable to live: %v", err)
		}
		if got := e.changed("s5", "a"); len(got) != 0 {
			t.Fatalf("fresh chain s5..live = %v", got)
		}
		// Clones start with CBT off.
		c, err := e.s.Clone(CloneRequest{Source: "s5", ID: "c"})
		if err != nil || c.CBTEnabled {
			t.Fatalf("clone cbt: %+v %v", c, err)
		}
	})
}

func TestHandlesAndClose(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		d, err := e.s.Attach("a")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.Destroy("a"); !errors.Is(err, ErrInUse) {
			t.Fatalf("destroy attached: %v", err)
		}
		if v, _ := e.s.Volume("a"); v.Attached != 1 {
			t.Fatalf("attached count %d", v.Attached)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); !errors.Is(err, ErrClosed) {
			t.Fatalf("second close: %v", err)
		}
		if err := d.Write(0, []byte{1}, 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("write after close: %v", err)
		}
		// A handle left open is reported at Close and is dead afterwards.
		leaked, _ := e.s.Attach("a")
		if err := e.s.Close(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("leaked")) {
			t.Fatalf("close with a leaked handle: %v", err)
		}
		if _, err := leaked.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("read through a leaked handle after close: %v", err)
		}
		if _, err := e.s.Volume("a"); !errors.Is(err, ErrClosed) {
			t.Fatalf("metadata after close: %v", err)
		}
		if err := e.s.CollectGarbage(); !errors.Is(err, ErrClosed) {
			t.Fatalf("gc after close: %v", err)
		}
		e.s = nil
	})
}

// The largest volume has 2^32 CBT blocks; a write to the last one must
// survive a restart in the live interval (its marker's end is 2^32).
func TestCBTAtMaxSize(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("big", MaxSize)
		if _, err := e.s.EnableCBT("big"); err != nil {
			t.Fatal(err)
		}
		e.snapshot("big", "s")
		e.write("big", MaxSize-BlockSize, fill(1, BlockSize))
		e.reopen()
		if got := e.changed("s", "big"); !slices.Equal(got, []uint32{1<<32 - 1}) {
			t.Fatalf("changed after reopen: %v", got)
		}
		if got := e.read("big", MaxSize-BlockSize, BlockSize); !bytes.Equal(got, fill(1, BlockSize)) {
			t.Fatal("last block of the largest volume")
		}
	})
}

// A zero over more blocks than one batch holds commits in pieces; every
// piece is covered by the operation's CBT marker.
func TestHugeZeroCommitsInPieces(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		const n = 300 << 20 // 76800 blocks > maxBatchOps
		e.create("a", mib(512))
		if _, err := e.s.EnableCBT("a"); err != nil {
			t.Fatal(err)
		}
		e.write("a", n-BlockSize, fill(1, 2*BlockSize)) // straddles the end of the range
		e.snapshot("a", "s")
		d := e.attach("a")
		if err := d.Zero(0, n, NoHole); err != nil {
			t.Fatal(err)
		}
		var exts []Extent
		if err := d.Extents(0, mib(512), func(x Extent) error { exts = append(exts, x); return nil }); err != nil {
			t.Fatal(err)
		}
		want := []Extent{{0, n, Zero}, {n, BlockSize, 0}, {n + BlockSize, mib(512) - n - BlockSize, Hole | Zero}}
		if !slices.Equal(exts, want) {
			t.Fatalf("extents\n got %v\nwant %v", exts, want)
		}
		d.Close()
		e.reopen()
		got := e.changed("s", "a")
		if len(got) != n/cbt.BlockSize || got[0] != 0 || got[len(got)-1] != n/cbt.BlockSize-1 {
			t.Fatalf("changed after reopen: %d blocks, want %d", len(got), n/cbt.BlockSize)
		}
		if got := e.read("s", n-BlockSize, 2*BlockSize); !bytes.Equal(got, fill(1, 2*BlockSize)) {
			t.Fatal("zeroing changed the snapshot")
		}
		if got := e.read("a", n-BlockSize, 2*BlockSize); !bytes.Equal(got[:BlockSize], make([]byte, BlockSize)) || !bytes.Equal(got[BlockSize:], fill(1, 2*BlockSize)[BlockSize:]) {
			t.Fatal("zeroed range edges")
		}
	})
}
