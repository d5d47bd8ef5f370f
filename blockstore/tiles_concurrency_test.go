package blockstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// Writers that share chunks and tiles, in a store of tiles with a tile
// cache small enough to evict all the time: each owns every eighth block
// of a volume spanning 24 chunks and writes its blocks one at a time at
// random, while
// snapshots come and go and the collector and reclaim run. Two writes to
// different blocks of one tile rewrite the same key, so without the chunk
// lock one would lose the other; with a stale cached chunk tiles would
// overlap. Every block must end as its owner's last write, and every
// snapshot must read the same twice.
func TestTilesConcurrentWriters(t *testing.T) {
	m := modes[6] // mem-tiles: a tiny newest cache, so a tiny tile cache
	e := newEnv(t, m)
	const (
		writers = 8
		blocks  = 24 * chunkBlocks
		rounds  = 400
	)
	e.create("v", blocks*BlockSize)
	// The first write of each block goes in with its neighbours, so the
	// writers start out inside shared 2 MiB tiles.
	e.write("v", 0, randomData(blocks*BlockSize, 9))
	d := e.attach("v")
	stamp := func(w, r int) []byte {
		p := bytes.Repeat([]byte{byte(w + 1)}, BlockSize)
		binary.BigEndian.PutUint32(p, uint32(r))
		return p
	}
	last := make([]int, blocks) // the owner's last round per block, -1 for the fill
	for i := range last {
		last[i] = -1
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for r := range rounds {
				blk := uint64(rng.IntN(blocks/writers))*writers + uint64(w)
				if err := d.Write(blk*BlockSize, stamp(w, r), 0); err != nil {
					errs <- err
					return
				}
				last[blk] = r // only w writes blk
			}
		}()
	}
	stop, bgDone := make(chan struct{}), make(chan struct{})
	go func() { // snapshots, reads of them, the collector and reclaim
		defer close(bgDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := snapshotRound(e, fmt.Sprintf("s%d", i), int64(i%20)*chunkBlocks*BlockSize); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-bgDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fill := randomData(blocks*BlockSize, 9)
	got := e.read("v", 0, blocks*BlockSize)
	for blk := range blocks {
		want := fill[blk*BlockSize : (blk+1)*BlockSize]
		if last[blk] >= 0 {
			want = stamp(blk%writers, last[blk])
		}
		if !bytes.Equal(got[blk*BlockSize:(blk+1)*BlockSize], want) {
			t.Fatalf("block %d: not its owner's last write (round %d)", blk, last[blk])
		}
	}
}

// snapshotRound takes snapshot id of v, reads 4 MiB of it at off twice,
// destroys it, and runs the collector and reclaim.
func snapshotRound(e *env, id string, off int64) error {
	if _, err := e.s.Snapshot(SnapshotRequest{Source: "v", ID: id}); err != nil {
		return err
	}
	sd, err := e.s.Attach(id)
	if err != nil {
		return err
	}
	a, b := make([]byte, 2*chunkBlocks*BlockSize), make([]byte, 2*chunkBlocks*BlockSize)
	_, err1 := sd.ReadAt(a, off)
	_, err2 := sd.ReadAt(b, off)
	sd.Close()
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("snapshot %s unstable (%v, %v)", id, err1, err2)
	}
	if err := e.s.Destroy(id); err != nil {
		return err
	}
	if err := e.s.CollectGarbage(); err != nil {
		return err
	}
	_, err = e.s.ReclaimSegments(0.5)
	return err
}
