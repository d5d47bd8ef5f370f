package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// ReadSparse and CBTBases against models.

// sparseRuns is what ReadSparse must report for model bytes [off, off+n):
// the parts of the 4 KiB blocks that are all zeros (never written,
// trimmed, zeroed, or written with zeros: none of them hold data),
// clipped to the range and merged.
func sparseRuns(model []byte, off, n uint64) [][2]int {
	var out [][2]int
	for at := off; at < off+n; {
		b := at / BlockSize
		bs := b * BlockSize
		hi := min(bs+BlockSize, off+n)
		if !bytes.Equal(model[bs:bs+BlockSize], zeroBlock) {
			at = hi
			continue
		}
		lo, h := int(at-off), int(hi-off)
		if k := len(out); k > 0 && out[k-1][1] == lo {
			out[k-1][1] = h
		} else {
			out = append(out, [2]int{lo, h})
		}
		at = hi
	}
	return out
}

// checkSparse reads [off, off+n) of d with ReadSparse and compares the
// data and the reported zero runs with the model.
func checkSparse(t *testing.T, what string, d *Disk, model []byte, off, n uint64) {
	t.Helper()
	p := bytes.Repeat([]byte{0xee}, int(n)) // ReadSparse must overwrite all of it
	var runs [][2]int
	err := d.ReadSparse(p, off, func(lo, hi int) { runs = append(runs, [2]int{lo, hi}) })
	if err != nil {
		t.Fatalf("%s: ReadSparse %d+%d: %v", what, off, n, err)
	}
	if !bytes.Equal(p, model[off:off+n]) {
		i := 0
		for p[i] == model[off+uint64(i)] {
			i++
		}
		t.Fatalf("%s: ReadSparse %d+%d: data differs at %d", what, off, n, off+uint64(i))
	}
	if want := sparseRuns(model, off, n); !slices.Equal(runs, want) {
		t.Fatalf("%s: ReadSparse %d+%d: zero runs %v, want %v", what, off, n, runs, want)
	}
	// Without the callback it is a plain read.
	q := bytes.Repeat([]byte{0xee}, int(n))
	if err := d.ReadSparse(q, off, nil); err != nil || !bytes.Equal(q, p) {
		t.Fatalf("%s: ReadSparse without a callback: %v", what, err)
	}
}

// TestReadSparseEdges: the cases one by one.
func TestReadSparseEdges(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		size := mib(2)
		e.create("a", size)
		d := e.attach("a")
		model := make([]byte, size)
		write := func(off uint64, p []byte) {
			t.Helper()
			if err := d.Write(off, p, 0); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], p)
		}
		zero := func(off, n uint64, f Flags, trim bool) {
			t.Helper()
			var err error
			if trim {
				err = d.Trim(off, n, f)
			} else {
				err = d.Zero(off, n, f)
			}
			if err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
		}
		check := func(off, n uint64) { t.Helper(); checkSparse(t, "a", d, model, off, n) }

		check(0, size) // never written: one run
		check(100, 1)
		write(4096, fill(1, 4096))     // block 1
		write(3*4096+100, fill(2, 10)) // partial: block 3 holds data
		write(5*4096, make([]byte, 4096))
		write(6*4096, append(fill(3, 4096), make([]byte, 4096)...)) // block 7 written with zeros
		check(0, 10*4096)
		check(4096+1, 4094)                  // inside a data block
		check(3*4096+200, 100)               // zeros of a partly written block are data
		check(4096-1, 2)                     // edge between a hole and data
		check(2*4096+7, 4096)                // hole then data, unaligned
		zero(4096, 4096, 0, true)            // trim block 1
		zero(3*4096, 4096, NoHole, false)    // zero block 3, keep allocated
		zero(6*4096+4000, 96, 0, false)      // partial zero of data: still data
		zero(6*4096, 4096, NoHole, false)    // block 6: allocated zeros
		write(8*4096, fill(4, 3*4096))       // blocks 8-10
		zero(8*4096+10, 3*4096-20, 0, false) // partial edges stay data, middle goes
		check(0, 12*4096)
		check(0, size)
		check(size-1, 1)
		check(size, 0)
		if err := d.ReadSparse(make([]byte, 2), size-1, nil); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("read past the end: %v", err)
		}
		called := false
		if err := d.ReadSparse(nil, 0, func(int, int) { called = true }); err != nil || called {
			t.Fatalf("empty read: %v %v", err, called)
		}

		// A clone sees its parent's data and holes, and its own changes.
		e.snapshot("a", "s")
		c, err := e.s.Clone(CloneRequest{Source: "s", ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		cd := e.attach(c.ID)
		cm := bytes.Clone(model)
		checkSparse(t, "clone", cd, cm, 0, 12*4096)
		if err := cd.Trim(8*4096, 4096, 0); err != nil { // parent has data there
			t.Fatal(err)
		}
		clear(cm[8*4096 : 9*4096])
		if err := cd.Write(4096, fill(9, 4096), 0); err != nil { // parent has a hole
			t.Fatal(err)
		}
		copy(cm[4096:], fill(9, 4096))
		if err := cd.Zero(6*4096, 4096, 0); err != nil { // parent: allocated zeros
			t.Fatal(err)
		}
		checkSparse(t, "clone", cd, cm, 0, 12*4096)
		checkSparse(t, "parent", d, model, 0, 12*4096)
		sd := e.attach("s")
		checkSparse(t, "snapshot", sd, model, 0, 12*4096)
	})
}

// TestReadSparseModel: random writes, trims, zeroes, snapshots and clones;
// every read reports exactly the model's zero blocks.
func TestReadSparseModel(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		size := mib(2)
		steps := 400
		if testing.Short() || !e.mode.mem {
			steps = 120
		}
		rng := rand.New(rand.NewPCG(11, 12))
		type vol struct {
			id    string
			d     *Disk
			model []byte
			live  bool
		}
		e.create("v0", size)
		vols := []*vol{{id: "v0", d: e.attach("v0"), model: make([]byte, size), live: true}}
		span := func() (uint64, uint64) {
			// Mostly near a few blocks so that operations overlap.
			off := uint64(rng.IntN(48*BlockSize + 1))
			if rng.IntN(8) == 0 {
				off = uint64(rng.IntN(int(size)))
			}
			if rng.IntN(3) == 0 {
				off &^= BlockSize - 1
			}
			n := uint64(rng.IntN(4*BlockSize) + 1)
			if rng.IntN(3) == 0 {
				n = (n + BlockSize - 1) &^ (BlockSize - 1)
			}
			return off, min(n, size-off)
		}
		for step := range steps {
			var live []*vol
			for _, v := range vols {
				if v.live {
					live = append(live, v)
				}
			}
			v := live[rng.IntN(len(live))]
			off, n := span()
			switch k := rng.IntN(12); {
			case k < 4:
				p := fill(byte(step), int(n))
				if rng.IntN(4) == 0 { // with zero stretches, some of whole blocks
					lo := rng.IntN(int(n))
					clear(p[lo:min(int(n), lo+rng.IntN(2*BlockSize))])
				}
				if err := v.d.Write(off, p, 0); err != nil {
					t.Fatal(err)
				}
				copy(v.model[off:], p)
			case k < 6:
				if err := v.d.Trim(off, n, 0); err != nil {
					t.Fatal(err)
				}
				clear(v.model[off : off+n])
			case k < 8:
				f := Flags(0)
				if rng.IntN(2) == 0 {
					f |= NoHole
				}
				if err := v.d.Zero(off, n, f); err != nil {
					t.Fatal(err)
				}
				clear(v.model[off : off+n])
			case k < 9 && len(vols) < 12:
				id := fmt.Sprintf("s%d", step)
				e.snapshot(v.id, id)
				vols = append(vols, &vol{id: id, d: e.attach(id), model: bytes.Clone(v.model)})
			case k < 10 && len(vols) < 12:
				var snaps []*vol
				for _, s := range vols {
					if !s.live {
						snaps = append(snaps, s)
					}
				}
				src := v
				if len(snaps) > 0 && rng.IntN(2) == 0 {
					src = snaps[rng.IntN(len(snaps))]
				}
				id := fmt.Sprintf("c%d", step)
				if _, err := e.s.Clone(CloneRequest{Source: src.id, ID: id}); err != nil {
					t.Fatal(err)
				}
				vols = append(vols, &vol{id: id, d: e.attach(id), model: bytes.Clone(src.model), live: true})
			default:
			}
			for range 3 {
				r := vols[rng.IntN(len(vols))]
				off, n := span()
				checkSparse(t, fmt.Sprintf("step %d %s", step, r.id), r.d, r.model, off, n)
			}
		}
		for _, v := range vols {
			checkSparse(t, "final "+v.id, v.d, v.model, 0, size)
		}
	})
}

// checkBases checks, for every volume, that CBTBases lists exactly the
// volumes ChangedBlocks accepts as a base.
func checkBases(t *testing.T, e *env, when string) (pairs int) {
	t.Helper()
	vols := e.s.Volumes()
	for _, to := range vols {
		bases, err := e.s.CBTBases(to.ID)
		if err != nil {
			t.Fatalf("%s: CBTBases(%s): %v", when, to.ID, err)
		}
		if !sort.StringsAreSorted(bases) {
			t.Fatalf("%s: CBTBases(%s) not sorted: %v", when, to.ID, bases)
		}
		var want []string
		for _, from := range vols {
			_, _, err := e.s.ChangedBlocks(from.ID, to.ID)
			if err == nil {
				want = append(want, from.ID)
			}
		}
		sort.Strings(want)
		pairs += len(want)
		if !slices.Equal(bases, want) {
			t.Fatalf("%s: CBTBases(%s) = %v, ChangedBlocks accepts %v", when, to.ID, bases, want)
		}
		for _, b := range bases {
			info, err := e.s.Volume(b)
			if err != nil || !info.CBTEnabled || info.Kind == KindLive {
				t.Fatalf("%s: base %s of %s: %+v %v", when, b, to.ID, info, err)
			}
		}
	}
	return pairs
}

// TestCBTBases runs random CBT histories (enable, disable, snapshots,
// data_destroy, destroy, clones, reverts) and checks CBTBases against
// ChangedBlocks after every step and across a reopen.
func TestCBTBases(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		if _, err := e.s.CBTBases("nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CBTBases of a missing volume: %v", err)
		}
		rng := rand.New(rand.NewPCG(5, 6))
		size := mib(2)
		e.create("a", size)
		e.create("b", size)
		steps := 150
		if testing.Short() || !e.mode.mem {
			steps = 60
		}
		pairs := 0
		defer func() {
			if pairs < steps { // the history must give the check something to compare
				t.Errorf("only %d accepted pairs in %d steps", pairs, steps)
			}
			t.Logf("%d accepted (base, to) pairs", pairs)
		}()
		for step := range steps {
			vols := e.s.Volumes()
			var live, snaps, cbtSnaps []string
			for _, v := range vols {
				switch {
				case v.Kind == KindLive:
					live = append(live, v.ID)
				case v.Kind == KindSnapshot:
					snaps = append(snaps, v.ID)
					if v.CBTEnabled {
						cbtSnaps = append(cbtSnaps, v.ID)
					}
				}
			}
			pick := func(s []string) string { return s[rng.IntN(len(s))] }
			v := pick(live)
			var err error
			switch k := rng.IntN(14); {
			case k < 3:
				_, err = e.s.EnableCBT(v)
			case k < 4:
				_, err = e.s.DisableCBT(v)
			case k < 7:
				e.write(v, uint64(rng.IntN(int(size/BlockSize)))*BlockSize, fill(byte(step), BlockSize))
				e.snapshot(v, fmt.Sprintf("s%d", step))
			case k < 9:
				e.write(v, uint64(rng.IntN(int(size/BlockSize)))*BlockSize, fill(byte(step), 512))
			case k < 10 && len(cbtSnaps) > 0:
				_, err = e.s.DataDestroy(pick(cbtSnaps))
			case k < 11 && len(snaps) > 0:
				err = e.s.Destroy(pick(snaps))
			case k < 12 && len(live) < 5:
				src := v
				if len(snaps) > 0 && rng.IntN(2) == 0 {
					src = pick(snaps)
				}
				_, err = e.s.Clone(CloneRequest{Source: src, ID: fmt.Sprintf("c%d", step)})
			case k < 13 && len(snaps) > 0:
				_, err = e.s.Revert(v, pick(snaps))
			case len(live) > 1:
				err = e.s.Destroy(v)
			}
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			pairs += checkBases(t, e, fmt.Sprintf("step %d", step))
			if step%50 == 49 {
				e.reopen()
				checkBases(t, e, fmt.Sprintf("after reopen at step %d", step))
			}
		}
	})
}
