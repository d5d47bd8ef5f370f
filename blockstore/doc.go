// Package blockstore keeps virtual disks (volumes) copy-on-write in one
// pebble database, with O(1) snapshots, clones that share every unchanged
// block, changed-block tracking, and background garbage collection.
//
// # Model
//
// A volume writes into a lineage: a history of generations. The live
// volume writes at the lineage's head generation; a snapshot is nothing but
// "freeze head, head++" plus a record naming the frozen generation, so it
// costs O(1) whatever the volume holds. A clone is a new lineage whose reads
// that find nothing fall through to (parent lineage, frozen generation).
// Reads of a snapshot see the newest version at or below its generation.
//
// # Keys
//
//	'd' lineage(8) block(8) ^gen(8) -> segment pointer | 4 KiB data | "" (discarded) | "z" (zeroed, allocated)
//
// One SeekGE on (lineage, block, ^gen) lands on the newest version at or
// below gen, so reading through any number of snapshots costs one seek per
// block (dm-thin's lesson, not qcow2's O(depth) chains); a clone costs one
// seek more per ancestor, only for blocks it never wrote. Blocks are 4 KiB
// so a guest's 4 KiB write is one key with no read-modify-write; smaller or
// unaligned writes read the block first, under a stripe lock that also
// orders them against whole-block writes of the same block. All-zero data
// blocks are stored as the one-byte "z" marker.
//
// # Tiles
//
//	't' lineage(8) last(8) -> first(8), then versions newest first:
//	    gen(8) kind(1) [seg(4) slot(4) epoch(4) crc(4) x blocks]    (tiles.go)
//
// The extent form (store format v3, Options.tiles; docs/design-extents.md):
// for each lineage, block ranges that never overlap and never cross a
// 2 MiB chunk, each with the stack of versions that cover all of it, so a
// 1 MiB write is one tile and a 1 MiB read one seek. A write cuts the
// tiles it overlaps at its edges, puts its version on top of each piece
// and joins pieces that continue each other (planTiles, pure, scripted in
// testdata/tiles); writers of a chunk take turns from reading its tiles to
// committing (writetiles.go), planning from a cache of the chunks they
// touched (tilecache.go). Every part of the store works on tiles (the
// collector, reclaim, power-loss recovery, the upgrade of a v2 store on
// open: gctiles.go, reclaimtiles.go, recovertiles.go, upgrade.go) and
// every store test runs on them too; they are not the default while a
// 4 KiB random write costs more CPU on them (bench/RESULTS.md).
//
// Metadata (volumes, lineages, sealed intervals, change markers, GC jobs)
// lives under other tag bytes in the same database, and every metadata
// change is one batch committed with fsync: atomic and durable when it
// returns. If such a commit fails the store refuses further work until it
// is reopened from what the disk holds.
//
// # Segments
//
// Block data lives outside pebble in append-only segment files of 256
// MiB. A write is one pwrite into consecutive slots of one of four open
// segments (ext4 serialises writers of one file) plus a small pebble batch:
// its tiles and one reverse key per run of slots ('r' seg slot -> lineage,
// first block, generation, run length); a read is a seek and one pread
// per run of adjacent slots, CRC checked. Data is written once: the WAL
// carries 1% of the bytes and compactions move tiles.
//
// Durability: FLUSH, FUA writes and metadata commits fdatasync the dirty
// segments before their pebble sync. pebble can still make a tile durable
// before its slots (a memtable flush, the kernel's writeback of the WAL),
// so a version that replaces another at the same generation keeps it as a
// shadow until its own slots are durable; after a power cut, Open checks
// the slots of the segments written since the last clean close through
// their reverse keys and, block by block, turns every version whose slot
// fails its CRC back into its shadow, or drops it (recovertiles.go). The
// collector syncs segments before deleting versions a newer one replaced,
// so what a shadow or an older generation names is still there.
//
// Slots die when their key is overwritten or deleted; a sealed segment
// whose live share is at most a half is reclaimed: live blocks copied
// forward, then the file removed (reclaim.go; a background pass looks at
// four sealed segments every 30 s).
//
// # The write path
//
// A write, trim or zero is plan, then apply (writeplan.go, write.go,
// writetiles.go). planSteps, pure, says what the request's blocks become:
// data from the client's buffer, partial blocks to read and merge, zero
// markers, blocks to drop, or discard markers over what is visible. The
// writer gathers the new versions those steps name, writes their data to
// segment slots, then, chunk by chunk under the chunk's lock, planTiles,
// pure, turns them and the chunk's tiles into the batch's tiles and
// reverse keys, and says whether the segments must sync first. One batch
// commits, with the CBT marker. Both planners run as scripts in
// testdata/write_plan and testdata/tiles.
//
// # Durability
//
// Writes commit without fsync and are acknowledged; Flush is one fsync of
// the dirty segments and one of the shared WAL (concurrent flushes share it: pebble's log writer groups
// sync requests); a FUA write commits with fsync. Snapshot commits with
// fsync too, so a snapshot holds every write acknowledged before the call,
// durably. Writes hold a lineage read lock from reading the head
// generation to their commit, and a snapshot takes it exclusively, so no
// write can land in a generation after it was frozen.
//
// # Changed-block tracking
//
// Each write batch carries a marker key naming the 64 KiB blocks it
// touched, unless the live interval already holds them. The marker commits
// atomically with the data, so after any crash every surviving write has
// its marker, and the live interval is rebuilt from markers in O(changed
// blocks): CBT may over-report, never under-report, and is never left
// "inconsistent". A snapshot seals the live interval into a roaring bitmap
// (package cbt) and deletes the markers in the same batch. A diff between
// two snapshots is the union of the sealed intervals between them. The
// store tracks intervals for every volume, because the collector needs the
// same history; "CBT enabled" is the XenAPI-visible part (which snapshots
// start a usable chain, see cbt.CheckChain).
//
// # Garbage collection
//
// pebble has no compaction filter, so dead versions are deleted
// explicitly, in O(blocks changed) rather than O(volume size):
//
//   - a version written at g and replaced at g' is visible at [g, g'); it is
//     dead when no pin (snapshot, clone parent, live head) falls in that
//     range (deadVersions, a pure function with datadriven tests);
//   - removing a pin at g schedules a persisted job over the 64 KiB blocks
//     changed in (g, next pin], where everything it alone saw was replaced;
//   - once the last snapshot above some versions is gone, those versions
//     are "orphans" the head alone sees; when the head overwrites one, the
//     write notes the block and the collector deletes the old version.
//     The collector drops blocks from the orphan set once they hold none.
//
// A tile's versions all cover the whole tile, so deadVersions decides for
// its stack at once; the collector rewrites the tile without its dead
// versions (or deletes it) under the chunk's lock, as a writer would
// (gctiles.go).
//
// Trimming or zeroing whole blocks of a lineage nobody else reads is one
// range deletion whatever its length; otherwise each visible block gets a
// discard marker, which the collector removes once nothing below it needs
// hiding. Deleting a volume with no snapshots or clones is a range deletion
// of its lineage.
//
// # Space
//
// PhysicalUtilisation and PoolUsage count the bytes of the stored versions
// exactly (a key-only scan, cached per lineage); see space.go for why not
// pebble's EstimateDiskUsage.
//
// # One database per daemon
//
// All pools share one pebble instance: one WAL means one fsync answers an
// NBD FLUSH for every volume (BenchmarkFlushPools: 0.26 ms for writes in 4
// pools, against 1.0 ms with a database per pool), and one block cache and
// memtable budget bound the daemon's memory (each pebble instance queues up
// to 4 x 64 MiB of memtables). A pool is an attribute of a volume.
//
// # Options
//
// Defaults (options.go) start from measurements on a 2-core machine
// (reference/design.md §1: 64 MiB memtables, L0 stop at 24, bloom filters,
// value separation for 4 KiB values). bench/RESULTS.md holds the
// benchmarks that back them and compare the store with bare pebble doing
// the same key writes and reads.
//
// Every pointer lookup seeks every memtable, so the collector flushes the
// memtables once a whole tick (1 s) passes without writes while at least
// 4 MiB sit unflushed (quietflush.go): reads after a burst of writes then
// skip the skiplists.
//
// Reads of up to 16 blocks skip pebble altogether when the newest cache
// (newest.go) holds each block's newest version: a sharded, two-way set
// associative array filled by writes of up to 16 MiB and by small reads
// of a writable disk, 64 bytes a block, 2^20 blocks by default. Every
// change to a block bumps its set's epoch after it commits, and an entry
// is only added if the epochs it was read under did not move, so it never
// outlives the version it names; reclaim drops a segment's blocks before
// the file goes. A write takes the value it replaces (for its pointers'
// prev) from the same cache when it holds the block, instead of a pebble
// Get that seeks every memtable.
package blockstore
