package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// reverseRuns lists segment seg's reverse keys as "slot S: blocks B+N".
func (e *env) reverseRuns(seg uint32) []string {
	e.t.Helper()
	it, err := e.s.db.NewIter(&pebble.IterOptions{LowerBound: reverseKey(nil, seg, 0), UpperBound: reverseKey(nil, seg+1, 0)})
	if err != nil {
		e.t.Fatal(err)
	}
	defer it.Close()
	var runs []string
	for it.First(); it.Valid(); it.Next() {
		_, slot, run, err := decodeReverse(it.Key(), it.Value())
		if err != nil {
			e.t.Fatal(err)
		}
		blk := decodeBlock(run.first)
		runs = append(runs, fmt.Sprintf("slot %d: blocks %d+%d", slot, blk, run.n))
	}
	return runs
}

func decodeBlock(dataKey []byte) uint64 {
	var b uint64
	for _, c := range dataKey[9:17] {
		b = b<<8 | uint64(c)
	}
	return b
}

// splitRuns rewrites segment seg's reverse keys the way a v1 store holds
// them: one per slot.
func (e *env) splitRuns(seg uint32) {
	e.t.Helper()
	it, err := e.s.db.NewIter(&pebble.IterOptions{LowerBound: reverseKey(nil, seg, 0), UpperBound: reverseKey(nil, seg+1, 0)})
	if err != nil {
		e.t.Fatal(err)
	}
	b := e.s.db.NewBatch()
	for it.First(); it.Valid(); it.Next() {
		_, slot, run, err := decodeReverse(it.Key(), it.Value())
		if err != nil {
			e.t.Fatal(err)
		}
		for i := range run.n {
			_ = b.Set(reverseKey(nil, seg, slot+i), run.keyAt(nil, i), nil)
		}
	}
	if err := it.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		e.t.Fatal(err)
	}
}

// A write's blocks that follow on in blocks and slots share one reverse
// key; recovery and reclaim read runs, and the one-key-per-slot form of
// earlier stores alike.
func TestReverseKeysNameRuns(t *testing.T) {
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v1=%v", v1), func(t *testing.T) {
			e := segmentEnv(t)
			e.create("v", 8<<20)
			data := fill(5, 1<<20)
			clear(data[7*BlockSize : 8*BlockSize]) // a zero block is a marker, no slot: two runs
			e.write("v", 0, data)
			want := []string{"slot 0: blocks 0+7", "slot 7: blocks 8+248"}
			if got := e.reverseRuns(0); !slices.Equal(got, want) {
				t.Fatalf("reverse keys %q, want %q", got, want)
			}
			if v1 {
				e.splitRuns(0)
				if got := e.reverseRuns(0); len(got) != 255 || got[9] != "slot 9: blocks 10+1" {
					t.Fatalf("split into %d keys, [9] %q", len(got), got[9])
				}
			}

			// Slot 10 holds block 11: damage it as a power cut could, then
			// recover as Open does after one.
			f, err := os.OpenFile(segmentPath(e.dir, 0), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, 100), 10*BlockSize+7); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if n, err := e.s.recoverSegments(); err != nil || n != 1 {
				t.Fatalf("recovery fell back %d keys (%v), want 1", n, err)
			}
			e.reopen()
			want2 := slices.Clone(data)
			clear(want2[11*BlockSize : 12*BlockSize]) // its prev: never written
			if got := e.read("v", 0, 1<<20); !bytes.Equal(got, want2) {
				t.Fatal("after recovery, the first MiB differs from the write with block 11 fallen back")
			}

			// Reclaim finds every live slot through the runs: overwrite
			// all but blocks 100 and 101. (The new writes may land in
			// segment 0 too, past slot 254.)
			e.write("v", 0, fill(7, 100*BlockSize))
			e.write("v", 102*BlockSize, fill(8, (256-102)*BlockSize))
			slots, err := e.s.segmentSlots(0)
			if err != nil {
				t.Fatal(err)
			}
			var old, live []uint32
			for _, sl := range slots {
				if sl.slot < 255 {
					old = append(old, sl.slot)
					if sl.live {
						live = append(live, sl.slot)
					}
				}
			}
			if len(old) != 255 || !slices.Equal(live, []uint32{99, 100}) {
				t.Fatalf("segment 0: %d slots of the first write, live %v; want 255, and slots 99, 100 (blocks 100, 101)", len(old), live)
			}
		})
	}
}

func TestDecodeReverseRefusesDamage(t *testing.T) {
	k := reverseKey(nil, 3, 10)
	first := dataKey(nil, 1, 40, 2)
	for _, c := range []struct {
		name string
		k, v []byte
		ok   bool
	}{
		{"one slot (v1 form)", k, reverseValue(nil, first, 1), true},
		{"a run", k, reverseValue(nil, first, 256), true},
		{"length 1 spelt out", k, append(slices.Clone(first), 0, 0, 0, 1), false},
		{"length 0", k, append(slices.Clone(first), 0, 0, 0, 0), false},
		{"past the last slot", reverseKey(nil, 3, 1<<32-2), reverseValue(nil, first, 3), false},
		{"not a data key", k, reverseValue(nil, append([]byte{'x'}, first[1:]...), 4), false},
		{"short", k, first[:20], false},
		{"bad key", k[:8], reverseValue(nil, first, 2), false},
	} {
		_, _, run, err := decodeReverse(c.k, c.v)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
		if c.ok && !bytes.Equal(run.keyAt(nil, 1)[9:17], dataKey(nil, 1, 41, 2)[9:17]) {
			t.Errorf("%s: keyAt(1) = %x", c.name, run.keyAt(nil, 1))
		}
	}
}

// A v1 store opens and is marked v2; anything else is refused.
func TestFormatUpgrade(t *testing.T) {
	e := segmentEnv(t)
	e.create("v", 1<<20)
	e.write("v", 0, fill(1, 1<<20))
	setFormat := func(f string) {
		if err := e.s.db.Set(storeMetaKey("format"), []byte(f), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	setFormat(formatV1)
	e.reopen()
	if v, closer, err := e.s.db.Get(storeMetaKey("format")); err != nil || string(v) != formatV2 {
		t.Fatalf("format after opening a v1 store: %q (%v), want %q", v, err, formatV2)
	} else {
		closer.Close()
	}
	if !bytes.Equal(e.read("v", 0, 1<<20), fill(1, 1<<20)) {
		t.Fatal("data differs after the upgrade")
	}
	setFormat("vdiskd-blockstore-v9")
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	e.s = nil // closed: the cleanup has nothing to close
	if s, err := Open(e.dir, e.options()); !errors.Is(err, ErrCorrupt) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open of a v9 store: %v, want ErrCorrupt", err)
	}
}

// FuzzDecodeReverse: any bytes in a reverse key and its value are decoded
// or refused as corrupt, never a panic; what decodes encodes back to the
// same bytes and names slots and blocks that do not wrap.
func FuzzDecodeReverse(f *testing.F) {
	first := dataKey(nil, 7, 1000, 3)
	f.Add(reverseKey(nil, 1, 0), reverseValue(nil, first, 1))
	f.Add(reverseKey(nil, 1, 5), reverseValue(nil, first, 256))
	f.Add(reverseKey(nil, 1, 1<<32-1), reverseValue(nil, first, 2))
	f.Add([]byte("r"), []byte("d"))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		seg, slot, run, err := decodeReverse(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(reverseKey(nil, seg, slot), k) || !bytes.Equal(reverseValue(nil, run.first, run.n), v) {
			t.Fatalf("%x %x decodes to seg %d slot %d run %x+%d, which encodes differently", k, v, seg, slot, run.first, run.n)
		}
		if run.n == 0 || uint64(slot)+uint64(run.n) > 1<<32 {
			t.Fatalf("run of %d slots from %d", run.n, slot)
		}
		last := run.keyAt(nil, run.n-1)
		if decodeBlock(last) < decodeBlock(run.first) || !bytes.Equal(last[:9], run.first[:9]) || !bytes.Equal(last[17:], run.first[17:]) {
			t.Fatalf("last key %x of run %x+%d", last, run.first, run.n)
		}
	})
}
