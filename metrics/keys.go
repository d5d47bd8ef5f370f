package metrics

// Key describes one counter of the OVS statistics object: what it counts
// and in which unit. Keys is the catalogue every surface documents the
// counters with (vStats' counters, the reference); the values themselves
// come from Sample.OVS, and a test keeps the two in step.
type Key struct {
	Name string
	Unit string // vStats' metric unit: NUMBER or BYTE
	Doc  string
}

// Keys are Sample.OVS's keys, in the order seed 000 lists them; each has
// a *_ps rate beside it in the statistics object.
var Keys = []Key{
	{"operations", "NUMBER", "read_operations + write_operations"},
	{"read_operations", "NUMBER", "NBD READ requests that succeeded"},
	{"write_operations", "NUMBER", "NBD WRITE requests that succeeded (WRITE_ZEROES, TRIM, FLUSH and CACHE are not writes of data)"},
	{"data_transferred", "BYTE", "data_read + data_written"},
	{"data_read", "BYTE", "bytes NBD READ requests that succeeded asked for"},
	{"data_written", "BYTE", "payload bytes of NBD WRITE requests that succeeded"},
	{"cache_hits", "NUMBER", "sco_cache_hits + cluster_cache_hits"},
	{"sco_cache_hits", "NUMBER", "always 0: vdiskd's backend is local and has no SCO cache"},
	{"sco_cache_misses", "NUMBER", "always 0: vdiskd's backend is local and has no SCO cache"},
	{"cluster_cache_hits", "NUMBER", "READs (or CACHEs) that loaded no sstable block from disk: memtables and pebble's block cache answered"},
	{"cluster_cache_misses", "NUMBER", "READs (or CACHEs) that loaded at least one sstable block from disk"},
	{"metadata_store_hits", "NUMBER", "4 KiB blocks a READ looked up in the block index and found a version of"},
	{"metadata_store_misses", "NUMBER", "4 KiB blocks a READ found in no layer (a hole)"},
	{"backend_read_operations", "NUMBER", "pebble iterators the vDisk's I/O opened (one per snapshot or clone layer a read visits)"},
	{"backend_data_read", "BYTE", "value bytes those iterators returned"},
	{"backend_write_operations", "NUMBER", "pebble batches committed for the vDisk"},
	{"backend_data_written", "BYTE", "encoded bytes of those batches (keys, values, changed-block markers)"},
}
