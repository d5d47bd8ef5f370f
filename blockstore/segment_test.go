package blockstore

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

func segmentEnv(t *testing.T) *env {
	for _, m := range modes {
		if m.name == "disk-segments" {
			return newEnv(t, m)
		}
	}
	t.Fatal("no disk-segments mode")
	return nil
}

// valueOf returns the stored value of block blk of volume id's lineage at
// the head generation.
func (e *env) valueOf(id string, blk uint64) []byte {
	e.t.Helper()
	e.s.mu.Lock()
	lin := e.s.volumes[id].lin
	e.s.mu.Unlock()
	v, closer, err := e.s.db.Get(dataKey(nil, lin.rec.ID, blk, lin.rec.Head))
	if err != nil {
		e.t.Fatalf("get block %d of %s: %v", blk, id, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

func TestSegmentsHoldTheData(t *testing.T) {
	e := segmentEnv(t)
	e.create("v", 8<<20)
	data := fill(3, 1<<20)
	e.write("v", 0, data)
	if v := e.valueOf("v", 5); !isPointer(v) {
		t.Fatalf("block 5 is stored as %d bytes, want a %d-byte pointer", len(v), pointerLen)
	}
	if p := decodePointer(e.valueOf("v", 5)); p.slot != 5 || p.crc != blockCRC(data[5*BlockSize:6*BlockSize]) {
		t.Fatalf("block 5 points at %+v: a 1 MiB write should fill slots 0..255 of one segment", p)
	}
	fi, err := os.Stat(segmentPath(e.dir, 0))
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("segment 0: %v, size %v; want 1 MiB", err, fi)
	}
	if got := e.read("v", 0, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if got := e.read("v", 4096*3+17, 9000); !bytes.Equal(got, data[4096*3+17:4096*3+17+9000]) {
		t.Fatal("unaligned read differs")
	}
	if u := e.usage("v"); u != 1<<20 {
		t.Fatalf("usage %d, want 1 MiB: a pointer accounts for its block", u)
	}

	// After a reopen, old slots are read where they are and new writes go
	// to a new segment.
	e.reopen()
	if got := e.read("v", 0, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("read back after reopen differs")
	}
	e.write("v", 4<<20, fill(4, BlockSize))
	if p := decodePointer(e.valueOf("v", 1024)); p.seg != 1 || p.slot != 0 {
		t.Fatalf("first write after reopen at %+v, want segment 1 slot 0", p)
	}
}

// flipOnDisk syncs the store, then XORs the byte at off of segment seg
// with mask, behind the store's back.
func (e *env) flipOnDisk(seg uint32, off int64, mask byte) {
	e.t.Helper()
	if err := e.s.Flush(); err != nil {
		e.t.Fatal(err)
	}
	f, err := os.OpenFile(segmentPath(e.dir, seg), os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		e.t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		e.t.Fatal(err)
	}
}

func TestSegmentCorruptionIsAnError(t *testing.T) {
	e := segmentEnv(t)
	e.create("v", 8<<20)
	data := fill(5, 4*BlockSize)
	e.write("v", 0, data)
	e.flipOnDisk(0, 2*BlockSize+100, 0x40)

	d := e.attach("v")
	p := make([]byte, 4*BlockSize)
	if _, err := d.ReadAt(p, 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block 2") {
		t.Fatalf("read over a flipped bit: %v, want ErrCorrupt naming block 2", err)
	}
	if err := d.ReadSparse(p[:BlockSize], 2*BlockSize+512, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("sparse read of the flipped block: %v, want ErrCorrupt", err)
	}
	if _, err := d.ReadAt(p[:2*BlockSize], 0); err != nil || !bytes.Equal(p[:2*BlockSize], data[:2*BlockSize]) {
		t.Fatalf("the blocks before it: %v", err)
	}
	if _, err := d.ReadAt(p[:BlockSize], 3*BlockSize); err != nil || !bytes.Equal(p[:BlockSize], data[3*BlockSize:]) {
		t.Fatalf("the block after it: %v", err)
	}
}

// TestSegmentsAndInlineSideBySide switches segments on and off across
// reopens: each form stays readable, through snapshots too.
func TestSegmentsAndInlineSideBySide(t *testing.T) {
	e := newEnv(t, modes[1]) // disk, inline
	e.create("v", 8<<20)
	a := fill(1, 8*BlockSize)
	e.write("v", 0, a)
	e.snapshot("v", "s1")

	e.mode.segments = true
	e.reopen()
	b := fill(2, 4*BlockSize)
	e.write("v", 4*BlockSize, b)
	if v := e.valueOf("v", 5); !isPointer(v) {
		t.Fatalf("block 5 after turning segments on: %d bytes", len(v))
	}
	want := append(append([]byte(nil), a[:4*BlockSize]...), b...)
	check := func(when string) {
		t.Helper()
		if got := e.read("v", 0, 8*BlockSize); !bytes.Equal(got, want) {
			t.Fatalf("%s: live volume differs", when)
		}
		if got := e.read("s1", 0, 8*BlockSize); !bytes.Equal(got, a) {
			t.Fatalf("%s: snapshot differs", when)
		}
	}
	check("segments on")
	e.mode.segments = false
	e.reopen()
	check("segments off again")
}

// syncCounter counts data syncs of segment files.
type syncCounter struct {
	vfs.FS
	syncs atomic.Int64
}

type countedFile struct {
	vfs.File
	c *syncCounter
}

func (c *syncCounter) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := c.FS.OpenReadWrite(name, cat, opts...)
	if err != nil || !strings.Contains(name, segmentDir) {
		return f, err
	}
	return countedFile{f, c}, nil
}

func (f countedFile) SyncData() error { f.c.syncs.Add(1); return f.File.SyncData() }
func (f countedFile) Sync() error     { f.c.syncs.Add(1); return f.File.Sync() }

// TestSegmentsSyncBeforeDurablePromises: a plain write leaves its segment
// to the page cache; FLUSH, FUA and a snapshot each sync it first.
func TestSegmentsSyncBeforeDurablePromises(t *testing.T) {
	c := &syncCounter{FS: vfs.NewMem()}
	o := Options{FS: c, Segments: true, GCInterval: -1, Logf: t.Logf}
	s, err := Open("store", o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := s.Create(CreateRequest{ID: "v", Pool: "p", Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	d, err := s.Attach("v")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	step := func(what string, op func() error, wantSync bool) {
		t.Helper()
		before := c.syncs.Load()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if synced := c.syncs.Load() > before; synced != wantSync {
			t.Fatalf("%s: segment synced %v, want %v", what, synced, wantSync)
		}
	}
	write := func(f Flags) func() error {
		return func() error { return d.Write(0, fill(9, BlockSize), f) }
	}
	step("plain write", write(0), false)
	step("flush", d.Flush, true)
	step("flush with nothing new", d.Flush, false)
	step("FUA write", write(FUA), true)
	step("plain write", write(0), false)
	step("snapshot", func() error {
		_, err := s.Snapshot(SnapshotRequest{Source: "v", ID: "s"})
		return err
	}, true)
}

// TestReclaimFreesDeadSegments overwrites a snapshot's data, destroys the
// snapshot and reclaims: the dead segments' files go, the live blocks are
// copied forward and everything reads back, before and after a reopen.
func TestReclaimFreesDeadSegments(t *testing.T) {
	m := modes[4] // disk-segments
	m.segmentSlots = 16
	e := newEnv(t, m)
	e.create("v", 8<<20)
	old := fill(1, 64*BlockSize)
	e.write("v", 0, old)
	e.snapshot("v", "s1")
	cur := fill(2, 48*BlockSize) // blocks 0..47 replaced, 48..63 still old
	e.write("v", 0, cur)
	want := append(append([]byte(nil), cur...), old[48*BlockSize:]...)
	countFiles := func() int {
		names, err := os.ReadDir(e.dir + "/" + segmentDir)
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	before := countFiles()

	// The snapshot pins every old block: nothing is dead yet.
	if st, err := e.s.ReclaimSegments(0.5); err != nil || st.Freed != 0 {
		t.Fatalf("reclaim with the snapshot alive: %+v, %v; want nothing freed", st, err)
	}
	if err := e.s.Destroy("s1"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	stats0 := e.s.SegmentStats()
	if stats0.Files != before || stats0.Bytes != 112*BlockSize {
		t.Fatalf("SegmentStats %+v before reclaim, want %d files and the 112 blocks written", stats0, before)
	}
	st, err := e.s.ReclaimSegments(0.5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Freed == 0 || countFiles() != before-st.Freed {
		t.Fatalf("reclaim: %+v; %d segment files before, %d after", st, before, countFiles())
	}
	stats1 := e.s.SegmentStats()
	if stats1.Files != before-st.Freed || stats1.Reclaimed != uint64(st.Freed) || stats1.Moved != st.Moved ||
		stats1.Bytes >= stats0.Bytes {
		t.Fatalf("SegmentStats %+v after reclaim %+v (before %+v)", stats1, st, stats0)
	}
	if got := e.read("v", 0, 64*BlockSize); !bytes.Equal(got, want) {
		t.Fatal("volume differs after reclaim")
	}
	if u := e.usage("v"); u != 64*BlockSize {
		t.Fatalf("usage %d after reclaim, want %d", u, 64*BlockSize)
	}
	// Everything copied forward at 1.0: every sealed segment goes.
	if _, err := e.s.ReclaimSegments(1.0); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	if got := e.read("v", 0, 64*BlockSize); !bytes.Equal(got, want) {
		t.Fatal("volume differs after reclaim and reopen")
	}
}

// TestReclaimUnderWrites reclaims in a loop while writers overwrite the
// same blocks and readers read them (run it under -race): no read fails,
// and every block ends as its last write.
func TestReclaimUnderWrites(t *testing.T) {
	m := modes[3] // mem-segments
	m.segmentSlots = 8
	e := newEnv(t, m)
	e.create("v", 4<<20)
	const blocks, writers, rounds = 64, 4, 2000
	var last [blocks]atomic.Uint32 // seed+1 of each block's last write
	done := make(chan error, writers)
	for w := range writers {
		go func() {
			d, err := e.s.Attach("v")
			if err != nil {
				done <- err
				return
			}
			defer d.Close()
			for i := range rounds {
				blk := (i*7 + w*blocks/writers) % blocks // each writer owns its own blocks
				blk = blk/writers*writers + w
				seed := byte(i*writers + w)
				if err := d.Write(uint64(blk)*BlockSize, fill(seed, BlockSize), 0); err != nil {
					done <- err
					return
				}
				last[blk].Store(uint32(seed) + 1)
			}
			done <- nil
		}()
	}
	// Readers race the reclaim: a read that looked a pointer up before its
	// segment went must still find the file.
	// stop also closes when the test ends early, before the store's Close.
	stop, halt := testwait.Gate(t)
	readErr := make(chan error, 2)
	for range 2 {
		go func() {
			d, err := e.s.Attach("v")
			if err != nil {
				readErr <- err
				return
			}
			defer d.Close()
			p := make([]byte, 16*BlockSize)
			for i := 0; ; i++ {
				select {
				case <-stop:
					readErr <- nil
					return
				default:
				}
				if _, err := d.ReadAt(p, int64(i%(blocks-16))*BlockSize); err != nil {
					readErr <- err
					return
				}
			}
		}()
	}
	reclaimed := make(chan int, 1)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				reclaimed <- n
				return
			default:
			}
			st, err := e.s.ReclaimSegments(1.0)
			if err != nil {
				t.Error(err)
			}
			n += st.Freed
		}
	}()
	for range writers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	halt()
	t.Logf("%d segments reclaimed under the writes", testwait.Recv(t, reclaimed, "the reclaimer to stop"))
	for range 2 {
		if err := testwait.Recv(t, readErr, "a reader to stop"); err != nil {
			t.Fatalf("read during reclaim: %v", err)
		}
	}
	got := e.read("v", 0, blocks*BlockSize)
	for b := range blocks {
		if s := last[b].Load(); s != 0 && !bytes.Equal(got[b*BlockSize:(b+1)*BlockSize], fill(byte(s-1), BlockSize)) {
			t.Errorf("block %d is not its last write", b)
		}
	}
}

// TestSealedWaitsForWriters: a lane may move on from a segment while a
// write into it has not committed its pointers, so the segment has no
// reverse keys yet for those slots. Reclaim must not take it until the
// write is done: it would find the slots dead and remove the file under an
// acknowledged write.
func TestSealedWaitsForWriters(t *testing.T) {
	segs, err := openSegments(vfs.NewMem(), "store", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer segs.close()
	segs.slots = 4
	sf, _, err := segs.reserve(4) // fills its lane's segment
	if err != nil {
		t.Fatal(err)
	}
	var others []*segmentFile
	for range segmentLanes { // the last one comes back to sf's lane
		o, _, err := segs.reserve(1)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, o)
	}
	if others[len(others)-1] == sf {
		t.Fatal("the lane did not move on to a new segment")
	}
	if slices.Contains(segs.sealed(), sf.id) {
		t.Fatalf("segment %d listed as sealed while a write into it is in flight", sf.id)
	}
	segs.release(sf)
	if !slices.Contains(segs.sealed(), sf.id) {
		t.Fatalf("segment %d not listed as sealed once its write is done (sealed: %v)", sf.id, segs.sealed())
	}
	for _, o := range others {
		segs.release(o)
	}
}
