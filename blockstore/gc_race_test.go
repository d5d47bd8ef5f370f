package blockstore

import (
	"bytes"
	"fmt"
	"testing"
)

// Regression tests for two races the crash test found between the
// collector and ordinary writes and snapshots.

// A hole at the head generation is the bottom version GC deletes; a write
// at the same generation reuses the key. Race them.
func TestGCRacingRewriteOfHole(t *testing.T) {
	e := newEnv(t, modes[1])
	e.create("a", mib(64))
	e.snapshot("a", "base")
	d := e.attach("a")
	data := bytes.Repeat([]byte{7}, BlockSize)
	for iter := 0; iter < iterations(200); iter++ {
		if err := d.Write(0, bytes.Repeat([]byte{1}, 4<<20), 0); err != nil { // older versions
			t.Fatal(err)
		}
		e.snapshot("a", "s")
		if err := d.Trim(0, 4<<20, 0); err != nil { // holes at the new head
			t.Fatal(err)
		}
		if err := e.s.Destroy("s"); err != nil { // job: (s, head]
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- e.s.CollectGarbage() }()
		for b := uint64(0); b < 1024; b++ {
			if err := d.Write(b*BlockSize, data, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4<<20)
		if _, err := d.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < 1024; b++ {
			if !bytes.Equal(got[b*BlockSize:(b+1)*BlockSize], data) {
				t.Fatalf("iteration %d: block %d lost an acknowledged write (reads %x...)", iter, b, got[b*BlockSize:b*BlockSize+8])
			}
		}
	}
}

// GC captures the pins once per job, then reads versions block by block. A
// snapshot taken meanwhile pins a version GC then sees as overwritten.
func TestGCRacingSnapshot(t *testing.T) {
	e := newEnv(t, modes[1])
	e.create("a", mib(64))
	e.snapshot("a", "base")
	d := e.attach("a")
	fillAll := func(seed byte) {
		for off := uint64(0); off < mib(64); off += mib(1) {
			if err := d.Write(off, bytes.Repeat([]byte{seed}, int(mib(1))), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	fillAll(1)
	e.snapshot("a", "s1")
	fillAll(2)
	e.snapshot("a", "s2")
	if err := e.s.Destroy("s1"); err != nil { // job over all 1024 CBT blocks
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- e.s.CollectGarbage() }()
	last := mib(64) - BlockSize // GC reaches it last
	var snaps []string
	running := true
	for i := 0; running; i++ {
		want := bytes.Repeat([]byte{byte(10 + i%200)}, BlockSize)
		if err := d.Write(last, want, 0); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("x%d", i)
		e.snapshot("a", id)
		snaps = append(snaps, id)
		if err := d.Write(last, bytes.Repeat([]byte{0xEE}, BlockSize), 0); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
	}
	for i, id := range snaps {
		got := e.read(id, last, BlockSize)
		if got[0] != byte(10+i%200) {
			t.Fatalf("snapshot %s (of %d) lost its data: reads %x, want %x", id, len(snaps), got[0], byte(10+i%200))
		}
	}
	t.Logf("%d snapshots intact", len(snaps))
}

func iterations(n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}
