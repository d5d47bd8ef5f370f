package blockstore

import "sync/atomic"

// IOStats are what the store did on behalf of one volume since it was
// opened (they start at zero with the process). They back the OVS
// statistics keys that are about the backend rather than the client.
type IOStats struct {
	// BackendReads counts pebble iterators opened for the volume (one
	// per layer a read, read-modify-write or allocation query visits);
	// BackendReadBytes sums the values they returned.
	BackendReads, BackendReadBytes uint64
	// BackendWrites counts pebble batches committed for the volume;
	// BackendWriteBytes sums their encoded size (keys, values, markers).
	BackendWrites, BackendWriteBytes uint64
	// IndexHits counts 4 KiB blocks a read found a version of in the
	// block index; IndexMisses those found in no layer (never written).
	IndexHits, IndexMisses uint64
	// CacheHits counts reads that loaded no sstable block from disk (all
	// from memtables or pebble's block cache); CacheMisses the others.
	// pebble's iterator statistics do not cover blob-file value fetches.
	CacheHits, CacheMisses uint64
}

// ioStats are a volume's IOStats as atomics, bumped on the I/O path.
type ioStats struct {
	backendReads, backendReadBytes   atomic.Uint64
	backendWrites, backendWriteBytes atomic.Uint64
	indexHits, indexMisses           atomic.Uint64
	cacheHits, cacheMisses           atomic.Uint64
}

func (s *ioStats) load() IOStats {
	return IOStats{
		BackendReads: s.backendReads.Load(), BackendReadBytes: s.backendReadBytes.Load(),
		BackendWrites: s.backendWrites.Load(), BackendWriteBytes: s.backendWriteBytes.Load(),
		IndexHits: s.indexHits.Load(), IndexMisses: s.indexMisses.Load(),
		CacheHits: s.cacheHits.Load(), CacheMisses: s.cacheMisses.Load(),
	}
}

// readTally accumulates one operation's pebble reads; it is local to the
// operation, so no atomics until it is recorded.
type readTally struct {
	iters, valueBytes   uint64
	blockBytes, inCache uint64
}

// recordRead adds an operation's reads. A client read (counted) also
// counts toward the index and cache hit statistics.
func (s *ioStats) recordRead(t *readTally) {
	s.backendReads.Add(t.iters)
	s.backendReadBytes.Add(t.valueBytes)
}

func (s *ioStats) recordClientRead(t *readTally, blocks, found uint64) {
	s.recordRead(t)
	s.indexHits.Add(found)
	s.indexMisses.Add(blocks - found)
	if t.blockBytes > t.inCache {
		s.cacheMisses.Add(1)
	} else {
		s.cacheHits.Add(1)
	}
}

func (s *ioStats) recordWrite(batchBytes int) {
	s.backendWrites.Add(1)
	s.backendWriteBytes.Add(uint64(batchBytes))
}

// IOStats returns a volume's statistics.
func (s *Store) IOStats(id string) (IOStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.lookup("io stats", id)
	if err != nil {
		return IOStats{}, err
	}
	return v.stats.load(), nil
}
