package blockstore

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// readBlock reads one block through d and fails the test on error.
func readBlock(t *testing.T, d *Disk, blk uint64) []byte {
	t.Helper()
	p := make([]byte, BlockSize)
	if _, err := d.ReadAt(p, int64(blk*BlockSize)); err != nil {
		t.Fatalf("read block %d: %v", blk, err)
	}
	return p
}

// TestNewestCacheAnswersRepeatReads: a second small read of a block opens
// no pebble iterator, and a write in between is what the next read sees.
func TestNewestCacheAnswersRepeatReads(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		if e.s.newest == nil {
			t.Skip("this mode keeps no newest cache")
		}
		e.create("v", mib(4))
		d := e.attach("v")
		if err := d.Write(5*BlockSize, fill(1, BlockSize), 0); err != nil {
			t.Fatal(err)
		}
		iters := func() uint64 {
			st, err := e.s.IOStats("v")
			if err != nil {
				t.Fatal(err)
			}
			return st.BackendReads
		}
		readBlock(t, d, 5)
		before := iters()
		got := readBlock(t, d, 5)
		cached := iters() == before
		if !bytes.Equal(got, fill(1, BlockSize)) {
			t.Fatal("second read differs from the write")
		}
		// Inline 4 KiB values (the pebble data path) are not kept.
		if cached != e.mode.segments {
			t.Fatalf("second read served from the cache: %v, want %v", cached, e.mode.segments)
		}
		for i, p := range [][]byte{fill(2, BlockSize), make([]byte, BlockSize), fill(3, BlockSize)} {
			if err := d.Write(5*BlockSize, p, 0); err != nil {
				t.Fatal(err)
			}
			if got := readBlock(t, d, 5); !bytes.Equal(got, p) {
				t.Fatalf("write %d: the read after it returns older data", i)
			}
			readBlock(t, d, 5) // now cached
		}
		if err := d.Trim(5*BlockSize, BlockSize, 0); err != nil {
			t.Fatal(err)
		}
		if got := readBlock(t, d, 5); !bytes.Equal(got, make([]byte, BlockSize)) {
			t.Fatal("the read after a trim returns the trimmed data")
		}
	})
}

// TestNewestCacheAndSnapshots: an entry answers a snapshot only if it is at
// or below the snapshot's generation.
func TestNewestCacheAndSnapshots(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("v", mib(4))
		d := e.attach("v")
		old, cur := fill(1, BlockSize), fill(2, BlockSize)
		if err := d.Write(0, old, 0); err != nil {
			t.Fatal(err)
		}
		readBlock(t, d, 0) // cached at the generation the snapshot freezes
		e.snapshot("v", "s")
		sd := e.attach("s")
		if got := readBlock(t, sd, 0); !bytes.Equal(got, old) {
			t.Fatal("snapshot read of an unchanged block differs")
		}
		if err := d.Write(0, cur, 0); err != nil {
			t.Fatal(err)
		}
		readBlock(t, d, 0) // cached at the new head generation
		if got := readBlock(t, sd, 0); !bytes.Equal(got, old) {
			t.Fatal("snapshot read returns the data written after it")
		}
		if got := readBlock(t, d, 0); !bytes.Equal(got, cur) {
			t.Fatal("live read differs from its last write")
		}
	})
}

// TestNewestCacheAcrossReclaim: cached pointers to slots that reclaim moves
// are dropped before their segment file goes.
func TestNewestCacheAcrossReclaim(t *testing.T) {
	m := modes[4] // disk-segments
	m.segmentSlots = 16
	e := newEnv(t, m)
	e.create("v", mib(4))
	d := e.attach("v")
	const blocks = 64
	want := make([][]byte, blocks)
	for b := range blocks {
		want[b] = fill(byte(b), BlockSize)
		if err := d.Write(uint64(b)*BlockSize, want[b], 0); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite three in four blocks: the first segments are mostly dead.
	for b := range blocks {
		if b%4 != 0 {
			want[b] = fill(byte(b+100), BlockSize)
			if err := d.Write(uint64(b)*BlockSize, want[b], 0); err != nil {
				t.Fatal(err)
			}
		}
		readBlock(t, d, uint64(b)) // cache every block's pointer
	}
	st, err := e.s.ReclaimSegments(1.0) // every sealed segment
	if err != nil {
		t.Fatal(err)
	}
	if st.Freed == 0 || st.Moved == 0 {
		t.Fatalf("reclaim %+v: want segments freed and slots moved", st)
	}
	for b := range blocks {
		if got := readBlock(t, d, uint64(b)); !bytes.Equal(got, want[b]) {
			t.Fatalf("block %d differs after reclaim", b)
		}
	}
}

// TestNewestCacheReadYourWrites races readers that keep re-caching blocks
// against writers that check each of their writes is what they read next:
// a reader's look-up that began before a write must never be cached after
// it (run it under -race too).
func TestNewestCacheReadYourWrites(t *testing.T) {
	m := modes[3] // mem-segments
	m.segmentSlots = 8
	e := newEnv(t, m)
	e.create("v", mib(4))
	const blocks, writers, rounds = 32, 2, 1500
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			d, err := e.s.Attach("v")
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Close()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			p := make([]byte, 2*BlockSize)
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := BlockSize * (1 + rng.IntN(2))
				if _, err := d.ReadAt(p[:n], int64(rng.IntN(blocks-1))*BlockSize); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	errs := make(chan error, writers+1)
	go func() { // reclaim moves slots under both
		for {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			if _, err := e.s.ReclaimSegments(1.0); err != nil {
				errs <- err
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := e.s.Attach("v")
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Close()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for i := range rounds {
				blk := uint64(rng.IntN(blocks/writers)*writers + w) // each writer owns its blocks
				p := fill(byte(i), BlockSize)
				if i%5 == 4 {
					p = make([]byte, BlockSize) // a zero marker
				}
				if err := d.Write(blk*BlockSize, p, 0); err != nil {
					t.Error(err)
					return
				}
				for range 2 { // a miss, then (usually) a hit
					got := make([]byte, BlockSize)
					if _, err := d.ReadAt(got, int64(blk*BlockSize)); err != nil {
						t.Error(err)
						return
					}
					if !bytes.Equal(got, p) {
						t.Errorf("writer %d round %d: block %d reads older data after its write", w, i, blk)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
}

// TestNewestCacheBounded: the cache never holds more than its size, and a
// full one keeps answering reads correctly.
func TestNewestCacheBounded(t *testing.T) {
	m := modes[3] // mem-segments
	m.newestBlocks = newestShardCount * 2
	e := newEnv(t, m)
	e.create("v", mib(16))
	d := e.attach("v")
	const blocks = 2048
	for b := range uint64(blocks) {
		if err := d.Write(b*BlockSize, fill(byte(b), BlockSize), 0); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 {
		for b := range uint64(blocks) {
			if got := readBlock(t, d, b); !bytes.Equal(got, fill(byte(b), BlockSize)) {
				t.Fatalf("round %d: block %d differs", round, b)
			}
		}
	}
	if n := e.s.newest.len(); n > newestShardCount*2 || n == 0 {
		t.Fatalf("cache holds %d entries, want 1..%d", n, newestShardCount*2)
	}
}

// backendReads counts the pebble iterators reads of volume id opened.
func (e *env) backendReads(id string) uint64 {
	e.t.Helper()
	st, err := e.s.IOStats(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.BackendReads
}

// TestNewestCacheFilledByWrites: a small write leaves what it stored in the
// cache, so the first read after it opens no pebble iterator.
func TestNewestCacheFilledByWrites(t *testing.T) {
	e := newEnv(t, modes[4]) // disk-segments
	e.create("v", mib(4))
	d := e.attach("v")
	iters := func() uint64 { return e.backendReads("v") }
	for i, p := range [][]byte{fill(1, 2*BlockSize), make([]byte, 2*BlockSize)} {
		if err := d.Write(8*BlockSize, p, 0); err != nil {
			t.Fatal(err)
		}
		before := iters()
		got := make([]byte, 2*BlockSize)
		if _, err := d.ReadAt(got, 8*BlockSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("write %d: read differs", i)
		}
		if n := iters() - before; n != 0 {
			t.Fatalf("write %d: the read after it opened %d pebble iterators, want 0", i, n)
		}
	}
}

// TestNewestCacheFilledByLargeWrites: a 1 MiB write leaves all it stored
// in the cache; a write of more than newestForgetMax blocks drops the
// lineage's entries instead, and reads stay right either way.
func TestNewestCacheFilledByLargeWrites(t *testing.T) {
	e := newEnv(t, modes[4]) // disk-segments
	e.create("v", mib(32))
	d := e.attach("v")
	iters := func() uint64 { return e.backendReads("v") }
	big := fill(3, 1<<20)
	if err := d.Write(mib(1), big, 0); err != nil {
		t.Fatal(err)
	}
	before := iters()
	for b := 0; b < 256; b += 5 {
		if got := readBlock(t, d, uint64(256+b)); !bytes.Equal(got, big[b*BlockSize:(b+1)*BlockSize]) {
			t.Fatalf("block %d of the 1 MiB write differs", b)
		}
	}
	if n := iters() - before; n != 0 {
		t.Fatalf("reads after a 1 MiB write opened %d pebble iterators, want 0", n)
	}

	huge := fill(4, (newestForgetMax+1)*BlockSize)
	if err := d.Write(mib(8), huge, 0); err != nil {
		t.Fatal(err)
	}
	before = iters()
	if got := readBlock(t, d, 256); !bytes.Equal(got, big[:BlockSize]) {
		t.Fatal("block 256 differs after a huge write elsewhere")
	}
	if got := readBlock(t, d, 2048+7); !bytes.Equal(got, huge[7*BlockSize:8*BlockSize]) {
		t.Fatal("block 7 of the huge write differs")
	}
	if n := iters() - before; n != 2 {
		t.Fatalf("reads after a write of %d blocks opened %d pebble iterators, want 2: it drops the lineage's entries", newestForgetMax+1, n)
	}
}

// TestNewestCacheConcurrentWritersOfOneBlock: two writes of one block in
// flight together commit in some order; once both returned, what the
// cache answers is what pebble holds (a read of more than newestMaxRun
// blocks goes to pebble).
func TestNewestCacheConcurrentWritersOfOneBlock(t *testing.T) {
	m := modes[3] // mem-segments
	m.newestBlocks = 0
	e := newEnv(t, m)
	e.create("v", mib(4))
	d := e.attach("v")
	const blk = 40
	wide := make([]byte, (newestMaxRun+1)*BlockSize)
	// Settle in an order of their own, not always the commit order.
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	testHookBeforeSettle = func() {
		mu.Lock()
		d := time.Duration(rng.IntN(200)) * time.Microsecond
		mu.Unlock()
		time.Sleep(d)
	}
	defer func() { testHookBeforeSettle = nil }()
	for round := range 1000 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// Every third round the second writer writes 64 blocks
				// around blk: large writes settle their blocks too.
				off, n := uint64(blk*BlockSize), BlockSize
				if w == 1 && round%3 == 0 {
					off, n = (blk-32)*BlockSize, 64*BlockSize
				}
				if err := d.Write(off, fill(byte(round*2+w), n), 0); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if _, err := d.ReadAt(wide, (blk-8)*BlockSize); err != nil {
			t.Fatal(err)
		}
		truth := wide[8*BlockSize : 9*BlockSize]
		if got := readBlock(t, d, blk); !bytes.Equal(got, truth) {
			t.Fatalf("round %d: the cache answers one write, pebble holds the other", round)
		}
	}
}

// TestNewestCacheWriteStalledAcrossReclaim: a write has committed its new
// pointer but not yet settled the cache when reclaim removes the segment
// of the block's old slot. A read in between must not follow the cached
// old pointer into the removed file.
func TestNewestCacheWriteStalledAcrossReclaim(t *testing.T) {
	m := modes[3] // mem-segments
	m.segmentSlots, m.newestBlocks = 8, 0
	e := newEnv(t, m)
	e.create("v", mib(4))
	d := e.attach("v")
	const blocks = 64
	for round := range 2 { // the second round leaves only block 0's first slot live
		for b := range uint64(blocks) {
			if round == 1 && b == 0 {
				continue
			}
			if err := d.Write(b*BlockSize, fill(byte(b+uint64(round)), BlockSize), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	readBlock(t, d, 0) // cached: block 0's first slot
	// The gate opens when the test ends too, before the store's Close
	// (made earlier) waits for the write it holds.
	committed := make(chan struct{})
	resume, open := testwait.Gate(t)
	testHookBeforeSettle = func() {
		close(committed)
		<-resume
	}
	defer func() { testHookBeforeSettle = nil }()
	want := fill(99, BlockSize)
	done := make(chan error, 1)
	go func() { done <- d.Write(0, want, 0) }()
	testwait.Recv(t, committed, "the write to commit")
	testHookBeforeSettle = nil
	st, err := e.s.ReclaimSegments(1.0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Freed == 0 {
		t.Fatalf("reclaim %+v freed nothing", st)
	}
	p := make([]byte, BlockSize)
	_, rerr := d.ReadAt(p, 0)
	open()
	if err := testwait.Recv(t, done, "the write to settle"); err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatalf("read while the write had not settled: %v", rerr)
	}
	if !bytes.Equal(p, want) {
		t.Fatal("read while the write had not settled: not the committed data")
	}
	if got := readBlock(t, d, 0); !bytes.Equal(got, want) {
		t.Fatal("read after the write: not its data")
	}
}

// TestWritePrevFromNewestCache: a write takes the value it replaces from
// the cache when it holds the block, and records the same prev and epoch
// as one that asks pebble. The same script runs on a store without the
// cache; every head value must match byte for byte.
func TestWritePrevFromNewestCache(t *testing.T) {
	cached := newEnv(t, modes[4]) // disk-segments
	m := modes[4]
	m.newestBlocks = -1
	plain := newEnv(t, m)
	envs := []*env{cached, plain}
	disks := make([]*Disk, 2)
	for i, e := range envs {
		e.create("v", mib(1))
		disks[i] = e.attach("v")
	}
	head := func(e *env, blk uint64) ([]byte, bool) {
		e.s.mu.Lock()
		lin := e.s.volumes["v"].lin
		e.s.mu.Unlock()
		v, closer, err := e.s.db.Get(dataKey(nil, lin.rec.ID, blk, lin.rec.Head))
		if err != nil {
			return nil, false
		}
		defer closer.Close()
		return append([]byte(nil), v...), true
	}
	hits := 0
	for step, op := range []struct {
		name    string
		do      func(e *env, d *Disk) error
		touches []uint64
	}{
		{"write 0-1", func(e *env, d *Disk) error { return d.Write(0, fill(1, 2*BlockSize), 0) }, nil},
		{"rewrite 0-1 before a flush", func(e *env, d *Disk) error { return d.Write(0, fill(2, 2*BlockSize), 0) }, []uint64{0, 1}},
		{"flush", func(e *env, d *Disk) error { return d.Flush() }, nil},
		{"rewrite 0 after it", func(e *env, d *Disk) error { return d.Write(0, fill(3, BlockSize), 0) }, []uint64{0}},
		{"write 0-3", func(e *env, d *Disk) error { return d.Write(0, fill(4, 4*BlockSize), 0) }, []uint64{0, 1}},
		{"snapshot", func(e *env, d *Disk) error { e.snapshot("v", "s1"); return nil }, nil},
		{"zero 2, allocated", func(e *env, d *Disk) error { return d.Zero(2*BlockSize, BlockSize, NoHole) }, nil},
		{"write 2 over the zero marker", func(e *env, d *Disk) error { return d.Write(2*BlockSize, fill(5, BlockSize), 0) }, []uint64{2}},
		{"trim 3", func(e *env, d *Disk) error { return d.Trim(3*BlockSize, BlockSize, 0) }, nil},
		{"write 3 over the hole", func(e *env, d *Disk) error { return d.Write(3*BlockSize, fill(6, BlockSize), 0) }, []uint64{3}},
		{"snapshot again", func(e *env, d *Disk) error { e.snapshot("v", "s2"); return nil }, nil},
		{"write 1 after it (nothing at the head yet)", func(e *env, d *Disk) error { return d.Write(BlockSize, fill(7, BlockSize), 0) }, []uint64{1}},
		{"write 0-3 FUA", func(e *env, d *Disk) error { return d.Write(0, fill(8, 4*BlockSize), FUA) }, []uint64{0, 1, 2, 3}},
	} {
		c := cached.s.newest
		cached.s.mu.Lock()
		lin := cached.s.volumes["v"].lin
		cached.s.mu.Unlock()
		for _, blk := range op.touches {
			if _, ok := c.lookup(lin, lin.rec.Head, blk); !ok {
				t.Fatalf("step %d (%s): block %d is not in the cache, so the step tests nothing", step, op.name, blk)
			}
			hits++
		}
		for i, e := range envs {
			if err := op.do(e, disks[i]); err != nil {
				t.Fatalf("step %d (%s): %v", step, op.name, err)
			}
		}
		for blk := range uint64(4) {
			a, aok := head(cached, blk)
			b, bok := head(plain, blk)
			if aok != bok || !bytes.Equal(a, b) {
				t.Fatalf("after step %d (%s), block %d holds %x (%v) with the cache, %x (%v) without", step, op.name, blk, a, aok, b, bok)
			}
		}
	}
	if hits == 0 {
		t.Fatal("no write found its block in the cache")
	}
	for i, e := range envs {
		if got := e.read("v", 0, 4*BlockSize); !bytes.Equal(got, fill(8, 4*BlockSize)) {
			t.Fatalf("env %d: read back differs", i)
		}
	}
}

// TestNewestEntryHeld: what a cached entry says its key holds is what
// decoding the stored value says, for every kind of value the cache keeps.
func TestNewestEntryHeld(t *testing.T) {
	for _, val := range [][]byte{
		valueHole,
		valueZero,
		segValue{cur: pointer{seg: 3, slot: 9, crc: 0xabc}, epoch: 7, prevKind: prevNone}.append(nil),
		segValue{cur: pointer{seg: 3, slot: 9, crc: 0xabc}, epoch: 7, prevKind: prevHole}.append(nil),
		segValue{cur: pointer{seg: 3, slot: 9, crc: 0xabc}, epoch: 7, prevKind: prevPointer, prev: pointer{seg: 1, slot: 2, crc: 5}}.append(nil),
	} {
		e, ok := entryOf(4, val)
		if !ok {
			t.Fatalf("value %x not cached", val)
		}
		if got, want := e.held(), heldOf(val); got != want {
			t.Errorf("value %x: entry holds %+v, the value %+v", val, got, want)
		}
	}
}
