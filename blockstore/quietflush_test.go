package blockstore

import (
	"bytes"
	"testing"
	"time"
)

// flushDue flushes once per quiet spell, and only with enough unflushed.
func TestQuietFlushDecision(t *testing.T) {
	const big = quietFlushMin
	var q quietFlush
	for i, step := range []struct {
		bytesIn, unflushed uint64
		want               bool
	}{
		{100, big, false}, // writes since the start
		{200, big, false}, // still writing
		{200, big, true},  // quiet, enough unflushed
		{200, big, false}, // quiet still, but flushed already (it may be running)
		{200, 0, false},   // flushed
		{300, 100, false}, // a small write
		{300, 100, false}, // quiet, too little to bother
		{big + 300, big, false},
		{big + 300, big, true}, // quiet again after a large write
	} {
		if got := q.flushDue(step.bytesIn, step.unflushed); got != step.want {
			t.Fatalf("step %d %+v: flushDue = %v", i, step, got)
		}
	}
}

// A store the collector finds quiet flushes its memtables; writing keeps
// it from flushing; reads are unchanged by it.
func TestQuietStoreFlushesItsMemtable(t *testing.T) {
	e := newEnv(t, modes[0]) // mem, inline: block values go through the WAL
	// A memtable larger than what is written: only a quiet flush flushes.
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	o := e.options()
	o.MemTableSize = 64 << 20
	s, err := Open(e.dir, o)
	if err != nil {
		t.Fatal(err)
	}
	e.s = s
	e.create("v", 16<<20)
	data := fill(1, 8<<20)
	e.write("v", 0, data)
	var q quietFlush
	tick := func() {
		t.Helper()
		if err := e.s.flushIfQuiet(&q); err != nil {
			t.Fatal(err)
		}
	}
	flushes := func() int64 { return e.s.db.Metrics().Flush.Count }
	tick() // the first tick sees the writes above
	before := flushes()
	e.write("v", 8<<20, fill(2, BlockSize))
	tick()
	if got := flushes(); got != before {
		t.Fatalf("flushed with writes arriving between ticks: %d flushes, had %d", got, before)
	}
	tick() // quiet
	for deadline := time.Now().Add(10 * time.Second); flushes() == before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a quiet store with 8 MiB in its memtable did not flush")
		}
	}
	if m := e.s.db.Metrics(); m.WAL.Size >= quietFlushMin {
		t.Errorf("after the quiet flush the WAL still holds %d live bytes", m.WAL.Size)
	}
	n := flushes()
	tick()
	tick()
	if got := flushes(); got != n {
		t.Errorf("quiet ticks after the flush flushed again: %d flushes, had %d", got, n)
	}
	if got := e.read("v", 0, len(data)); !bytes.Equal(got, data) {
		t.Error("the data reads differently after the flush")
	}
}
