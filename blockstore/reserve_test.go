package blockstore

import (
	"bytes"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeFS is a file system's free space as the guard sees it: the test
// moves it and counts the statfs calls.
type fakeFS struct {
	free  atomic.Int64
	looks atomic.Int64
}

func (f *fakeFS) statfs() (uint64, error) {
	f.looks.Add(1)
	return uint64(f.free.Load()), nil
}

func TestSpaceGuardAdmitsUntilTheReserve(t *testing.T) {
	fs := &fakeFS{}
	fs.free.Store(1 << 30)
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	g := newSpaceGuard(fs.statfs, 256<<20, func() time.Time { return now }, t.Logf)

	// Far from the reserve and freshly looked: no statfs per write.
	looks := fs.looks.Load()
	for i := 0; i < 100; i++ {
		if err := g.admit("write", "d", 1<<20); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := fs.looks.Load() - looks; got > 1 {
		t.Fatalf("%d statfs calls for 100 writes far from the reserve", got)
	}

	// The writes land (2 bytes on disk per byte admitted, say) and the
	// guard refuses before the reserve is crossed, even between looks.
	fs.free.Store(600 << 20)
	now = now.Add(time.Second)
	var refused error
	written := 0
	for i := 0; i < 1000 && refused == nil; i++ {
		if refused = g.admit("write", "d", 1<<20); refused == nil {
			written++
			fs.free.Add(-2 << 20)
		}
		now = now.Add(time.Millisecond) // no new look for most writes
	}
	var nse *NoSpaceError
	if !errors.As(refused, &nse) || !errors.Is(refused, syscall.ENOSPC) {
		t.Fatalf("after %d MiB: %v, want a NoSpaceError wrapping ENOSPC", written, refused)
	}
	if fs.free.Load() < 256<<20 {
		t.Fatalf("admitted %d MiB: the fake file system went below the reserve (%d MiB free)", written, fs.free.Load()>>20)
	}
	if nse.Reserve != 256<<20 || nse.Op != "write" || nse.ID != "d" {
		t.Fatalf("error %+v", nse)
	}
	// Full now: growing metadata is refused too, and stays refused until a
	// quarter of the reserve more is free, so callers near the line do not
	// see taken, refused, taken.
	if err := g.check("snapshot", "d"); err == nil {
		t.Fatal("a snapshot was admitted right after a write was refused")
	}
	fs.free.Store(256<<20 + 32<<20)
	now = now.Add(lookNearEvery)
	if err := g.admit("write", "d", 4096); err == nil {
		t.Fatal("admitted within the hysteresis band after being full")
	}

	// Space freed elsewhere: admitted again once the guard looks.
	fs.free.Store(2 << 30)
	now = now.Add(lookNearEvery)
	if err := g.admit("write", "d", 1<<20); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
}

func TestSpaceGuardDiskFullLooksAgain(t *testing.T) {
	fs := &fakeFS{}
	fs.free.Store(1 << 30)
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	g := newSpaceGuard(fs.statfs, 256<<20, func() time.Time { return now }, t.Logf)
	fs.free.Store(0) // someone else filled the disk
	if err := g.admit("write", "d", 4096); err != nil {
		t.Fatalf("before pebble noticed: %v (the guard should trust a fresh look)", err)
	}
	g.diskFull()
	if err := g.admit("write", "d", 4096); err == nil {
		t.Fatal("admitted right after pebble met ENOSPC")
	}
}

// A full file system refuses new data and new volumes, keeps every read
// and every change that frees space, and takes data again once space is
// back; nothing refused reaches the store.
func TestStoreRefusesDataBelowTheReserve(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		fs := &fakeFS{}
		fs.free.Store(1 << 40)
		e.s.Close()
		opts := e.options()
		opts.FreeSpace, opts.MinFreeSpace = fs.statfs, 64<<20
		s, err := Open(e.dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		e.s = s
		e.create("a", mib(8))
		e.create("b", mib(8))
		old := fill(1, 1<<20)
		e.write("a", 0, old)
		e.snapshot("a", "a-snap")

		fs.free.Store(10 << 20)
		e.advance(time.Minute) // the next write looks again
		d := e.attach("a")
		err = d.Write(1<<20, fill(2, 4096), 0)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write below the reserve: %v, want ENOSPC", err)
		}
		if err := d.Write(0, fill(3, 1<<20), FUA); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("FUA write below the reserve: %v, want ENOSPC", err)
		}
		if _, err := e.s.Create(CreateRequest{ID: "c", Pool: "local", Size: mib(8)}); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("create below the reserve: %v", err)
		}
		if _, err := e.s.Snapshot(SnapshotRequest{Source: "a", ID: "a-snap2"}); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("snapshot below the reserve: %v", err)
		}
		if _, err := e.s.Clone(CloneRequest{Source: "a-snap", ID: "a-clone"}); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("clone below the reserve: %v", err)
		}
		// Reads, trims, and destroys go on.
		if got := e.read("a", 0, 1<<20); !bytes.Equal(got, old) {
			t.Fatal("read below the reserve differs from what was written")
		}
		if err := d.Trim(2<<20, 1<<20, 0); err != nil {
			t.Fatalf("trim below the reserve: %v", err)
		}
		if err := e.s.Destroy("b"); err != nil {
			t.Fatalf("destroy below the reserve: %v", err)
		}

		fs.free.Store(1 << 40)
		e.advance(time.Minute)
		newer := fill(4, 1<<20)
		if err := d.Write(0, newer, FUA); err != nil {
			t.Fatalf("write once space is back: %v", err)
		}
		e.snapshot("a", "a-snap2")
		d.Close()
		e.reopen()
		if got := e.read("a", 0, 1<<20); !bytes.Equal(got, newer) {
			t.Fatal("after reopen: the write taken once space was back is missing")
		}
		if got := e.read("a-snap", 0, 1<<20); !bytes.Equal(got, old) {
			t.Fatal("after reopen: the snapshot changed")
		}
		if got := e.read("a", 1<<20, 4096); !bytes.Equal(got, make([]byte, 4096)) {
			t.Fatal("after reopen: a refused write reached the disk")
		}
	})
}
