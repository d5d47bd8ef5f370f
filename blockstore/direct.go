package blockstore

import (
	"errors"
	"io"
	"syscall"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// With Options.DirectIOMin set, large runs of blocks bypass the page
// cache, as qemu-nbd's --cache=none and BlueStore's large writes do. With
// a snapshot present every write takes new space, so a buffered writer
// pays for fresh page-cache pages on every write; on the 2-core benchmark
// VM that first touch ran at 287 MB/s into a new file against 1.2 GB/s
// with O_DIRECT (dd, 1 MiB blocks). Small writes stay buffered: they are
// what the page cache absorbs well.
//
// It is off by default: data written past the cache is read from the disk
// later, and in the benchmark that cost random 4 KiB reads after a
// sequential fill more than the writes gained (bench/RESULTS.md).
//
// A read of a large run goes through the page cache when the cache holds
// all of it (cachestat(2)), else direct: data written or read through the
// cache is served from it, and a backup streaming a whole disk does not
// push everything else out of the cache. (A RWF_NOWAIT read to find out
// starts readahead, filling the cache with the very pages a direct read
// avoids: 72% of the CPU of 1 MiB reads in a profile.)
//
// Both paths read and write the same file, which the kernel keeps
// coherent: an O_DIRECT write or read first writes back and drops cached
// pages of its range. Slots are never rewritten, and fdatasync on the
// buffered descriptor covers the O_DIRECT writes too (same inode).

// directAlign is the alignment O_DIRECT wants of memory, offsets and
// lengths: the block size, which is at least the logical sector size of
// any disk vdiskd runs on.
const directAlign = BlockSize

const (
	dfdUntried = -2
	dfdNone    = -1
)

func newSegmentFile(id uint32, f vfs.File, path string) *segmentFile {
	sf := &segmentFile{id: id, f: f, path: path}
	sf.dfd.Store(dfdUntried)
	return sf
}

func (sf *segmentFile) close() error {
	err := sf.f.Close()
	if fd := sf.dfd.Swap(dfdNone); fd >= 0 {
		if cerr := closeDirect(int(fd)); err == nil {
			err = cerr
		}
	}
	return err
}

// directFD returns sf's O_DIRECT descriptor, opening it on first use, or
// dfdNone where the file system refuses O_DIRECT.
func (sf *segmentFile) directFD() int {
	fd := sf.dfd.Load()
	if fd != dfdUntried {
		return int(fd)
	}
	nfd, err := openDirect(sf.path)
	if err != nil {
		sf.dfd.CompareAndSwap(dfdUntried, dfdNone)
		return int(sf.dfd.Load())
	}
	if !sf.dfd.CompareAndSwap(dfdUntried, int32(nfd)) {
		closeDirect(nfd) // another caller opened it first
	}
	return int(sf.dfd.Load())
}

// goesDirect reports whether a run of p bypasses the page cache.
func (s *segments) goesDirect(p []byte) bool {
	return s.directMin > 0 && len(p) >= s.directMin && len(p)%directAlign == 0 &&
		uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign == 0
}

// writeDirect writes p at off with O_DIRECT and reports whether it did;
// false leaves the write to the buffered path (a small or unaligned run,
// or a file system without O_DIRECT). An I/O error is returned by the
// buffered retry, which sees the same disk.
func (s *segments) writeDirect(sf *segmentFile, p []byte, off int64) bool {
	if !s.goesDirect(p) {
		return false
	}
	fd := sf.directFD()
	if fd < 0 {
		return false
	}
	if err := pwriteDirect(fd, p, off); err != nil {
		if errors.Is(err, syscall.ENOSPC) && s.diskFull != nil {
			s.diskFull()
		}
		return false
	}
	s.directWrote.Add(uint64(len(p)))
	return true
}

// readDirect reads a large run into p from off: through the page cache
// when it holds all of the run, else with O_DIRECT. done is false when
// the buffered path must do the read (as for writeDirect); otherwise n
// and err are as from io.ReaderAt (io.EOF when the file ends first).
func (s *segments) readDirect(sf *segmentFile, p []byte, off int64) (n int, done bool, err error) {
	if !s.goesDirect(p) {
		return 0, false, nil
	}
	fd := sf.directFD()
	if fd < 0 {
		return 0, false, nil
	}
	if bfd := sf.f.Fd(); bfd != vfs.InvalidFd && allCached(int(bfd), off, int64(len(p))) {
		return 0, false, nil
	}
	n, err = preadDirect(fd, p, off)
	if err != nil {
		return 0, false, nil // the buffered read reports it
	}
	s.directRead.Add(uint64(n))
	if n < len(p) {
		return n, true, io.EOF
	}
	return n, true, nil
}
