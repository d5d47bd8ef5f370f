// Package metrics holds vdiskd's statistics: per-vDisk I/O counters that
// the data path bumps with atomic adds, the OpenvStorage statistics object
// (seed 000's keys, with *_ps rates computed as OVS does), and, to come,
// their Prometheus exposition.
//
// What each OVS key means here:
//
//   - read_operations, data_read: NBD READ requests that succeeded, and
//     their bytes, as the client asked for them.
//   - write_operations, data_written: NBD WRITE requests that succeeded,
//     and their payload bytes. WRITE_ZEROES, TRIM, FLUSH and CACHE are
//     not writes of data; they are counted per command in Prometheus only.
//   - operations = read_operations + write_operations; data_transferred =
//     data_read + data_written; cache_hits = sco_cache_hits +
//     cluster_cache_hits (OVS's sums).
//   - sco_cache_hits, sco_cache_misses: always 0. OVS's SCO cache is a
//     local cache of backend objects; vdiskd's backend is local and has
//     none, and reporting pebble's memtable as one would be invented.
//   - backend_read_operations, backend_data_read: pebble iterators the
//     vDisk's I/O opened (one per snapshot or clone layer a read visits;
//     read-modify-writes and allocation queries included) and the value
//     bytes they returned (4096 per data block, 0-1 per marker).
//   - backend_write_operations, backend_data_written: pebble batches
//     committed for the vDisk and their encoded bytes (keys, values,
//     changed-block markers): the store's write amplification per vDisk
//     before pebble's own.
//   - metadata_store_hits, metadata_store_misses: 4 KiB blocks a READ (or
//     CACHE) looked up in the block index and found a version of, or found
//     in no layer (never written: a read of a hole).
//   - cluster_cache_hits, cluster_cache_misses: READs (or CACHEs) that
//     loaded no sstable block from disk (memtables and pebble's block cache
//     answered), or that loaded at least one. From pebble's iterator
//     statistics, which do not see blob-file value fetches.
//
// Every counter starts at 0 with the process; a rate never goes negative
// across a restart.
package metrics
