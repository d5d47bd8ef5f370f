package metrics

import "sync/atomic"

// Counters are one vDisk's I/O counters. The data path adds to them with
// single atomic adds: no lock and no allocation per request.
type Counters struct {
	readOps, readBytes   atomic.Uint64
	writeOps, writeBytes atomic.Uint64
}

// Read records a READ of n bytes that succeeded.
func (c *Counters) Read(n int) {
	c.readOps.Add(1)
	c.readBytes.Add(uint64(n))
}

// Write records a WRITE of n bytes that succeeded.
func (c *Counters) Write(n int) {
	c.writeOps.Add(1)
	c.writeBytes.Add(uint64(n))
}

// Sample is a consistent-enough copy of a vDisk's raw counters (each value
// is read atomically; they are not read at one instant together): the
// client's, from Counters, and the block store's (blockstore.IOStats),
// which the caller fills in.
type Sample struct {
	ReadOps, ReadBytes, WriteOps, WriteBytes uint64

	BackendReads, BackendReadBytes   uint64
	BackendWrites, BackendWriteBytes uint64
	IndexHits, IndexMisses           uint64
	CacheHits, CacheMisses           uint64
}

// Sample reads the counters.
func (c *Counters) Sample() Sample {
	return Sample{ReadOps: c.readOps.Load(), ReadBytes: c.readBytes.Load(),
		WriteOps: c.writeOps.Load(), WriteBytes: c.writeBytes.Load()}
}

// Add sums two samples (a vPool is the sum of its vDisks).
func (s Sample) Add(o Sample) Sample {
	return Sample{ReadOps: s.ReadOps + o.ReadOps, ReadBytes: s.ReadBytes + o.ReadBytes,
		WriteOps: s.WriteOps + o.WriteOps, WriteBytes: s.WriteBytes + o.WriteBytes,
		BackendReads: s.BackendReads + o.BackendReads, BackendReadBytes: s.BackendReadBytes + o.BackendReadBytes,
		BackendWrites: s.BackendWrites + o.BackendWrites, BackendWriteBytes: s.BackendWriteBytes + o.BackendWriteBytes,
		IndexHits: s.IndexHits + o.IndexHits, IndexMisses: s.IndexMisses + o.IndexMisses,
		CacheHits: s.CacheHits + o.CacheHits, CacheMisses: s.CacheMisses + o.CacheMisses}
}

// OVS returns the counter keys of an OVS statistics object for the sample:
// every key of seed 000, the derived sums included, without rates.
func (s Sample) OVS() map[string]float64 {
	m := map[string]float64{
		"read_operations":  float64(s.ReadOps),
		"write_operations": float64(s.WriteOps),
		"data_read":        float64(s.ReadBytes),
		"data_written":     float64(s.WriteBytes),
		// Not measured in this design (see the package comment).
		"sco_cache_hits": 0, "sco_cache_misses": 0,
		"cluster_cache_hits":       float64(s.CacheHits),
		"cluster_cache_misses":     float64(s.CacheMisses),
		"metadata_store_hits":      float64(s.IndexHits),
		"metadata_store_misses":    float64(s.IndexMisses),
		"backend_data_read":        float64(s.BackendReadBytes),
		"backend_data_written":     float64(s.BackendWriteBytes),
		"backend_read_operations":  float64(s.BackendReads),
		"backend_write_operations": float64(s.BackendWrites),
	}
	m["operations"] = m["read_operations"] + m["write_operations"]
	m["data_transferred"] = m["data_read"] + m["data_written"]
	m["cache_hits"] = m["sco_cache_hits"] + m["cluster_cache_hits"]
	return m
}
