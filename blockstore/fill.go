package blockstore

import "fmt"

// filler copies the versions a read visits into p, which holds [off,
// off+len(p)) of the disk. Inline blocks are copied; segment blocks are
// read with one pread per run of adjacent slots landing on whole blocks of
// p, so a sequential 1 MiB read is usually one system call. Every segment
// block's CRC is checked: a mismatch is ErrCorrupt, never wrong data.
type filler struct {
	s   *Store
	id  string
	p   []byte
	off uint64

	// The pending run: n blocks from slot of segment seg, going to
	// p[dst:dst+n*BlockSize], whose CRCs are crcs[:n].
	seg, slot uint32
	dst, n    int
	blk       uint64 // first block of the run
	crcs      []uint32
	small     [16]uint32
}

func newFiller(s *Store, id string, p []byte, off uint64) *filler {
	f := &filler{s: s, id: id, p: p, off: off}
	f.crcs = f.small[:0]
	return f
}

// add copies one visited version of blk. Markers leave p as it is: the
// caller zeroes what holds no data.
func (f *filler) add(blk uint64, val []byte) error {
	bstart := blk << blockShift
	end := f.off + uint64(len(f.p))
	lo, hi := max(bstart, f.off), min(bstart+BlockSize, end)
	switch {
	case len(val) == BlockSize:
		copy(f.p[lo-f.off:hi-f.off], val[lo-bstart:hi-bstart])
		return nil
	case !isPointer(val):
		return checkMarker(f.id, blk, val)
	}
	ptr := decodePointer(val)
	if hi-lo < BlockSize { // an edge of the read: through a bounce buffer
		var buf [BlockSize]byte
		if err := f.readBlocks(buf[:], ptr.seg, ptr.slot, blk, []uint32{ptr.crc}); err != nil {
			return err
		}
		copy(f.p[lo-f.off:hi-f.off], buf[lo-bstart:hi-bstart])
		return nil
	}
	dst := int(lo - f.off)
	if f.n > 0 && ptr.seg == f.seg && ptr.slot == f.slot+uint32(f.n) && dst == f.dst+f.n*BlockSize {
		f.n++
		f.crcs = append(f.crcs, ptr.crc)
		return nil
	}
	if err := f.flush(); err != nil {
		return err
	}
	f.seg, f.slot, f.dst, f.n, f.blk = ptr.seg, ptr.slot, dst, 1, blk
	f.crcs = append(f.crcs[:0], ptr.crc)
	return nil
}

// flush reads the pending run. Call it once the visit is done.
func (f *filler) flush() error {
	if f.n == 0 {
		return nil
	}
	n := f.n
	f.n = 0
	return f.readBlocks(f.p[f.dst:f.dst+n*BlockSize], f.seg, f.slot, f.blk, f.crcs[:n])
}

func (f *filler) readBlocks(p []byte, seg, slot uint32, blk uint64, crcs []uint32) error {
	if err := f.s.segs.readAt(p, seg, slot); err != nil {
		return fmt.Errorf("blockstore: %s block %d: %w", f.id, blk, err)
	}
	for i, want := range crcs {
		if got := blockCRC(p[i*BlockSize : (i+1)*BlockSize]); got != want {
			return fmt.Errorf("blockstore: %s block %d: %w: segment %08x slot %d has CRC %08x, want %08x",
				f.id, blk+uint64(i), ErrCorrupt, seg, slot+uint32(i), got, want)
		}
	}
	return nil
}
