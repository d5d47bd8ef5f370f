package blockstore

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Segment files hold block data outside pebble (SPEC §2: bulk data in
// append-only container files, extents and CBT in pebble). A write is one
// pwrite of its blocks into consecutive slots of the open segment and a
// small pebble batch of pointers; a read is a pointer lookup and one pread
// per run of adjacent slots, served by the page cache. Data is written
// once: no WAL copy, no memtable flush, no compaction rewrite.
//
// Slots are never rewritten. A segment is only appended to while it is the
// open one; the next Open starts a new one.

// segmentSlots is the capacity of one segment in 4 KiB slots: 256 MiB, a
// few thousand files for a terabyte held.
const segmentSlots = 1 << 16

const segmentSuffix = ".seg"

// segmentLanes is how many segments are appended to at once. ext4 holds a
// file's inode lock through each buffered write: four writers appending to
// one file made 450 MB/s on the 2-core test machine, to four files 9 GB/s.
const segmentLanes = 4

// lane is one segment being appended to.
type lane struct {
	open     *segmentFile // nil until the lane's first write
	nextSlot uint32       // first free slot of open
}

// segmentDir is where segments live, inside the store's directory (pebble
// ignores what it does not recognise there).
const segmentDir = "segments"

type segmentFile struct {
	id   uint32
	f    vfs.File
	path string
	// dfd is the file's O_DIRECT descriptor (direct.go): dfdUntried
	// until the first large run, dfdNone where O_DIRECT is off or failed.
	dfd  atomic.Int32
	used uint32 // slots handed out (or found on disk at Open); under segments.mu
	// writers counts reservations whose pointers are not committed yet
	// (under segments.mu): reclaim must not take a segment a lane has
	// just left while a write into it has no reverse key to show.
	writers int
}

// segments is the set of segment files of a store.
type segments struct {
	fs  vfs.FS
	dir string

	// directMin is the smallest run that bypasses the page cache
	// (direct.go); 0 never does. diskFull hears of ENOSPC from those
	// writes, which pebble's vfs wrapper does not see.
	directMin               int
	diskFull                func()
	directWrote, directRead atomic.Uint64 // bytes moved with O_DIRECT

	mu       sync.Mutex
	slots    int // segmentSlots; smaller in tests, to seal segments sooner
	retiring map[uint32]bool
	// nRetiring is len(retiring), read by writers without the lock.
	nRetiring atomic.Int32
	files     map[uint32]*segmentFile
	lanes     [segmentLanes]lane
	nextLane  atomic.Uint32
	nextID    uint32 // id of the next segment to create
	dirty     map[uint32]*segmentFile
	newFiles  bool // a segment was created since the last sync: sync the directory

	syncMu sync.Mutex // one sync at a time

	// readers is held (read) by every read from its pointer lookups to its
	// preads; remove takes it to wait out reads that may hold pointers
	// into the segment it removes.
	readers sync.RWMutex

	// Sync epochs: started counts syncs begun, done is the number of the
	// last one finished (they run one at a time, so in order). A slot
	// whose write returned epoch e is durable once done > e. Segments of
	// earlier runs (below runFirst) were synced and checked by Open.
	started, done atomic.Uint32
	runFirst      uint32
}

func segmentName(id uint32) string { return fmt.Sprintf("%08x%s", id, segmentSuffix) }

func parseSegmentName(name string) (uint32, bool) {
	hex, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(hex) != 8 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 32)
	return uint32(id), err == nil
}

// openSegments opens every segment in dir/segments, creating the
// directory if needed. New writes go to a new segment. Runs of at least
// directMin bytes bypass the page cache (0: none do); diskFull hears of
// their ENOSPC.
func openSegments(fs vfs.FS, dir string, directMin int, diskFull func()) (*segments, error) {
	sdir := fs.PathJoin(dir, segmentDir)
	if err := fs.MkdirAll(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("blockstore: segments: %w", err)
	}
	if err := syncDir(fs, dir); err != nil { // the directory's own entry
		return nil, fmt.Errorf("blockstore: segments: %w", err)
	}
	names, err := fs.List(sdir)
	if err != nil {
		return nil, fmt.Errorf("blockstore: segments: %w", err)
	}
	sort.Strings(names)
	s := &segments{fs: fs, dir: sdir, slots: segmentSlots, retiring: map[uint32]bool{},
		files: map[uint32]*segmentFile{}, dirty: map[uint32]*segmentFile{},
		directMin: directMin, diskFull: diskFull}
	for _, name := range names {
		id, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		f, err := fs.Open(fs.PathJoin(sdir, name))
		if err != nil {
			s.close()
			return nil, fmt.Errorf("blockstore: segment %s: %w", name, err)
		}
		sf := newSegmentFile(id, f, fs.PathJoin(sdir, name))
		if fi, err := f.Stat(); err == nil {
			sf.used = uint32((fi.Size() + BlockSize - 1) >> blockShift)
		}
		s.files[id] = sf
		s.nextID = max(s.nextID, id+1)
	}
	s.runFirst = s.nextID
	return s, nil
}

// startAfter makes new segments number from at least id, past any a
// pointer still names (a segment file whose directory entry a power cut
// lost must not get a second life under the same number).
func (s *segments) startAfter(id uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID = max(s.nextID, id)
	s.runFirst = s.nextID
}

// sealed lists, in ascending order, the segments no lane appends to and
// no write still fills. No write can start filling one afterwards.
func (s *segments) sealed() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	open := map[uint32]bool{}
	for _, l := range s.lanes {
		if l.open != nil {
			open[l.open.id] = true
		}
	}
	var ids []uint32
	for id, sf := range s.files {
		if !open[id] && sf.writers == 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// setRetiring marks a segment whose slots are being copied forward (see
// reclaim.go for what writers do about it).
func (s *segments) setRetiring(id uint32, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.retiring[id] = true
	} else {
		delete(s.retiring, id)
	}
	s.nRetiring.Store(int32(len(s.retiring)))
}

func (s *segments) isRetiring(id uint32) bool {
	if s.nRetiring.Load() == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retiring[id]
}

// remove deletes a sealed segment's file; nothing may name it any more.
func (s *segments) remove(id uint32) error {
	s.readers.Lock()
	s.mu.Lock()
	sf := s.files[id]
	delete(s.files, id)
	delete(s.dirty, id)
	s.mu.Unlock()
	s.readers.Unlock()
	if sf == nil {
		return nil
	}
	err := sf.close()
	if rerr := s.fs.Remove(s.fs.PathJoin(s.dir, segmentName(id))); err == nil {
		err = rerr
	}
	if err == nil {
		err = syncDir(s.fs, s.dir)
	}
	if err != nil {
		return fmt.Errorf("blockstore: remove segment %08x: %w", id, err)
	}
	return nil
}

// usage returns how many segment files there are and how many slots they
// have handed out, live or dead.
func (s *segments) usage() (files int, slots uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sf := range s.files {
		slots += uint64(sf.used)
	}
	return len(s.files), slots
}

// nextSegment is the number the next new segment will get.
func (s *segments) nextSegment() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextID
}

// durable reports whether the slot p names is on stable storage.
func (s *segments) durable(p pointer, epoch uint32) bool {
	return p.seg < s.runFirst || epoch < s.done.Load()
}

// reserve hands out n consecutive slots (n <= segmentSlots), starting a
// new segment when the lane's open one is too full. Successive calls
// take successive lanes. Call release once the slots' pointers are
// committed (or never will be).
func (s *segments) reserve(n int) (*segmentFile, uint32, error) {
	l := &s.lanes[s.nextLane.Add(1)%segmentLanes]
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.open == nil || int(l.nextSlot)+n > s.slots {
		if s.nextID == ^uint32(0) {
			return nil, 0, errors.New("blockstore: segment ids exhausted")
		}
		id := s.nextID
		f, err := s.fs.OpenReadWrite(s.fs.PathJoin(s.dir, segmentName(id)), vfs.WriteCategoryUnspecified)
		if err != nil {
			return nil, 0, fmt.Errorf("blockstore: new segment: %w", err)
		}
		s.nextID++
		l.open = newSegmentFile(id, f, s.fs.PathJoin(s.dir, segmentName(id)))
		s.files[id] = l.open
		l.nextSlot = 0
		s.newFiles = true
	}
	slot := l.nextSlot
	l.nextSlot += uint32(n)
	l.open.used = l.nextSlot
	l.open.writers++
	return l.open, slot, nil
}

// release ends a reservation of sf's slots.
func (s *segments) release(sf *segmentFile) {
	s.mu.Lock()
	sf.writers--
	s.mu.Unlock()
}

// write stores p (whole blocks) at slot of sf, then marks the segment for
// the next sync, and returns the write's epoch. Marking after the write
// means a sync that starts after this returns always covers it; reading
// the epoch after marking means any sync numbered above it does.
func (s *segments) write(sf *segmentFile, slot uint32, p []byte) (epoch uint32, err error) {
	if !s.writeDirect(sf, p, int64(slot)<<blockShift) {
		if _, err := sf.f.WriteAt(p, int64(slot)<<blockShift); err != nil {
			return 0, fmt.Errorf("blockstore: segment %08x: %w", sf.id, err)
		}
	}
	s.mu.Lock()
	s.dirty[sf.id] = sf
	s.mu.Unlock()
	return s.started.Load(), nil
}

// readAt fills p (whole blocks) from slot of segment id.
func (s *segments) readAt(p []byte, id, slot uint32) error {
	s.mu.Lock()
	sf := s.files[id]
	s.mu.Unlock()
	if sf == nil {
		return fmt.Errorf("blockstore: %w: segment %08x is missing", ErrCorrupt, id)
	}
	n, done, err := s.readDirect(sf, p, int64(slot)<<blockShift)
	if !done {
		n, err = sf.f.ReadAt(p, int64(slot)<<blockShift)
	}
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == io.EOF {
		// Past the end: the segment lost its tail (power loss before a
		// sync); the caller's checksum decides what that means.
		clear(p[n:])
		return nil
	}
	if err != nil {
		return fmt.Errorf("blockstore: segment %08x: %w", id, err)
	}
	return nil
}

// sync makes every write that returned before the call durable: the data
// of every segment written since the last sync, and the directory entries
// of new segments. It must precede any commit that promises those writes
// durable (FLUSH, FUA, snapshots).
func (s *segments) sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	n := s.started.Add(1)
	s.mu.Lock()
	var dirty map[uint32]*segmentFile // nil when clean: s.dirty stays the writers'
	if len(s.dirty) > 0 {
		dirty, s.dirty = s.dirty, map[uint32]*segmentFile{}
	}
	newFiles := s.newFiles
	s.newFiles = false
	s.mu.Unlock()
	fail := func(err error) error {
		// Whatever did not sync must be synced by the next caller.
		s.mu.Lock()
		for id, sf := range dirty {
			s.dirty[id] = sf
		}
		s.newFiles = s.newFiles || newFiles
		s.mu.Unlock()
		return fmt.Errorf("blockstore: sync segments: %w", err)
	}
	for _, sf := range dirty {
		if err := sf.f.SyncData(); err != nil {
			return fail(err)
		}
	}
	if newFiles {
		if err := syncDir(s.fs, s.dir); err != nil {
			return fail(err)
		}
	}
	s.done.Store(n)
	return nil
}

func (s *segments) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for id, sf := range s.files {
		if err := sf.close(); err != nil && first == nil {
			first = fmt.Errorf("blockstore: close segment %08x: %w", id, err)
		}
	}
	s.files, s.lanes = nil, [segmentLanes]lane{}
	return first
}

// segmentPath is for tests and tools: the file of segment id under dir.
func segmentPath(dir string, id uint32) string {
	return filepath.Join(dir, segmentDir, segmentName(id))
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
