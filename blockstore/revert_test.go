package blockstore

import (
	"bytes"
	"errors"
	"testing"
)

// Revert brings back the snapshot's content each time, survives a restart,
// leaves the snapshot and other volumes alone, and once everything is
// destroyed no data key remains.
func TestRevert(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("vm", mib(4))
		a, b, c := fill(1, 8192), fill(2, 8192), fill(3, 4096)
		e.write("vm", 0, a)
		e.snapshot("vm", "base")
		e.write("vm", 0, b)
		e.write("vm", mib(2), c)

		d := e.attach("vm")
		if _, err := e.s.Revert("vm", "base"); !errors.Is(err, ErrInUse) {
			t.Fatalf("revert while attached: %v, want ErrInUse", err)
		}
		d.Close()
		if _, err := e.s.Revert("base", "vm"); !errors.Is(err, ErrIsSnapshot) {
			t.Fatalf("revert a snapshot: %v, want ErrIsSnapshot", err)
		}
		if _, err := e.s.Revert("vm", "vm"); !errors.Is(err, ErrNotSnapshot) {
			t.Fatalf("revert to a live volume: %v, want ErrNotSnapshot", err)
		}

		for round := 0; round < 3; round++ {
			info, err := e.s.Revert("vm", "base")
			if err != nil {
				t.Fatal(err)
			}
			if info.CBTEnabled || info.Kind != KindLive || info.ID != "vm" {
				t.Fatalf("after revert: %+v", info)
			}
			if got := e.read("vm", 0, 8192); !bytes.Equal(got, a) {
				t.Fatalf("round %d: reverted content differs", round)
			}
			if got := e.read("vm", mib(2), 4096); !bytes.Equal(got, make([]byte, 4096)) {
				t.Fatalf("round %d: block written after the snapshot survived the revert", round)
			}
			e.write("vm", 0, b[:4096])
			if err := e.s.CollectGarbage(); err != nil {
				t.Fatal(err)
			}
			e.reopen()
			if got := e.read("vm", 0, 4096); !bytes.Equal(got, b[:4096]) {
				t.Fatalf("round %d: write after revert lost over a restart", round)
			}
			if got := e.read("base", 0, 8192); !bytes.Equal(got, a) {
				t.Fatalf("round %d: the snapshot changed", round)
			}
		}
		// The base can go while the reverted volume still reads through it.
		if err := e.s.Destroy("base"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.Revert("vm", "base"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revert to a destroyed snapshot: %v", err)
		}
		if got := e.read("vm", 4096, 4096); !bytes.Equal(got, a[4096:]) {
			t.Fatal("block inherited from the destroyed base is lost")
		}
		if err := e.s.Destroy("vm"); err != nil {
			t.Fatal(err)
		}
		if err := e.s.CollectGarbage(); err != nil {
			t.Fatal(err)
		}
		if n := countTag(t, e.s, tagData); n != 0 {
			t.Fatalf("%d data keys left after destroying everything", n)
		}
	})
}

func TestMovePool(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		e.create("a", mib(2))
		e.snapshot("a", "s")
		if err := e.s.MovePool("other", "a", "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("move with an unknown volume: %v", err)
		}
		if v, _ := e.s.Volume("a"); v.Pool != "local" {
			t.Fatalf("failed move changed the pool to %q", v.Pool)
		}
		if err := e.s.MovePool("other", "a", "s"); err != nil {
			t.Fatal(err)
		}
		e.reopen()
		for _, id := range []string{"a", "s"} {
			if v, _ := e.s.Volume(id); v.Pool != "other" {
				t.Fatalf("%s in pool %q after move and restart", id, v.Pool)
			}
		}
	})
}
