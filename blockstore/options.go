package blockstore

import (
	"log"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configure a Store. The zero value is usable: data on the real
// file system, defaults measured on a 2-core machine (see doc.go).
type Options struct {
	// FS is where pebble keeps its files; nil means the real file system.
	// Tests pass vfs.NewMem() to run the same body in memory.
	FS vfs.FS
	// Logf receives the store's log lines; nil means the standard logger.
	Logf func(format string, args ...any)
	// Warnf receives what an operator must see (the file system filling
	// up); nil means Logf.
	Warnf func(format string, args ...any)
	// Now is the clock for volume creation times; nil means time.Now.
	Now func() time.Time

	// CacheSize is pebble's block cache in bytes (default 192 MiB: with 256
	// the daemon peaked at 567 MiB RSS reading a 16-deep chain, with 192 at
	// 443, inside the 512 MiB target; 4 KiB random reads of a 2 GiB disk
	// miss either way).
	CacheSize int64
	// MemTableSize is one pebble memtable in bytes (default 32 MiB: with up
	// to four queued during a sequential burst, 64 MiB ones took the daemon
	// past 512 MiB RSS; see bench/RESULTS.md).
	MemTableSize uint64
	// NewestCacheBlocks is how many blocks' newest versions the store
	// keeps in memory for small reads (newest.go), NewestCacheEntryBytes
	// each: default DefaultNewestCacheBlocks (4 GiB of data in 64 MiB).
	// Negative keeps none.
	NewestCacheBlocks int
	// ValueSeparation stores 4 KiB block values in blob files (WiscKey)
	// so compactions move keys, not data. On by default; see bench/RESULTS.md.
	ValueSeparation *bool

	// Segments writes block data to append-only segment files, with
	// pebble holding 13-byte pointers to it (segment.go), instead of
	// storing each 4 KiB block as a pebble value. Either way the store
	// reads both forms.
	Segments bool

	// DirectIOMin, when positive, is the smallest run of blocks, in
	// bytes, that segment files write, and read when the page cache does
	// not hold it, with O_DIRECT (direct.go). 0 keeps everything in the
	// page cache. It only applies on the real file system (FS nil).
	DirectIOMin int

	// MinFreeSpace is the reserve: new data and growing metadata changes
	// are refused (ENOSPC) while the store's file system has less free
	// (default 256 MiB; see reserve.go).
	MinFreeSpace uint64
	// FreeSpace reports the bytes free for the store; nil means statfs of
	// the store's directory when FS is nil (the real file system), and no
	// reserve at all on any other FS. Tests inject it.
	FreeSpace func() (uint64, error)

	// segmentSlots overrides segmentSlots, so tests fill segments fast.
	segmentSlots int
	// tiles creates a new store in the form of tiles (formatTiles), and
	// upgrades a store of a key per block version (formatV1, formatV2)
	// to it. Not the default, and so not offered to the daemon, until
	// tiles cost no more CPU than keys per block on 4 KiB random writes
	// (bench/RESULTS.md, docs/design-extents.md). A store in tiles (or
	// part way to them) opens in tiles whatever this says.
	tiles bool

	// GCInterval is how often the background collector looks for dead
	// versions when nothing woke it (default 1s). Negative disables the
	// background collector; CollectGarbage still works.
	GCInterval time.Duration
}

// DefaultNewestCacheBlocks is the newest cache's default size in blocks.
const DefaultNewestCacheBlocks = 1 << 20

func (o *Options) fill() {
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	if o.Warnf == nil {
		o.Warnf = o.Logf
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize == 0 {
		o.CacheSize = 192 << 20
	}
	if o.NewestCacheBlocks == 0 {
		o.NewestCacheBlocks = DefaultNewestCacheBlocks
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 32 << 20
	}
	if o.ValueSeparation == nil {
		on := true
		o.ValueSeparation = &on
	}
	if o.MinFreeSpace == 0 {
		o.MinFreeSpace = 256 << 20
	}
	if o.GCInterval == 0 {
		o.GCInterval = time.Second
	}
}

// pebbleOptions turns Options into pebble's, starting from the values the
// design note measured (reference/design.md §1).
func (o *Options) pebbleOptions(cache *pebble.Cache) *pebble.Options {
	po := &pebble.Options{
		FS:                          o.FS,
		Cache:                       cache,
		FormatMajorVersion:          pebble.FormatValueSeparation,
		MemTableSize:                o.MemTableSize,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		LBaseMaxBytes:               256 << 20,
		WALBytesPerSync:             1 << 20,
		Logger:                      pebbleLogger{o.Logf},
	}
	po.CompactionConcurrencyRange = func() (int, int) { return 1, 2 }
	po.TargetFileSizes[0] = 8 << 20
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return blockCompression }
		po.Levels[i].BlockSize = valueBlockSize
	}
	if *o.ValueSeparation {
		po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{
				Enabled:               true,
				MinimumSize:           1024,
				MaxBlobReferenceDepth: 10,
				RewriteMinimumAge:     5 * time.Minute,
				TargetGarbageRatio:    0.2,
			}
		}
	}
	po.EnsureDefaults()
	return po
}

// valueBlockSize is pebble's block size, which with value separation is
// also the size of the blob-file blocks holding the 4 KiB block values.
// Four values per block halves the cache inserts, preads and cgo
// allocations of sequential reads (1 MiB NBD reads 751 -> 1,510 IOPS)
// while random 4 KiB reads stay level (41.9k vs 38.9k IOPS, within run
// noise); 32 KiB cost random reads 12% and 64 KiB 34% (bench/RESULTS.md).
const valueBlockSize = 16 << 10

// blockCompression compresses keys and block values with MinLZ (faster
// than pebble's default Snappy on amd64), but samples every tenth value
// block and stores values uncompressed while MinLZ saves under 10% of
// them: already-compressed or encrypted guest data is common, and
// compressing it anyway cost a fifth of the CPU of random 4 KiB writes.
var blockCompression = func() *sstable.CompressionProfile {
	p := *sstable.MinLZCompression
	p.Name = "vdiskd-adaptive-minlz"
	p.OtherBlocks = sstable.NoCompression.OtherBlocks
	p.AdaptiveReductionCutoffPercent = 10
	return &p
}()

// pebbleLogger routes pebble's own logging through Logf.
type pebbleLogger struct{ logf func(string, ...any) }

func (l pebbleLogger) Infof(format string, args ...any)  { l.logf("pebble: "+format, args...) }
func (l pebbleLogger) Errorf(format string, args ...any) { l.logf("pebble: error: "+format, args...) }
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.logf("pebble: fatal: "+format, args...)
	panic("pebble: fatal error")
}
