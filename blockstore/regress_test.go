package blockstore

// Regression tests for bugs a review found (see the commit that added them).

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// A trim of more than 2^32 blocks on a clone: visit's resolved bitmap keys
// blocks by uint32(blk-first), so a parent block 2^32 blocks after one the
// clone holds is taken as "already resolved" and gets no discard marker.
func TestTrimOver2To32BlocksOfClone(t *testing.T) {
	e := newEnv(t, modes[0])
	e.create("p", MaxSize)
	far := uint64(1) << 44 // block 2^32
	e.write("p", 0, fill(1, BlockSize))
	e.write("p", far, fill(2, BlockSize))
	if _, err := e.s.Clone(CloneRequest{Source: "p", ID: "c"}); err != nil {
		t.Fatal(err)
	}
	e.write("c", 0, fill(3, BlockSize)) // clone's own block 0
	d := e.attach("c")
	if err := d.Trim(0, far+BlockSize, 0); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got := e.read("c", 0, BlockSize); !bytes.Equal(got, make([]byte, BlockSize)) {
		t.Errorf("block 0 not zero after trim")
	}
	if got := e.read("c", far, BlockSize); !bytes.Equal(got, make([]byte, BlockSize)) {
		t.Errorf("block 2^32 of clone reads parent data after trimming it: %x...", got[:8])
	}
}

// Store-level Flush, Compact, CollectGarbage and PoolUsage after Close
// return ErrClosed; pebble would panic if they reached it.
func TestStoreCallsAfterClose(t *testing.T) {
	e := newEnv(t, modes[0])
	s := e.s
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e.s = nil
	for name, call := range map[string]func() error{
		"Flush":          s.Flush,
		"Compact":        s.Compact,
		"CollectGarbage": s.CollectGarbage,
		"PoolUsage":      func() error { _, err := s.PoolUsage("local"); return err },
	} {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestRecordChangesRaceNoIO(t *testing.T) {
	e := newEnv(t, modes[0])
	e.create("v", mib(2))
	d := e.attach("v")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			e.s.SetAttrs("v", []byte{byte(i)})
		}
	}()
	for i := 0; i < 200; i++ {
		_ = d.ID()
		_ = d.Write(mib(4), []byte{1}, 0) // out of range: error names d.v.rec.ID
	}
	<-done
}

func countTag(t *testing.T, s *Store, tag byte) int {
	n := 0
	if err := s.scan(tag, func(k, v []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// Close while the collector runs: collectBlocks answers "nothing to do" once
// the store is closed, and collect then calls finishJob, which deletes the
// persisted job although its dead versions were never deleted.
func TestCloseDuringGCKeepsJobs(t *testing.T) {
	e := newEnv(t, modes[1])
	const N = 1500
	for i := 0; i < N; i++ {
		id := name(i)
		e.create(id, mib(2))
		d := e.attach(id)
		d.Write(0, fill(1, BlockSize), 0)
		e.snapshot(id, id+"s")
		d.Write(0, fill(2, BlockSize), 0)
		e.snapshot(id, id+"t")
		d.Close()
		if err := e.s.Destroy(id + "s"); err != nil {
			t.Fatal(err)
		}
	}
	if got := countTag(t, e.s, tagGC); got != N {
		t.Fatalf("%d jobs, want %d", got, N)
	}
	done := make(chan error, 1)
	go func() { done <- e.s.CollectGarbage() }()
	var collected bool // the collector returned (before Close)
	var collectErr error
	for {
		select {
		case collectErr = <-done:
			collected = true
		default:
		}
		e.s.mu.Lock()
		n := len(e.s.gcJobs)
		e.s.mu.Unlock()
		if n <= N/2 {
			break
		}
		if collected {
			t.Fatalf("the collector returned (%v) with %d of %d jobs left", collectErr, n, N)
		}
	}
	e.s.Close()
	t.Logf("closed")
	if !collected {
		collectErr = testwait.Recv(t, done, "the collector to return after Close")
	}
	t.Logf("collect: %v", collectErr)
	e.open()
	jobs := countTag(t, e.s, tagGC)
	if err := e.s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	keys := countTag(t, e.s, tagData)
	t.Logf("after reopen: %d jobs, %d data keys after GC (want %d)", jobs, keys, N)
	if keys != N {
		t.Errorf("%d dead versions left with no job to collect them", keys-N)
	}
}
