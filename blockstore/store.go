package blockstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// formatV2 is the layout of a key per block version, the default; Open
// upgrades it (and formatV1) to formatTiles with Options.tiles.
const formatV2 = "vdiskd-blockstore-v2"

// formatTiles is the layout of data versions as tiles (tiles.go), block
// data always in segments: Options.tiles.
const formatTiles = "vdiskd-blockstore-v3"

// formatV1 is v2 without reverse keys of runs longer than one slot: every
// v1 store is a v2 store, but a v1 build would misread a v2 one, so the
// upgrade is recorded.
const formatV1 = "vdiskd-blockstore-v1"

// Store is a set of copy-on-write volumes in one pebble database. One
// database per daemon rather than per pool: one WAL means one fsync covers
// every volume on FLUSH, and one cache and memtable budget bounds RSS.
type Store struct {
	opts  Options
	db    *pebble.DB
	cache *pebble.Cache

	mu          sync.Mutex // metadata: volumes, lineages, pins, intervals, GC jobs
	closed      bool
	failed      error // a metadata commit failed; memory may be ahead of disk
	volumes     map[string]*volume
	lineages    map[uint64]*lineage
	nextLineage uint64
	gcJobs      []gcJob

	// data is held (read) by every data-path operation so Close can wait
	// for them and then refuse new ones; pebble panics on use after close.
	data       sync.RWMutex
	dataClosed bool

	gc gcWorker

	newest      *newestCache // the newest version of recently read blocks; nil for none
	segs        *segments    // block data outside pebble (segment.go)
	reclaimNext uint32       // where the background reclaim goes on; under gc.mu
	reclaimed   atomic.Uint64
	moved       atomic.Uint64

	space *spaceGuard // nil: no reserve kept (in-memory file systems)

	// tiles: data versions are tiles ('t' keys), not a key per block
	// ('d'); set once at Open from the store's format, or by the upgrade
	// Open runs when upgrade is set. tileCache keeps chunks' tiles for
	// their writers; nil for none.
	tiles     bool
	upgrade   bool
	tileCache *tileCache
}

// Open opens (or creates) the store in dir. Pebble's lock file makes a
// second Open of the same directory fail while the first is open.
func Open(dir string, opts Options) (*Store, error) {
	opts.fill()
	free := opts.FreeSpace
	if free == nil && opts.FS == nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
		}
		free = statfsFree(dir)
	}
	space := newSpaceGuard(free, opts.MinFreeSpace, opts.Now, opts.Warnf)
	cache := pebble.NewCache(opts.CacheSize)
	po := opts.pebbleOptions(cache)
	po.FS = vfs.OnDiskFull(po.FS, space.diskFull)
	db, err := pebble.Open(dir, po)
	cache.Unref() // the DB holds its own reference
	if err != nil {
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	directMin := 0 // O_DIRECT is for the real file system only
	if opts.FS == nil {
		directMin = max(opts.DirectIOMin, 0)
	}
	segs, err := openSegments(po.FS, dir, directMin, space.diskFull)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	if opts.segmentSlots > 0 {
		segs.slots = opts.segmentSlots
	}
	s := &Store{
		opts: opts, db: db, space: space, segs: segs,
		volumes: map[string]*volume{}, lineages: map[uint64]*lineage{},
		nextLineage: 1,
	}
	if err := s.load(); err != nil {
		db.Close()
		segs.close()
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	if n, err := s.recoverSegments(); err != nil {
		db.Close()
		segs.close()
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	} else if n > 0 {
		opts.Warnf("blockstore: power-loss recovery: %d blocks whose data never reached the disk read as their last durable version", n)
	}
	if err := s.removeUnreferencedSegments(); err != nil {
		db.Close()
		segs.close()
		return nil, fmt.Errorf("blockstore: open %s: %w", dir, err)
	}
	if s.upgrade {
		st, err := s.upgradeToTiles()
		if err != nil {
			db.Close()
			segs.close()
			return nil, fmt.Errorf("blockstore: open %s: upgrade to %s: %w", dir, formatTiles, err)
		}
		s.useTiles()
		opts.Warnf("blockstore: upgraded the store format to %s: %d blocks in %d chunks became %d tiles (%d blocks of data moved from pebble into segments); builds before it refuse this store", formatTiles, st.blocks, st.chunks, st.tiles, st.moved)
	}
	// Only now: recovery changed versions with nothing cached to drop.
	s.newest = newNewestCache(opts.NewestCacheBlocks)
	if s.tiles {
		s.tileCache = newTileCache(int64(opts.NewestCacheBlocks) * tileCacheBytesPerBlock)
	}
	s.gc.start(s)
	return s, nil
}

// Close stops the collector, syncs and closes the database. It reports
// Disk handles still attached (they are unusable afterwards).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	var leaked []string
	for id, v := range s.volumes {
		if v.attached.Load() > 0 {
			leaked = append(leaked, id)
		}
	}
	s.mu.Unlock()
	s.gc.stop()
	s.gc.mu.Lock() // wait for a CollectGarbage call already running
	s.gc.mu.Unlock()
	s.data.Lock()
	s.dataClosed = true
	s.data.Unlock()
	err := s.segs.sync()
	if err == nil {
		// Every segment is durable now: the next Open checks none of them.
		b := s.db.NewBatch()
		putMetaUint32(b, metaSegmentsDurable, s.segs.nextSegment())
		err = commit(b, true)
	}
	if cerr := s.db.Close(); err == nil {
		err = cerr
	}
	if cerr := s.segs.close(); err == nil {
		err = cerr
	}
	if err == nil && len(leaked) > 0 {
		sort.Strings(leaked)
		err = fmt.Errorf("blockstore: close: leaked attached volumes %v", leaked)
	}
	return err
}

// Flush makes every write acknowledged so far durable. Concurrent flushes
// share one fsync: pebble's log writer groups pending sync requests.
func (s *Store) Flush() error {
	s.data.RLock()
	defer s.data.RUnlock()
	if s.dataClosed {
		return fmt.Errorf("blockstore: flush: %w", ErrClosed)
	}
	return s.flush()
}

// flush is Flush for callers already inside s.data (a second RLock could
// deadlock against a waiting Close).
func (s *Store) flush() error {
	// Data before the pointers that name it: a pointer made durable by
	// this sync never names a slot still in the page cache only.
	if err := s.segs.sync(); err != nil {
		return fmt.Errorf("blockstore: flush: %w", err)
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("blockstore: flush: %w", err)
	}
	return nil
}

func commit(b *pebble.Batch, sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	err := b.Commit(opt)
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	return err
}

func putJSON(b *pebble.Batch, key []byte, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own record types reach here
	}
	_ = b.Set(key, buf, nil)
}

func putNextLineage(b *pebble.Batch, next uint64) {
	_ = b.Set(storeMetaKey("next-lineage"), binary.BigEndian.AppendUint64(nil, next), nil)
}

// load rebuilds the in-memory state from the database: records, pins,
// sealed intervals, and the live intervals from their markers.
func (s *Store) load() error {
	if err := s.checkFormat(); err != nil {
		return err
	}
	if v, closer, err := s.db.Get(storeMetaKey("next-lineage")); err == nil {
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("%w: next-lineage", ErrCorrupt)
		}
		s.nextLineage = binary.BigEndian.Uint64(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}

	// Lineages, parents before children (a clone's ID is always larger).
	var recs []lineageRecord
	if err := s.scan(tagLineage, func(k, v []byte) error {
		var r lineageRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: lineage %x: %v", ErrCorrupt, k, err)
		}
		recs = append(recs, r)
		return nil
	}); err != nil {
		return err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	for _, r := range recs {
		var parent *lineage
		if r.Parent != 0 {
			parent = s.lineages[r.Parent]
			if parent == nil {
				return fmt.Errorf("%w: lineage %d has missing parent %d", ErrCorrupt, r.ID, r.Parent)
			}
			addPin(parent.dataPins, r.ParentGen)
		}
		s.lineages[r.ID] = newLineage(r, parent)
	}

	if err := s.scan(tagVolume, func(k, v []byte) error {
		var r volumeRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("%w: volume %q: %v", ErrCorrupt, k[1:], err)
		}
		lin := s.lineages[r.Lineage]
		if lin == nil {
			return fmt.Errorf("%w: volume %s has missing lineage %d", ErrCorrupt, r.ID, r.Lineage)
		}
		vol := newVolume(r, lin)
		switch r.Kind {
		case KindLive:
			lin.live = vol
		case KindSnapshot:
			addPin(lin.dataPins, r.Gen)
		case KindCBTMetadata:
			addPin(lin.cbtPins, r.Gen)
		default:
			return fmt.Errorf("%w: volume %s has kind %q", ErrCorrupt, r.ID, r.Kind)
		}
		s.volumes[r.ID] = vol
		return nil
	}); err != nil {
		return err
	}

	if err := s.scan(tagInterval, func(k, v []byte) error {
		id, end, err := decodeIntervalKey(k)
		if err != nil {
			return err
		}
		bm := roaring.New()
		if err := bm.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("%w: interval %d/%d: %v", ErrCorrupt, id, end, err)
		}
		if lin := s.lineages[id]; lin != nil {
			return lin.intervals.Seal(end, bm)
		}
		return nil
	}); err != nil {
		return err
	}

	// The live interval: markers are committed in the same batch as the data
	// they describe, so every surviving write has its marker.
	if err := s.scan(tagMarker, func(k, _ []byte) error {
		id, start, end, err := decodeMarkerKey(k)
		if err != nil {
			return err
		}
		if lin := s.lineages[id]; lin != nil {
			lin.liveBM.AddRange(start, end)
		}
		return nil
	}); err != nil {
		return err
	}

	if err := s.scan(tagGC, func(k, v []byte) error {
		id, lo, hi, err := decodeGCKey(k)
		if err != nil {
			return err
		}
		j := gcJob{lin: id, lo: lo, hi: hi}
		if len(v) > 0 {
			j.blocks = roaring.New()
			if err := j.blocks.UnmarshalBinary(v); err != nil {
				return fmt.Errorf("%w: gc job %d/%d: %v", ErrCorrupt, id, lo, err)
			}
		}
		s.gcJobs = append(s.gcJobs, j)
		return nil
	}); err != nil {
		return err
	}

	for _, lin := range s.lineages {
		if lin.rec.ID >= s.nextLineage {
			return fmt.Errorf("%w: lineage %d at or past next-lineage %d", ErrCorrupt, lin.rec.ID, s.nextLineage)
		}
		lin.orphan = lin.computeOrphan()
		lin.shared = len(lin.dataPins) > 0
		if lin.orphan != nil {
			lin.pending = roaring.And(lin.orphan, lin.liveBM)
		}
	}
	// Finish drops a crash interrupted.
	for _, lin := range s.lineages {
		if lin.unused() {
			if err := s.dropLineage(lin); err != nil {
				return err
			}
		}
	}
	return nil
}

// useTiles puts the store in the tile form, whose block data is always in
// segments.
func (s *Store) useTiles() { s.tiles, s.opts.Segments = true, true }

// versionTag is the tag of the keys data versions live under: tiles, or a
// key per block.
func (s *Store) versionTag() byte {
	if s.tiles {
		return tagTile
	}
	return tagData
}

func (s *Store) checkFormat() error {
	v, closer, err := s.db.Get(storeMetaKey("format"))
	if errors.Is(err, pebble.ErrNotFound) {
		if !s.opts.tiles {
			return s.setFormat(formatV2)
		}
		s.useTiles()
		return s.setFormat(formatTiles)
	}
	if err != nil {
		return err
	}
	found := string(v)
	closer.Close()
	switch {
	case found == formatTiles:
		s.useTiles()
		return nil
	case found == formatUpgrading, (found == formatV2 || found == formatV1) && s.opts.tiles:
		s.upgrade = true // after recovery, in the form the keys are in now
		return nil
	case found == formatV2:
		return nil
	case found == formatV1:
		if err := s.setFormat(formatV2); err != nil {
			return err
		}
		s.opts.Warnf("blockstore: upgraded the store format from %s to %s; builds that read only %s now refuse this store", found, formatV2, found)
		return nil
	}
	return fmt.Errorf("%w: format %q, this build reads %q and %q (and upgrades %q)", ErrCorrupt, found, formatV2, formatTiles, formatV1)
}

// scan calls fn for every key with the tag. Key and value are only valid
// during the call.
func (s *Store) scan(tag byte, fn func(k, v []byte) error) error {
	lo, hi := tagSpan(tag)
	return s.scanSpan(lo, hi, fn)
}

func (s *Store) scanSpan(lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}
