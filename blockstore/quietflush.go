package blockstore

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// quietFlushMin is how much unflushed WAL data makes a quiet store flush
// its memtable. Every pointer lookup seeks every memtable's skiplist, and
// after a burst of writes that was the largest single cost of random 4 KiB
// reads (18% of vdiskd's CPU in a fio randread right after a randwrite).
// Below this size a memtable is small and cheap to seek, and flushing it
// would only add a small L0 table for compactions to merge.
const quietFlushMin = 4 << 20

// quietFlush remembers what earlier collector ticks saw.
type quietFlush struct {
	walBytesIn uint64 // pebble's WAL bytes written, at the previous tick
	flushedAt  uint64 // ... when this last started a flush
}

// flushDue decides, from pebble's WAL counters at a tick, whether the store
// has gone quiet with enough unflushed data to flush: nothing was written
// since the previous tick, and something was since the last flush this
// started (one still running keeps the WAL counted as unflushed). It is
// pure so tests drive it directly.
func (q *quietFlush) flushDue(walBytesIn, unflushed uint64) bool {
	quiet := walBytesIn == q.walBytesIn
	q.walBytesIn = walBytesIn
	if !quiet || walBytesIn == q.flushedAt || unflushed < quietFlushMin {
		return false
	}
	q.flushedAt = walBytesIn
	return true
}

// flushIfQuiet starts a memtable flush when no write came since the last
// tick and the memtables hold at least quietFlushMin. It does not wait for
// the flush.
func (s *Store) flushIfQuiet(q *quietFlush) error {
	s.data.RLock()
	defer s.data.RUnlock()
	if s.dataClosed {
		return nil
	}
	m := s.db.Metrics()
	if !q.flushDue(m.WAL.BytesIn, m.WAL.Size) {
		return nil
	}
	if _, err := s.db.AsyncFlush(); err != nil && err != pebble.ErrReadOnly {
		return fmt.Errorf("blockstore: flushing a quiet memtable: %w", err)
	}
	return nil
}
