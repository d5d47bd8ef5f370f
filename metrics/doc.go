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
//
// The backend, cluster-cache and metadata-store keys are 0 until the block
// store reports them (next step of the metrics work).
package metrics
