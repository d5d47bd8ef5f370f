package blockstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// mode is one way of running the store; run executes a test body in each.
type mode struct {
	name     string
	mem      bool
	valueSep bool
	segments bool
	// segmentSlots, when set, makes segments that small (in blocks) so
	// tests seal and reclaim them.
	segmentSlots int
	// newestBlocks sizes the newest cache: 0 the default, -1 none, a
	// small one to make it evict all the time.
	newestBlocks int
	// directMin is Options.DirectIOMin (disk modes): 0 off, BlockSize
	// to send every aligned run past the page cache.
	directMin int
	// tiles keeps data versions as tiles (Options.tiles), not a key
	// per block version.
	tiles bool
}

var modes = []mode{
	{"mem", true, true, false, 0, 0, 0, false},
	{"disk", false, true, false, 0, 0, 0, false},
	{"disk-novaluesep", false, false, false, 0, -1, 0, false},
	{"mem-segments", true, false, true, 64, 2 * newestShardCount, 0, false},
	{"disk-segments", false, false, true, 0, 0, 0, false},
	{"disk-segments-direct", false, false, true, 64, 2 * newestShardCount, BlockSize, false},
	// Tiles (the modes above keep a key per block version).
	{"mem-tiles", true, false, true, 64, 2 * newestShardCount, 0, true},
}

// env is one test's store, reopenable in the same mode.
type env struct {
	t    testing.TB
	mode mode
	dir  string
	fs   vfs.FS
	s    *Store

	mu  sync.Mutex // the clock is read on the data path too (the space guard)
	now time.Time

	// Bytes moved past the page cache by the stores closed so far.
	directWrote, directRead uint64
}

// tick is the store's clock: a second later at every reading.
func (e *env) tick() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(time.Second)
	return e.now
}

// advance moves the clock on by d.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

func run(t *testing.T, body func(t *testing.T, e *env)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, m)
			body(t, e)
		})
	}
}

func newEnv(t testing.TB, m mode) *env {
	e := &env{t: t, mode: m, now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)}
	if m.mem {
		e.fs, e.dir = vfs.NewMem(), "store"
	} else {
		e.dir = t.TempDir()
	}
	e.open()
	t.Cleanup(func() {
		if e.s != nil {
			if err := e.s.Close(); err != nil {
				t.Errorf("close at cleanup: %v", err)
			}
		}
	})
	return e
}

func (e *env) options() Options {
	vs := e.mode.valueSep
	return Options{
		FS:                e.fs,
		Logf:              func(f string, a ...any) { e.t.Logf(f, a...) },
		Now:               e.tick,
		CacheSize:         16 << 20,
		MemTableSize:      4 << 20,
		ValueSeparation:   &vs,
		Segments:          e.mode.segments,
		segmentSlots:      e.mode.segmentSlots,
		NewestCacheBlocks: e.mode.newestBlocks,
		DirectIOMin:       e.mode.directMin,
		tiles:             e.mode.tiles,
		GCInterval:        -1,      // tests run the collector explicitly
		MinFreeSpace:      1 << 20, // whatever the machine's disk has left
	}
}

func (e *env) open() {
	e.t.Helper()
	s, err := Open(e.dir, e.options())
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.s = s
}

func (e *env) reopen() {
	e.t.Helper()
	st := e.s.SegmentStats()
	e.directWrote += st.DirectWritten
	e.directRead += st.DirectRead
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.open()
}

func (e *env) create(id string, size uint64) VolumeInfo {
	e.t.Helper()
	v, err := e.s.Create(CreateRequest{ID: id, Pool: "local", Size: size})
	if err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
	return v
}

func (e *env) snapshot(src, id string) VolumeInfo {
	e.t.Helper()
	vs, err := e.s.Snapshot(SnapshotRequest{Source: src, ID: id})
	if err != nil {
		e.t.Fatalf("snapshot %s: %v", src, err)
	}
	return vs[0]
}

func (e *env) attach(id string) *Disk {
	e.t.Helper()
	d, err := e.s.Attach(id)
	if err != nil {
		e.t.Fatalf("attach %s: %v", id, err)
	}
	e.t.Cleanup(func() { d.Close() })
	return d
}

func (e *env) write(id string, off uint64, p []byte) {
	e.t.Helper()
	d := e.attach(id)
	defer d.Close()
	if err := d.Write(off, p, 0); err != nil {
		e.t.Fatalf("write %s at %d: %v", id, off, err)
	}
}

func (e *env) read(id string, off uint64, n int) []byte {
	e.t.Helper()
	d := e.attach(id)
	defer d.Close()
	p := make([]byte, n)
	if _, err := d.ReadAt(p, int64(off)); err != nil {
		e.t.Fatalf("read %s at %d: %v", id, off, err)
	}
	return p
}

func (e *env) changed(from, to string) []uint32 {
	e.t.Helper()
	bm, _, err := e.s.ChangedBlocks(from, to)
	if err != nil {
		e.t.Fatalf("changed blocks %s..%s: %v", from, to, err)
	}
	return bm.ToArray()
}

// fill returns n bytes of a pattern unique to seed.
func fill(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>9)
		if p[i] == 0 {
			p[i] = seed | 1
		}
	}
	return p
}

func mib(n uint64) uint64 { return n << 20 }

func name(i int) string { return fmt.Sprintf("v%d", i) }

// directIO returns the bytes written and read past the page cache by
// this env's stores, reopens included.
func (e *env) directIO() (wrote, read uint64) {
	st := e.s.SegmentStats()
	return e.directWrote + st.DirectWritten, e.directRead + st.DirectRead
}
