package blockstore

import "fmt"

// ReadSparse is ReadAt that also reports, through zero(lo, hi), the runs
// of p that hold no data: blocks never written, discarded or zeroed. lo
// and hi index p and come in ascending order, adjacent runs merged. NBD
// sends such runs as holes instead of zero bytes.
func (d *Disk) ReadSparse(p []byte, off uint64, zero func(lo, hi int)) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	if err := d.checkRange("read", off, uint64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	first, last := off>>blockShift, (off+uint64(len(p))-1)>>blockShift
	nblocks := last - first + 1
	var small [4]uint64 // data blocks, as a bitset relative to first (256 blocks = 1 MiB inline)
	data := small[:]
	if words := (nblocks + 63) / 64; words > uint64(len(small)) {
		data = make([]uint64, words)
	}
	var t readTally
	found, err := d.readInto(&t, p, off, func(blk uint64, val []byte) {
		if isData(val) {
			rel := blk - first
			data[rel/64] |= 1 << (rel % 64)
		}
	})
	if err != nil {
		return fmt.Errorf("blockstore: read %s: %w", d.id, err)
	}
	d.v.stats.recordClientRead(&t, nblocks, found)
	// Only data was copied into p: clear the rest here rather than all of
	// p up front (clearing every 1 MiB read first was 7% of the CPU of
	// sequential reads).
	end := off + uint64(len(p))
	for rel := uint64(0); rel < nblocks; {
		if data[rel/64]&(1<<(rel%64)) != 0 {
			rel++
			continue
		}
		run := rel
		for run < nblocks && data[run/64]&(1<<(run%64)) == 0 {
			run++
		}
		lo := max((first+rel)<<blockShift, off)
		hi := min((first+run)<<blockShift, end)
		clear(p[lo-off : hi-off])
		if zero != nil {
			zero(int(lo-off), int(hi-off))
		}
		rel = run
	}
	return nil
}
