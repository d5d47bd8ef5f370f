//go:build linux

package blockstore

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openDirect opens a segment file a second time with O_DIRECT, for large
// runs that bypass the page cache (direct.go says why).
func openDirect(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func closeDirect(fd int) error { return unix.Close(fd) }

// pwriteDirect writes all of p (aligned, whole blocks) at off through fd.
func pwriteDirect(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// preadDirect reads into p (aligned, whole blocks) from off through fd and
// returns how many bytes it got before the end of the file.
func preadDirect(fd int, p []byte, off int64) (int, error) {
	total := 0
	for total < len(p) {
		n, err := unix.Pread(fd, p[total:], off+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			break // the end of the file
		}
		total += n
	}
	return total, nil
}

// noCachestat is set once the kernel refuses cachestat(2) (before Linux
// 6.5); large reads then always go direct.
var noCachestat atomic.Bool

// allCached reports whether the page cache holds every page of [off,
// off+n) of the file fd, asking cachestat(2), which starts no readahead.
func allCached(fd int, off, n int64) bool {
	if noCachestat.Load() {
		return false
	}
	rng := struct{ off, len uint64 }{uint64(off), uint64(n)}
	var st struct{ cache, dirty, writeback, evicted, recentlyEvicted uint64 }
	_, _, errno := unix.Syscall6(unix.SYS_CACHESTAT, uintptr(fd),
		uintptr(unsafe.Pointer(&rng)), uintptr(unsafe.Pointer(&st)), 0, 0, 0)
	if errno != 0 {
		if errno == unix.ENOSYS {
			noCachestat.Store(true)
		}
		return false
	}
	return st.cache >= uint64((n+pageSize-1)/pageSize)
}

var pageSize = int64(unix.Getpagesize())
