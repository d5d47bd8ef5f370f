package blockstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
)

// Many goroutines write different 512-byte sectors of the same 4 KiB
// blocks (each a read-modify-write), while others write whole blocks of
// other volumes, take snapshots and run the collector. No sector may lose
// its owner's last write, and every snapshot must read back the same twice.
func TestConcurrentSubBlockWrites(t *testing.T) {
	run(t, func(t *testing.T, e *env) {
		const (
			owners = 8 // one per sector of a 4 KiB block
			blocks = 16
			rounds = 200
		)
		e.create("shared", mib(2))
		e.create("other", mib(2))
		shared := e.attach("shared")
		other := e.attach("other")
		sector := func(owner, round int) []byte {
			p := bytes.Repeat([]byte{byte(owner + 1)}, 512)
			binary.BigEndian.PutUint32(p, uint32(round))
			return p
		}
		var wg sync.WaitGroup
		errs := make(chan error, owners+3)
		for o := 0; o < owners; o++ {
			wg.Add(1)
			go func(o int) {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					blk := uint64(r % blocks)
					if err := shared.Write(blk*BlockSize+uint64(o)*512, sector(o, r), 0); err != nil {
						errs <- err
						return
					}
				}
			}(o)
		}
		wg.Add(3)
		go func() { // whole-block writes to another volume
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if err := other.Write(uint64(r%64)*BlockSize, fill(byte(r), BlockSize), 0); err != nil {
					errs <- err
					return
				}
			}
		}()
		snaps := make(chan string, 100)
		go func() { // snapshots of both, then destroy some
			defer wg.Done()
			for i := 0; i < 20; i++ {
				ids := []string{fmt.Sprintf("s%d", i), fmt.Sprintf("o%d", i)}
				if _, err := e.s.Snapshot(SnapshotRequest{Source: "shared", ID: ids[0]}, SnapshotRequest{Source: "other", ID: ids[1]}); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := e.s.Destroy(ids[1]); err != nil {
						errs <- err
						return
					}
				}
				snaps <- ids[0]
			}
			close(snaps)
		}()
		go func() { // the collector, and snapshot reads that must be stable
			defer wg.Done()
			for id := range snaps {
				if err := e.s.CollectGarbage(); err != nil {
					errs <- err
					return
				}
				d, err := e.s.Attach(id)
				if err != nil {
					errs <- err
					return
				}
				a, b := make([]byte, blocks*BlockSize), make([]byte, blocks*BlockSize)
				_, err1 := d.ReadAt(a, 0)
				_, err2 := d.ReadAt(b, 0)
				d.Close()
				if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
					errs <- fmt.Errorf("snapshot %s unstable (%v, %v)", id, err1, err2)
					return
				}
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := e.read("shared", 0, blocks*BlockSize)
		for blk := 0; blk < blocks; blk++ {
			for o := 0; o < owners; o++ {
				last := blk + (rounds-1-blk)/blocks*blocks // the last round that wrote blk
				want := sector(o, last)
				off := blk*BlockSize + o*512
				if !bytes.Equal(got[off:off+512], want) {
					t.Fatalf("block %d sector %d: round %d, want round %d of its owner", blk, o,
						binary.BigEndian.Uint32(got[off:]), last)
				}
			}
		}
	})
}
