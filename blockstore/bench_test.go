package blockstore

// Benchmarks of the block store. Every family that has a meaningful
// bare-pebble equivalent runs it next to the store, with the very same
// pebble.Options (Options.fill + Options.pebbleOptions), key layout
// (dataKey of lineage 1 at generation 1) and concurrency, so the results
// read as ratios: store / pebble is the store's own overhead.
//
// The whole suite, as run for bench/raw-blockstore.txt (about 4 minutes on
// a 2-core machine; ~10 GiB goes through the temp dir, at most ~2.5 GiB of
// it at once):
//
//	go test -run '^$' -bench . -benchtime=2s -timeout 30m ./blockstore/ | tee bench/raw-blockstore.txt
//
// Families (select with -bench, e.g. -bench 'Read4KRandom/store'):
//
//	Write4KRandom/{store,pebble}-{valuesep,novaluesep}   4 KiB random writes, NoSync, 4 goroutines (op = 16384 writes; see ns/write)
//	Write4KRandom/store-segments                         the same into segment files (the daemon's default)
//	Read4KRandom/{store,pebble}-{valuesep,novaluesep}    4 KiB random reads of 256 MiB, 4 goroutines
//	Read4KRandom/store-segments                          the same from segment files
//	Write1MSeq/{store,store-segments,pebble}            1 MiB sequential, one goroutine
//	Read1MSeq/{store,store-segments,pebble}
//	Snapshot/{256MiB,2GiB}                               one Store.Snapshot of a volume holding that much data
//	ChangedBlocks/<size>-<changed>/{list,list+encode}    Store.ChangedBlocks (+ cbt.Encode) between two snapshots
//	ChainRead/{depth0-live,depth16-live,depth16-oldest,clone16-leaf}
//	WriteAmp/{store,pebble}-{valuesep,novaluesep}        bytes pebble wrote per byte written (metric "wamp")
//
// Notes for readers of the numbers:
//   - Real disk (b.TempDir), production defaults (256 MiB cache, 64 MiB
//     memtables) except the background collector, which is off.
//   - Prefills happen once per sub-benchmark, outside the timer, and are
//     reused by the calibration reruns (b.N = 1, then larger); they end with
//     a full flush + compaction (Store.Compact, or the same two calls on the
//     bare DB), so no contender starts with compaction debt. The shapes still
//     differ: the store's marker ('c') and record ('M', 'l', 'v') keys make
//     flushed files span the data range, so pebble merges where the bare DB
//     only moves files, and later rewrites more blob values (blobcomp-*).
//   - Random offsets come from math/rand with fixed seeds; the store and its
//     baseline draw the same sequence.
//   - Read families report misses/op: block-cache misses per op (the cache
//     is 256 MiB, about the size of the data read), i.e. reads that went to
//     the OS; compare it before blaming the read path for a gap.
//   - Numbers from a shared 2-core machine are noisy (±20% run to run was
//     seen when other test binaries ran); compare with -count and benchstat.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

const (
	benchWorkers = 4 // goroutines of the concurrent families (the NBD server writes concurrently)
	benchLin     = 1 // lineage of the first volume of a fresh store
	benchGen     = 1 // its head generation before any snapshot
	benchMiB     = 1 << 20
	benchGiB     = 1 << 30
)

// benchLogf drops pebble's chatter and keeps anything that looks like trouble.
func benchLogf(format string, args ...any) {
	if strings.Contains(format, "error") || strings.Contains(format, "fatal") || strings.Contains(format, "fail") {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

func benchOptions(valueSep bool) Options {
	return Options{Logf: benchLogf, ValueSeparation: &valueSep, GCInterval: -1}
}

func benchVSName(on bool) string {
	if on {
		return "valuesep"
	}
	return "novaluesep"
}

// benchLazy is a fixture built on first use inside a sub-benchmark (timer
// stopped) and reused by its calibration reruns; the parent releases it
// once the sub-benchmarks that share it are done. Its directory belongs to
// the parent: a sub-benchmark's TempDir is removed after every rerun.
type benchLazy[T any] struct {
	dir   string
	build func(b *testing.B, dir string) T
	v     T
	done  bool
	close func(T) error
}

func newBenchLazy[T any](b *testing.B, build func(b *testing.B, dir string) T, close func(T) error) *benchLazy[T] {
	return &benchLazy[T]{dir: b.TempDir(), build: build, close: close}
}

func (l *benchLazy[T]) get(b *testing.B) T {
	if !l.done {
		b.StopTimer()
		l.v = l.build(b, l.dir)
		l.done = true
		b.StartTimer()
	}
	return l.v
}

// release closes the fixture; b is the parent's.
func (l *benchLazy[T]) release(b *testing.B) {
	if !l.done {
		return
	}
	l.done = false
	if err := l.close(l.v); err != nil {
		b.Errorf("close fixture: %v", err)
	}
	if err := os.RemoveAll(l.dir); err != nil {
		b.Errorf("remove fixture: %v", err)
	}
}

// benchStore is a store with one attached live volume "v" (lineage 1).
type benchStore struct {
	s    *Store
	d    *Disk
	size uint64
	seq  int    // snapshot names handed out so far
	pos  uint64 // sequential cursor
}

func openBenchStore(b *testing.B, dir string, valueSep bool, size uint64) *benchStore {
	return openBenchStoreWith(b, dir, benchOptions(valueSep), size)
}

// benchSegmentOptions puts block data in segment files (the daemon's
// default), pebble holding pointers without value separation.
func benchSegmentOptions() Options {
	o := benchOptions(false)
	o.Segments = true
	return o
}

func openBenchStoreWith(b *testing.B, dir string, o Options, size uint64) *benchStore {
	s, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Create(CreateRequest{ID: "v", Pool: "bench", Size: size}); err != nil {
		s.Close()
		b.Fatal(err)
	}
	d, err := s.Attach("v")
	if err != nil {
		s.Close()
		b.Fatal(err)
	}
	if id, head := d.v.lin.rec.ID, d.v.lin.rec.Head; id != benchLin || head != benchGen {
		d.Close()
		s.Close()
		b.Fatalf("fresh volume has lineage %d head %d; the baselines assume %d/%d", id, head, benchLin, benchGen)
	}
	return &benchStore{s: s, d: d, size: size}
}

func (f *benchStore) close() error {
	err := f.d.Close()
	if cerr := f.s.Close(); err == nil {
		err = cerr
	}
	return err
}

// benchPebble is a bare pebble DB opened exactly as the store opens its own.
type benchPebble struct {
	db   *pebble.DB
	size uint64 // the "volume" it stands for
	pos  uint64
}

func openBenchPebble(b *testing.B, dir string, valueSep bool, size uint64) *benchPebble {
	o := benchOptions(valueSep)
	o.fill()
	cache := pebble.NewCache(o.CacheSize)
	db, err := pebble.Open(dir, o.pebbleOptions(cache))
	cache.Unref()
	if err != nil {
		b.Fatal(err)
	}
	return &benchPebble{db: db, size: size}
}

func (f *benchPebble) close() error { return f.db.Close() }

// benchWorker is one goroutine's generator and scratch space.
type benchWorker struct {
	r           *rand.Rand
	buf         []byte
	seq         uint64
	key, lo, hi [dataKeyLen]byte
}

func newBenchWorkers(n int, seed int64, bufSize int) []*benchWorker {
	ws := make([]*benchWorker, n)
	for i := range ws {
		w := &benchWorker{r: rand.New(rand.NewSource(seed + int64(i))), buf: make([]byte, bufSize)}
		w.r.Read(w.buf)
		ws[i] = w
	}
	return ws
}

// payload returns the buffer with every 4 KiB block stamped with a fresh
// sequence number: no two writes carry the same bytes, and none is all
// zeros (which the store would store as a one-byte marker).
func (w *benchWorker) payload() []byte {
	w.seq++
	for off := 0; off+8 <= len(w.buf); off += BlockSize {
		binary.LittleEndian.PutUint64(w.buf[off:], w.seq|1<<63)
	}
	return w.buf
}

func (w *benchWorker) block(nblocks uint64) uint64 { return uint64(w.r.Int63n(int64(nblocks))) }

// runParallel performs ops 0..n-1 spread over the workers' goroutines.
func runParallel(ws []*benchWorker, n int, op func(w *benchWorker, i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for k, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := op(w, i); err != nil {
					errs[k] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// --- the operations, store and bare pebble --------------------------------

func pebbleWrite4K(db *pebble.DB, w *benchWorker, blk uint64) error {
	bt := db.NewBatch()
	_ = bt.Set(dataKey(w.key[:0], benchLin, blk, benchGen), w.payload(), nil)
	err := bt.Commit(pebble.NoSync)
	if cerr := bt.Close(); err == nil {
		err = cerr
	}
	return err
}

// pebbleWriteRun writes len(p)/4 KiB consecutive blocks from first in one batch.
func pebbleWriteRun(db *pebble.DB, w *benchWorker, first uint64, p []byte) error {
	bt := db.NewBatch()
	for i := 0; i < len(p)/BlockSize; i++ {
		_ = bt.Set(dataKey(w.key[:0], benchLin, first+uint64(i), benchGen), p[i*BlockSize:(i+1)*BlockSize], nil)
	}
	err := bt.Commit(pebble.NoSync)
	if cerr := bt.Close(); err == nil {
		err = cerr
	}
	return err
}

// pebbleRead4K is what the store does for a 4 KiB read of a live volume:
// one bounded iterator, one SeekGE to the newest version, copy the value.
func pebbleRead4K(db *pebble.DB, w *benchWorker, blk uint64) error {
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: dataKey(w.lo[:0], benchLin, blk, ^uint64(0)),
		UpperBound: dataKey(w.hi[:0], benchLin, blk+1, ^uint64(0)),
	})
	if err != nil {
		return err
	}
	if !it.SeekGE(dataKey(w.key[:0], benchLin, blk, cbt.Head)) {
		it.Close()
		return fmt.Errorf("pebble: block %d missing", blk)
	}
	v, err := it.ValueAndErr()
	if err != nil {
		it.Close()
		return err
	}
	copy(w.buf, v)
	return it.Close()
}

// pebbleReadRun reads len(w.buf)/4 KiB consecutive blocks from first with
// one iterator: SeekGE once, then Next.
func pebbleReadRun(db *pebble.DB, w *benchWorker, first uint64) error {
	n := uint64(len(w.buf) / BlockSize)
	it, err := db.NewIter(&pebble.IterOptions{
		LowerBound: dataKey(w.lo[:0], benchLin, first, ^uint64(0)),
		UpperBound: dataKey(w.hi[:0], benchLin, first+n, ^uint64(0)),
	})
	if err != nil {
		return err
	}
	got := uint64(0)
	for ok := it.SeekGE(dataKey(w.key[:0], benchLin, first, cbt.Head)); ok; ok = it.Next() {
		blk := binary.BigEndian.Uint64(it.Key()[9:])
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		copy(w.buf[(blk-first)<<blockShift:], v)
		got++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("pebble: read %d of %d blocks at %d", got, n, first)
	}
	return nil
}

// --- prefill and settle ---------------------------------------------------

// prefillStore writes [0, n) of the volume with 1 MiB writes.
func prefillStore(b *testing.B, d *Disk, n uint64) {
	w := newBenchWorkers(1, 99, benchMiB)[0]
	for off := uint64(0); off < n; off += benchMiB {
		if err := d.Write(off, w.payload(), 0); err != nil {
			b.Fatal(err)
		}
	}
}

// prefillPebble writes the same keys as prefillStore, 256 per batch.
func prefillPebble(b *testing.B, db *pebble.DB, n uint64) {
	w := newBenchWorkers(1, 99, benchMiB)[0]
	for off := uint64(0); off < n; off += benchMiB {
		if err := pebbleWriteRun(db, w, off>>blockShift, w.payload()); err != nil {
			b.Fatal(err)
		}
	}
}

func settleStore(b *testing.B, s *Store) {
	if err := s.Compact(); err != nil {
		b.Fatal(err)
	}
}

// settlePebble does what Store.Compact does.
func settlePebble(b *testing.B, db *pebble.DB) {
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
}

// reportMisses reports block-cache misses per op since m0, the value of
// cacheMisses before the timed loop: reads that left the cache went to the
// OS (page cache or disk), which is where read throughputs part ways.
func reportMisses(b *testing.B, db *pebble.DB, m0 int64) {
	b.ReportMetric(float64(cacheMisses(db)-m0)/float64(b.N), "misses/op")
}

func cacheMisses(db *pebble.DB) int64 { return db.Metrics().BlockCache.Misses }

// --- 1. 4 KiB random writes, 8. value separation on/off -------------------

const (
	write4KVolume = 1 * benchGiB
	write4KChunk  = 16384 // writes per op: 64 MiB, one memtable
)

// BenchmarkWrite4KRandom: one op is a chunk of 16384 random 4 KiB writes
// (64 MiB) from 4 goroutines, NoSync, into a 1 GiB volume that was fully
// written and settled first; calibration reruns keep writing into the same
// database. Chunks rather than one write per op keep the amount written, and
// so the flush and compaction work paid inside the timer, alike for every
// contender: with single-write ops the faster one got a larger b.N and paid
// for more compactions. Compare ns/write (or MB/s); wamp-window and
// blobcomp-window (bytes pebble wrote, and blob values compactions rewrote,
// per byte written while the timer ran) tell a slower store path from an
// LSM that happens to be doing more work.
func BenchmarkWrite4KRandom(b *testing.B) {
	chunk := func(b *testing.B, db *pebble.DB, write func(w *benchWorker, blk uint64) error) {
		ws := newBenchWorkers(benchWorkers, 1, BlockSize)
		nblk := uint64(write4KVolume / BlockSize)
		b.SetBytes(write4KChunk * BlockSize)
		w0 := physicalWrites(db)
		b.ResetTimer()
		err := runParallel(ws, b.N*write4KChunk, func(w *benchWorker, _ int) error {
			return write(w, w.block(nblk))
		})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		w1 := physicalWrites(db)
		user := float64(b.N * write4KChunk * BlockSize)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*write4KChunk), "ns/write")
		// What pebble wrote while the timer ran (compaction debt left at the
		// end is not in it; BenchmarkWriteAmp has the full account).
		b.ReportMetric(float64(w1.total()-w0.total())/user, "wamp-window")
		b.ReportMetric(float64(w1.blobCompacted-w0.blobCompacted)/user, "blobcomp-window")
	}
	for _, vs := range []bool{true, false} {
		st := newBenchLazy(b, func(b *testing.B, dir string) *benchStore {
			f := openBenchStore(b, dir, vs, write4KVolume)
			prefillStore(b, f.d, write4KVolume)
			settleStore(b, f.s)
			return f
		}, (*benchStore).close)
		b.Run("store-"+benchVSName(vs), func(b *testing.B) {
			f := st.get(b)
			chunk(b, f.s.db, func(w *benchWorker, blk uint64) error {
				return f.d.Write(blk<<blockShift, w.payload(), 0)
			})
		})
		st.release(b)

		pb := newBenchLazy(b, func(b *testing.B, dir string) *benchPebble {
			f := openBenchPebble(b, dir, vs, write4KVolume)
			prefillPebble(b, f.db, write4KVolume)
			settlePebble(b, f.db)
			return f
		}, (*benchPebble).close)
		b.Run("pebble-"+benchVSName(vs), func(b *testing.B) {
			f := pb.get(b)
			chunk(b, f.db, func(w *benchWorker, blk uint64) error {
				return pebbleWrite4K(f.db, w, blk)
			})
		})
		pb.release(b)
	}
	for _, c := range segmentForms() {
		sg := newBenchLazy(b, func(b *testing.B, dir string) *benchStore {
			f := openBenchStoreWith(b, dir, c.o, write4KVolume)
			prefillStore(b, f.d, write4KVolume)
			settleStore(b, f.s)
			return f
		}, (*benchStore).close)
		b.Run(c.name, func(b *testing.B) {
			f := sg.get(b)
			chunk(b, f.s.db, func(w *benchWorker, blk uint64) error {
				return f.d.Write(blk<<blockShift, w.payload(), 0)
			})
		})
		sg.release(b)
	}
}

// benchForm is a store form a benchmark runs against.
type benchForm struct {
	name string
	o    Options
}

// segmentForms are the forms with data in segments: a pointer per block,
// and tiles.
func segmentForms() []benchForm {
	tiles := benchSegmentOptions()
	tiles.tiles = true
	return []benchForm{{"store-segments", benchSegmentOptions()}, {"store-tiles", tiles}}
}

// --- 2. 4 KiB random reads, 8. value separation on/off --------------------

const readVolume = 256 * benchMiB

func buildReadStore(vs bool) func(b *testing.B, dir string) *benchStore {
	return buildReadStoreWith(benchOptions(vs))
}

func buildReadStoreWith(o Options) func(b *testing.B, dir string) *benchStore {
	return func(b *testing.B, dir string) *benchStore {
		f := openBenchStoreWith(b, dir, o, readVolume)
		prefillStore(b, f.d, readVolume)
		settleStore(b, f.s)
		return f
	}
}

func buildReadPebble(vs bool) func(b *testing.B, dir string) *benchPebble {
	return func(b *testing.B, dir string) *benchPebble {
		f := openBenchPebble(b, dir, vs, readVolume)
		prefillPebble(b, f.db, readVolume)
		settlePebble(b, f.db)
		return f
	}
}

// benchReadDisk4K runs random 4 KiB reads of d (first nblk blocks) on the
// worker goroutines.
func benchReadDisk4K(b *testing.B, d *Disk, nblk uint64) {
	ws := newBenchWorkers(benchWorkers, 2, BlockSize)
	b.SetBytes(BlockSize)
	m0 := cacheMisses(d.s.db)
	b.ResetTimer()
	err := runParallel(ws, b.N, func(w *benchWorker, _ int) error {
		_, err := d.ReadAt(w.buf, int64(w.block(nblk)<<blockShift))
		return err
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	reportMisses(b, d.s.db, m0)
}

func BenchmarkRead4KRandom(b *testing.B) {
	for _, vs := range []bool{true, false} {
		st := newBenchLazy(b, buildReadStore(vs), (*benchStore).close)
		b.Run("store-"+benchVSName(vs), func(b *testing.B) {
			f := st.get(b)
			benchReadDisk4K(b, f.d, f.size/BlockSize)
		})
		st.release(b)

		pb := newBenchLazy(b, buildReadPebble(vs), (*benchPebble).close)
		b.Run("pebble-"+benchVSName(vs), func(b *testing.B) {
			f := pb.get(b)
			ws := newBenchWorkers(benchWorkers, 2, BlockSize)
			nblk := f.size / BlockSize
			b.SetBytes(BlockSize)
			m0 := cacheMisses(f.db)
			b.ResetTimer()
			err := runParallel(ws, b.N, func(w *benchWorker, _ int) error {
				return pebbleRead4K(f.db, w, w.block(nblk))
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			reportMisses(b, f.db, m0)
		})
		pb.release(b)
	}
	sg := newBenchLazy(b, buildReadStoreWith(benchSegmentOptions()), (*benchStore).close)
	b.Run("store-segments", func(b *testing.B) {
		f := sg.get(b)
		benchReadDisk4K(b, f.d, f.size/BlockSize)
	})
	sg.release(b)
}

// --- 3. 1 MiB sequential writes and reads ---------------------------------

const seqVolume = 1 * benchGiB

func BenchmarkWrite1MSeq(b *testing.B) {
	for _, c := range append([]benchForm{{"store", benchOptions(true)}}, segmentForms()...) {
		st := newBenchLazy(b, func(b *testing.B, dir string) *benchStore {
			return openBenchStoreWith(b, dir, c.o, seqVolume)
		}, (*benchStore).close)
		b.Run(c.name, func(b *testing.B) {
			f := st.get(b)
			w := newBenchWorkers(1, 3, benchMiB)[0]
			b.SetBytes(benchMiB)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.d.Write(f.pos, w.payload(), 0); err != nil {
					b.Fatal(err)
				}
				f.pos = (f.pos + benchMiB) % f.size
			}
		})
		st.release(b)
	}

	pb := newBenchLazy(b, func(b *testing.B, dir string) *benchPebble {
		return openBenchPebble(b, dir, true, seqVolume)
	}, (*benchPebble).close)
	b.Run("pebble", func(b *testing.B) {
		f := pb.get(b)
		w := newBenchWorkers(1, 3, benchMiB)[0]
		b.SetBytes(benchMiB)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := pebbleWriteRun(f.db, w, f.pos>>blockShift, w.payload()); err != nil {
				b.Fatal(err)
			}
			f.pos = (f.pos + benchMiB) % f.size
		}
	})
	pb.release(b)
}

func BenchmarkRead1MSeq(b *testing.B) {
	for _, c := range append([]benchForm{{"store", benchOptions(true)}}, segmentForms()...) {
		st := newBenchLazy(b, buildReadStoreWith(c.o), (*benchStore).close)
		b.Run(c.name, func(b *testing.B) {
			f := st.get(b)
			p := make([]byte, benchMiB)
			b.SetBytes(benchMiB)
			m0 := cacheMisses(f.s.db)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.d.ReadAt(p, int64(f.pos)); err != nil {
					b.Fatal(err)
				}
				f.pos = (f.pos + benchMiB) % f.size
			}
			b.StopTimer()
			reportMisses(b, f.s.db, m0)
		})
		st.release(b)
	}

	pb := newBenchLazy(b, buildReadPebble(true), (*benchPebble).close)
	b.Run("pebble", func(b *testing.B) {
		f := pb.get(b)
		w := newBenchWorkers(1, 3, benchMiB)[0]
		b.SetBytes(benchMiB)
		m0 := cacheMisses(f.db)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := pebbleReadRun(f.db, w, f.pos>>blockShift); err != nil {
				b.Fatal(err)
			}
			f.pos = (f.pos + benchMiB) % f.size
		}
		b.StopTimer()
		reportMisses(b, f.db, m0)
	})
	pb.release(b)
}

// --- 4. snapshot cost against data size -----------------------------------

// BenchmarkSnapshot times one Store.Snapshot (an fsynced metadata commit) of
// a volume holding 256 MiB or 2 GiB of written data. Before each snapshot,
// outside the timer, one 4 KiB write makes the interval it seals non-empty.
// The first snapshot of the fixture seals the prefill's interval (every
// 64 KiB block of the volume); it runs during the N=1 calibration.
func BenchmarkSnapshot(b *testing.B) {
	for _, c := range []struct {
		name string
		size uint64
	}{{"256MiB", 256 * benchMiB}, {"2GiB", 2 * benchGiB}} {
		st := newBenchLazy(b, func(b *testing.B, dir string) *benchStore {
			f := openBenchStore(b, dir, true, c.size)
			prefillStore(b, f.d, c.size)
			settleStore(b, f.s)
			return f
		}, (*benchStore).close)
		b.Run(c.name, func(b *testing.B) {
			f := st.get(b)
			w := newBenchWorkers(1, 4, BlockSize)[0]
			nblk := f.size / BlockSize
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := f.d.Write(w.block(nblk)<<blockShift, w.payload(), 0); err != nil {
					b.Fatal(err)
				}
				f.seq++
				id := fmt.Sprintf("s%d", f.seq)
				b.StartTimer()
				if _, err := f.s.Snapshot(SnapshotRequest{Source: "v", ID: id}); err != nil {
					b.Fatal(err)
				}
			}
		})
		st.release(b)
	}
}

// --- 5. ListChangedBlocks -------------------------------------------------

// cbtFixture is a CBT-enabled volume with snapshots "from" and "to" and
// `changed` random 64 KiB blocks written (one 4 KiB each) in between.
type cbtFixture struct {
	*benchStore
	changed uint64
}

func buildCBT(size, changed uint64) func(b *testing.B, dir string) *cbtFixture {
	return func(b *testing.B, dir string) *cbtFixture {
		f := openBenchStore(b, dir, true, size)
		if _, err := f.s.EnableCBT("v"); err != nil {
			b.Fatal(err)
		}
		if _, err := f.s.Snapshot(SnapshotRequest{Source: "v", ID: "from"}); err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewSource(5))
		pick := roaring.New()
		nc := int64(cbt.Blocks(size))
		for pick.GetCardinality() < changed {
			pick.Add(uint32(r.Int63n(nc)))
		}
		list := pick.ToArray()
		ws := newBenchWorkers(benchWorkers, 6, BlockSize)
		err := runParallel(ws, len(list), func(w *benchWorker, i int) error {
			off := uint64(list[i])<<16 + uint64(w.r.Intn(16))<<blockShift
			return f.d.Write(off, w.payload(), 0)
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.s.Snapshot(SnapshotRequest{Source: "v", ID: "to"}); err != nil {
			b.Fatal(err)
		}
		bm, _, err := f.s.ChangedBlocks("from", "to")
		if err != nil {
			b.Fatal(err)
		}
		if !bm.Equals(pick) {
			b.Fatalf("ChangedBlocks returned %d blocks, want the %d written", bm.GetCardinality(), changed)
		}
		return &cbtFixture{f, changed}
	}
}

// BenchmarkChangedBlocks: "list" is Store.ChangedBlocks alone, which should
// scale with the changed blocks; "list+encode" adds cbt.Encode, the XenAPI
// base64 bitmap, whose length is fixed by the virtual size (2 MiB raw for
// 1 TiB). 1TiB-10485blk has as many changed blocks as 64GiB-1pct.
func BenchmarkChangedBlocks(b *testing.B) {
	const tib = 1 << 40
	for _, c := range []struct {
		name    string
		size    uint64
		changed uint64
	}{
		{"1TiB-1pct", tib, cbt.Blocks(tib) / 100},
		{"1TiB-0.1pct", tib, cbt.Blocks(tib) / 1000},
		{"64GiB-1pct", 64 * benchGiB, cbt.Blocks(64*benchGiB) / 100},
		{"1TiB-10485blk", tib, cbt.Blocks(64*benchGiB) / 100},
	} {
		st := newBenchLazy(b, buildCBT(c.size, c.changed), func(f *cbtFixture) error { return f.close() })
		for _, encode := range []bool{false, true} {
			sub := "list"
			if encode {
				sub = "list+encode"
			}
			b.Run(c.name+"/"+sub, func(b *testing.B) {
				f := st.get(b)
				var out int
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					bm, size, err := f.s.ChangedBlocks("from", "to")
					if err != nil {
						b.Fatal(err)
					}
					if encode {
						out = len(cbt.Encode(bm, size))
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(f.changed), "blocks")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(f.changed), "ns/block")
				if encode {
					b.ReportMetric(float64(out), "B64-bytes")
				}
			})
		}
		st.release(b)
	}
}

// --- 6. reads through a snapshot chain ------------------------------------

const (
	chainVolume = 256 * benchMiB
	chainDepth  = 16
)

// buildChain writes chainVolume, then chainDepth rounds each rewriting
// 1/chainDepth of the blocks (random, fixed seed, same for every variant).
// before(i) runs before round i: nothing (depth 0), a snapshot "s<i>"
// (depth 16), or a clone "c<i>" that the rest of the rounds write (clones).
// The live disk of the result is f.d (re-attached for clones).
func buildChain(b *testing.B, dir string, kind string) *benchStore {
	f := openBenchStore(b, dir, true, chainVolume)
	prefillStore(b, f.d, chainVolume)
	nblk := uint64(chainVolume / BlockSize)
	r := rand.New(rand.NewSource(7))
	w := newBenchWorkers(1, 8, BlockSize)[0]
	for round := 1; round <= chainDepth; round++ {
		switch kind {
		case "snapshots":
			if _, err := f.s.Snapshot(SnapshotRequest{Source: "v", ID: fmt.Sprintf("s%d", round)}); err != nil {
				b.Fatal(err)
			}
		case "clones":
			src := f.d.ID()
			id := fmt.Sprintf("c%d", round)
			if _, err := f.s.Clone(CloneRequest{Source: src, ID: id}); err != nil {
				b.Fatal(err)
			}
			d, err := f.s.Attach(id)
			if err != nil {
				b.Fatal(err)
			}
			f.d.Close()
			f.d = d
		}
		for i := uint64(0); i < nblk/chainDepth; i++ {
			if err := f.d.Write(uint64(r.Int63n(int64(nblk)))<<blockShift, w.payload(), 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	settleStore(b, f.s)
	return f
}

// BenchmarkChainRead: random 4 KiB reads (4 goroutines) of the live volume
// with no snapshots (depth0-live, same write history), of the live volume
// and of the oldest snapshot with 16 snapshots taken between rewrites, and,
// for contrast, of the leaf of a 16-deep clone chain (reads fall through
// up to 17 lineages; not a snapshot chain).
func BenchmarkChainRead(b *testing.B) {
	nblk := uint64(chainVolume / BlockSize)
	closeFn := (*benchStore).close

	d0 := newBenchLazy(b, func(b *testing.B, dir string) *benchStore { return buildChain(b, dir, "none") }, closeFn)
	b.Run("depth0-live", func(b *testing.B) { benchReadDisk4K(b, d0.get(b).d, nblk) })
	d0.release(b)

	d16 := newBenchLazy(b, func(b *testing.B, dir string) *benchStore { return buildChain(b, dir, "snapshots") }, closeFn)
	b.Run("depth16-live", func(b *testing.B) { benchReadDisk4K(b, d16.get(b).d, nblk) })
	b.Run("depth16-oldest", func(b *testing.B) {
		f := d16.get(b)
		b.StopTimer()
		d, err := f.s.Attach("s1")
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		b.StartTimer()
		benchReadDisk4K(b, d, nblk)
	})
	d16.release(b)

	c16 := newBenchLazy(b, func(b *testing.B, dir string) *benchStore { return buildChain(b, dir, "clones") }, closeFn)
	b.Run("clone16-leaf", func(b *testing.B) { benchReadDisk4K(b, c16.get(b).d, nblk) })
	c16.release(b)
}

// --- 7. write amplification, 8. value separation on/off -------------------

const (
	wampVolume = 256 * benchMiB
	wampWrites = 2 * wampVolume / BlockSize // 512 MiB of 4 KiB random writes
)

// diskWrites is what pebble wrote to disk so far: WAL, sstables (flushes
// and compactions) and blob files (flushes and compactions), plus the part
// of the blob bytes that compactions wrote (values rewritten, not new).
//
// NB pebble v2.1.7 books a flush's blob files under both BlobBytesFlushed
// and BlobBytesCompacted (compaction.go, makeVersionEdit), so the sum of the
// two, which LevelMetrics.WriteAmp uses, counts flushed values twice. Here
// BlobBytesCompacted alone is every blob byte written, and the difference is
// what compactions rewrote. Recheck on a pebble upgrade.
type diskWrites struct {
	wal, sst, blob, blobCompacted uint64
}

func (w diskWrites) total() uint64 { return w.wal + w.sst + w.blob }

func physicalWrites(db *pebble.DB) diskWrites {
	m := db.Metrics()
	w := diskWrites{wal: m.WAL.BytesWritten}
	for i := range m.Levels {
		l := &m.Levels[i]
		w.sst += l.TableBytesFlushed + l.TableBytesCompacted
		w.blob += l.BlobBytesCompacted
		w.blobCompacted += l.BlobBytesCompacted - l.BlobBytesFlushed
	}
	return w
}

// storedBytes is the size of the live sstables and live blob files (WAL
// excluded).
func storedBytes(db *pebble.DB) uint64 {
	m := db.Metrics()
	n := m.BlobFiles.LiveSize
	for i := range m.Levels {
		n += uint64(m.Levels[i].TablesSize)
	}
	return n
}

// BenchmarkWriteAmp: one op is a fresh database taking 512 MiB of 4 KiB
// random writes over a 256 MiB volume (4 goroutines, NoSync, the same
// offsets for every contender), then a flush and a full compaction, all
// timed. Metrics, per byte the caller wrote:
//
//	wamp-flushed      WAL + sstables + blob files written once the memtable
//	                  is flushed: pebble's own compactions so far included
//	blobcomp-flushed  the part of that which compactions (not flushes) wrote
//	                  into blob files: values rewritten, e.g. when an output
//	                  table would exceed MaxBlobReferenceDepth
//	wamp              everything, after the full compaction (Store.Compact)
//	wal/B sst/B blob/B blobcomp/B   its split (blobcomp/B is part of blob/B)
//	space             live sstables + live blob files after compaction, per
//	                  distinct byte the volume holds (blob files keep
//	                  overwritten values until pebble rewrites them)
func BenchmarkWriteAmp(b *testing.B) {
	nblk := uint64(wampVolume / BlockSize)
	offs := make([]uint64, wampWrites)
	live := roaring.New()
	r := rand.New(rand.NewSource(9))
	for i := range offs {
		offs[i] = uint64(r.Int63n(int64(nblk)))
		live.Add(uint32(offs[i]))
	}
	user := float64(wampWrites * BlockSize)
	liveBytes := float64(live.GetCardinality() * BlockSize)

	// one runs the workload on a database that open returns with its
	// per-write function and closer.
	type contender struct {
		db      *pebble.DB
		write   func(w *benchWorker, blk uint64) error
		compact func() error // flush + full compaction
		close   func() error
	}
	one := func(b *testing.B, open func(dir string) contender) {
		b.SetBytes(int64(user))
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dir := b.TempDir()
			c := open(dir)
			db := c.db
			ws := newBenchWorkers(benchWorkers, 10, BlockSize)
			b.StartTimer()
			if err := runParallel(ws, len(offs), func(w *benchWorker, i int) error {
				return c.write(w, offs[i])
			}); err != nil {
				b.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
			flushed := physicalWrites(db)
			if err := c.compact(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			all := physicalWrites(db)
			b.ReportMetric(float64(flushed.total())/user, "wamp-flushed")
			b.ReportMetric(float64(flushed.blobCompacted)/user, "blobcomp-flushed")
			b.ReportMetric(float64(all.total())/user, "wamp")
			b.ReportMetric(float64(all.wal)/user, "wal/B")
			b.ReportMetric(float64(all.sst)/user, "sst/B")
			b.ReportMetric(float64(all.blob)/user, "blob/B")
			b.ReportMetric(float64(all.blobCompacted)/user, "blobcomp/B")
			b.ReportMetric(float64(storedBytes(db))/liveBytes, "space")
			if err := c.close(); err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(dir)
			b.StartTimer()
		}
	}
	for _, vs := range []bool{true, false} {
		b.Run("store-"+benchVSName(vs), func(b *testing.B) {
			one(b, func(dir string) contender {
				f := openBenchStore(b, dir, vs, wampVolume)
				return contender{
					db: f.s.db,
					write: func(w *benchWorker, blk uint64) error {
						return f.d.Write(blk<<blockShift, w.payload(), 0)
					},
					compact: f.s.Compact,
					close:   f.close,
				}
			})
		})
		b.Run("pebble-"+benchVSName(vs), func(b *testing.B) {
			one(b, func(dir string) contender {
				f := openBenchPebble(b, dir, vs, wampVolume)
				return contender{
					db:    f.db,
					write: func(w *benchWorker, blk uint64) error { return pebbleWrite4K(f.db, w, blk) },
					compact: func() error { // what Store.Compact does
						if err := f.db.Flush(); err != nil {
							return err
						}
						return f.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
					},
					close: f.close,
				}
			})
		})
	}
}

// --- 9. One database per daemon, or one per pool? -------------------------

// BenchmarkFlushPools measures what an NBD FLUSH costs when guests wrote to
// volumes in 4 pools: one store holding all 4 volumes (one WAL, one fsync),
// versus 4 stores, one per pool (4 WALs, 4 fsyncs). Each op is one 4 KiB
// write to each volume, then the flush(es).
func BenchmarkFlushPools(b *testing.B) {
	const pools = 4
	payload := fill(1, BlockSize)
	b.Run("one-db", func(b *testing.B) {
		s, err := Open(b.TempDir(), benchOptions(true))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		var disks []*Disk
		for i := 0; i < pools; i++ {
			if _, err := s.Create(CreateRequest{ID: fmt.Sprint(i), Pool: fmt.Sprint(i), Size: benchMiB}); err != nil {
				b.Fatal(err)
			}
			d, err := s.Attach(fmt.Sprint(i))
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			disks = append(disks, d)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, d := range disks {
				if err := d.Write(0, payload, 0); err != nil {
					b.Fatal(err)
				}
			}
			if err := disks[0].Flush(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("db-per-pool", func(b *testing.B) {
		var disks []*Disk
		for i := 0; i < pools; i++ {
			s, err := Open(b.TempDir(), benchOptions(true))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Create(CreateRequest{ID: "v", Size: benchMiB}); err != nil {
				b.Fatal(err)
			}
			d, err := s.Attach("v")
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			disks = append(disks, d)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, d := range disks {
				if err := d.Write(0, payload, 0); err != nil {
					b.Fatal(err)
				}
			}
			for _, d := range disks {
				if err := d.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkReclaimScan is reclaim's look at sealed segments (what the
// background pass does every 30 s): each slot's liveness, through its
// reverse key and its data key, on 1.5 GiB written sequentially with a
// quarter then overwritten at random, so no segment is worth moving
// (maxLive 0: the pass only scans). Per op: one pass over every sealed
// segment; the slots-scanned metric says how many.
//
//	go test -run '^$' -bench BenchmarkReclaimScan -benchtime 10x ./blockstore
func BenchmarkReclaimScan(b *testing.B) {
	const size = 3 * benchGiB / 2
	f := openBenchStoreWith(b, b.TempDir(), benchSegmentOptions(), size)
	defer f.close()
	w := newBenchWorkers(1, 7, benchMiB)[0]
	for off := uint64(0); off < size; off += benchMiB {
		if err := f.d.Write(off, w.payload(), 0); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewSource(9))
	for range size / BlockSize / 4 {
		blk := uint64(rng.Int63n(int64(size / BlockSize)))
		if err := f.d.Write(blk*BlockSize, w.payload()[:BlockSize], 0); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.d.Flush(); err != nil {
		b.Fatal(err)
	}
	var scanned int
	b.ResetTimer()
	for b.Loop() {
		st, err := f.s.reclaim(0, 0)
		if err != nil {
			b.Fatal(err)
		}
		if st.Freed != 0 || st.Scanned == 0 {
			b.Fatalf("the pass freed %d and scanned %d segments; want a scan only", st.Freed, st.Scanned)
		}
		scanned = st.Scanned
	}
	b.ReportMetric(float64(scanned*f.s.segs.slots), "slots-scanned")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(scanned*f.s.segs.slots), "ns/slot")
}
