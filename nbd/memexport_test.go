package nbd

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// An in-memory sparse Exports for the tests: each export is a byte model
// stored in 4 KiB blocks (absent blocks read as holes), with per-operation
// fault injection.

const memBlock = 4096

// Backend operations, as fault keys and call counters.
const (
	opRead   = "read"
	opWrite  = "write"
	opFlush  = "flush"
	opTrim   = "trim"
	opZero   = "zero"
	opCache  = "cache"
	opStatus = "status"
)

var allOps = [...]string{opRead, opWrite, opFlush, opTrim, opZero, opCache, opStatus}

// fault changes what one backend operation does. The zero value does
// nothing.
type fault struct {
	err   error // returned instead of doing the operation
	panic any   // panics with this value
	// gate, when set, blocks the call until it is closed.
	gate chan struct{}
	// match, when set, limits the fault to calls it accepts.
	match func(off, n uint64) bool
}

// memDisk is one export's contents.
type memDisk struct {
	mu     sync.Mutex
	size   uint64
	blocks map[uint64][]byte // block index -> 4 KiB of data
	zalloc map[uint64]bool   // zeroed with NO_HOLE: allocated zeros
	info   ExportInfo
}

func newMemDisk(size uint64) *memDisk {
	return &memDisk{size: size, blocks: map[uint64][]byte{}, zalloc: map[uint64]bool{}}
}

// readLocked fills p from off and reports absent blocks as zero runs.
func (d *memDisk) readLocked(p []byte, off uint64, zero func(lo, hi int)) {
	n := uint64(len(p))
	if n == 0 {
		return
	}
	first, last := off/memBlock, (off+n-1)/memBlock
	holeLo := -1
	for b := first; b <= last; b++ {
		bs := b * memBlock
		lo, hi := max(bs, off), min(bs+memBlock, off+n)
		dst := p[lo-off : hi-off]
		if data, ok := d.blocks[b]; ok {
			copy(dst, data[lo-bs:hi-bs])
			if holeLo >= 0 && zero != nil {
				zero(holeLo, int(lo-off))
			}
			holeLo = -1
			continue
		}
		clear(dst) // holes and allocated zeros alike
		if holeLo < 0 {
			holeLo = int(lo - off)
		}
	}
	if holeLo >= 0 && zero != nil {
		zero(holeLo, int(n))
	}
}

func (d *memDisk) writeLocked(p []byte, off uint64) {
	for i := 0; i < len(p); {
		at := off + uint64(i)
		b, in := at/memBlock, int(at%memBlock)
		data, ok := d.blocks[b]
		if !ok {
			data = make([]byte, memBlock)
			d.blocks[b] = data
		}
		delete(d.zalloc, b)
		k := copy(data[in:], p[i:])
		i += k
	}
}

// zeroLocked zeros [off, off+n): whole blocks become holes (or allocated
// zeros with noHole), partial blocks are cleared in place.
func (d *memDisk) zeroLocked(off, n uint64, noHole bool) {
	for at := off; at < off+n; {
		b := at / memBlock
		bs := b * memBlock
		hi := min(bs+memBlock, off+n)
		if at == bs && hi == bs+memBlock {
			delete(d.blocks, b)
			if noHole {
				d.zalloc[b] = true
			} else {
				delete(d.zalloc, b)
			}
		} else if data, ok := d.blocks[b]; ok {
			clear(data[at-bs : hi-bs])
		}
		at = hi
	}
}

// bytes returns a copy of [off, off+n).
func (d *memDisk) bytes(off, n uint64) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := make([]byte, n)
	d.readLocked(p, off, nil)
	return p
}

// memExports is the Exports table.
type memExports struct {
	mu      sync.Mutex
	disks   map[string]*memDisk
	faults  map[string]fault // by operation
	listErr error
	// Describe/Open refusals by export name.
	refuse map[string]error

	calls [len(allOps)]atomic.Int64

	opened  []*memExport
	maxSeen atomic.Int64 // highest concurrent calls observed
	active  atomic.Int64
}

func opIndex(op string) int {
	i := slices.Index(allOps[:], op)
	if i < 0 {
		panic("unknown op " + op)
	}
	return i
}

func newMemExports() *memExports {
	return &memExports{disks: map[string]*memDisk{}, faults: map[string]fault{},
		refuse: map[string]error{}}
}

// add creates an export.
func (m *memExports) add(name string, size uint64, info ExportInfo) *memDisk {
	d := newMemDisk(size)
	info.Size = size
	d.info = info
	m.mu.Lock()
	m.disks[name] = d
	m.mu.Unlock()
	return d
}

func (m *memExports) setFault(op string, f fault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.err == nil && f.panic == nil && f.gate == nil {
		delete(m.faults, op)
		return
	}
	m.faults[op] = f
}

func (m *memExports) count(op string) int64 { return m.calls[opIndex(op)].Load() }

func (m *memExports) Describe(c *Conn, name string) (ExportInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refuse[name]; err != nil {
		return ExportInfo{}, err
	}
	d := m.disks[name]
	if d == nil {
		return ExportInfo{}, UnknownExport("no export %q", name)
	}
	return d.info, nil
}

func (m *memExports) Open(c *Conn, name string) (Export, ExportInfo, error) {
	info, err := m.Describe(c, name)
	if err != nil {
		return nil, ExportInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	x := &memExport{m: m, d: m.disks[name], name: name}
	m.opened = append(m.opened, x)
	return x, info, nil
}

func (m *memExports) List(c *Conn) ([]Listing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listErr != nil {
		return nil, m.listErr
	}
	var out []Listing
	for name, d := range m.disks {
		out = append(out, Listing{Name: name, Description: d.info.Description})
	}
	slices.SortFunc(out, func(a, b Listing) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// checkClosed verifies that every opened export was closed exactly once.
func (m *memExports) checkClosed(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.opened {
		if n := x.closes.Load(); n != 1 {
			t.Errorf("export %d (%s) closed %d times, want exactly once", i, x.name, n)
		}
	}
}

func (m *memExports) openedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.opened)
}

// memExport is one opened export.
type memExport struct {
	m      *memExports
	d      *memDisk
	name   string
	closes atomic.Int32

	mu     sync.Mutex
	fuaLog []string // "write fua=true" and the like, for flag checks
}

var errClosedExport = errors.New("memexport: closed")

// enter applies the fault for op, counts the call and reports it.
func (x *memExport) enter(op string, off, n uint64) error {
	if x.closes.Load() != 0 {
		return errClosedExport
	}
	a := x.m.active.Add(1)
	defer x.m.active.Add(-1)
	for {
		s := x.m.maxSeen.Load()
		if a <= s || x.m.maxSeen.CompareAndSwap(s, a) {
			break
		}
	}
	// Counted only once maxSeen holds this call: a test that saw n calls
	// counted (waitEntered) then reads maxSeen finds every one of them.
	x.m.calls[opIndex(op)].Add(1)
	x.m.mu.Lock()
	f, ok := x.m.faults[op]
	x.m.mu.Unlock()
	if !ok || (f.match != nil && !f.match(off, n)) {
		return nil
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.panic != nil {
		panic(f.panic)
	}
	return f.err
}

func (x *memExport) log(s string) {
	x.mu.Lock()
	x.fuaLog = append(x.fuaLog, s)
	x.mu.Unlock()
}

func (x *memExport) ReadAt(p []byte, off uint64, zero func(lo, hi int)) error {
	if err := x.enter(opRead, off, uint64(len(p))); err != nil {
		return err
	}
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	if off+uint64(len(p)) > x.d.size {
		return fmt.Errorf("memexport: read past the end: %w", EINVAL)
	}
	x.d.readLocked(p, off, zero)
	return nil
}

func (x *memExport) WriteAt(p []byte, off uint64, fua bool) error {
	if err := x.enter(opWrite, off, uint64(len(p))); err != nil {
		return err
	}
	x.log(fmt.Sprintf("write %d+%d fua=%v", off, len(p), fua))
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	if off+uint64(len(p)) > x.d.size {
		return ENOSPC
	}
	x.d.writeLocked(p, off)
	return nil
}

func (x *memExport) Flush() error {
	if err := x.enter(opFlush, 0, 0); err != nil {
		return err
	}
	x.log("flush")
	return nil
}

func (x *memExport) Trim(off, n uint64, fua bool) error {
	if err := x.enter(opTrim, off, n); err != nil {
		return err
	}
	x.log(fmt.Sprintf("trim %d+%d fua=%v", off, n, fua))
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	x.d.zeroLocked(off, n, false)
	return nil
}

func (x *memExport) Zero(off, n uint64, f ZeroFlags) error {
	if err := x.enter(opZero, off, n); err != nil {
		return err
	}
	x.log(fmt.Sprintf("zero %d+%d fua=%v nohole=%v fast=%v", off, n, f&ZeroFUA != 0, f&ZeroNoHole != 0, f&ZeroFast != 0))
	if f&ZeroFast != 0 && (off|n)%memBlock != 0 {
		return fmt.Errorf("memexport: partial block: %w", ENOTSUP)
	}
	x.d.mu.Lock()
	defer x.d.mu.Unlock()
	x.d.zeroLocked(off, n, f&ZeroNoHole != 0)
	return nil
}

func (x *memExport) Cache(off, n uint64) error {
	if err := x.enter(opCache, off, n); err != nil {
		return err
	}
	x.log(fmt.Sprintf("cache %d+%d", off, n))
	return nil
}

// dirtyContext is a bitmap context memExports serves: 64 KiB dirty every
// 128 KiB (dirty, clean, dirty, ...).
const dirtyContext = "qemu:dirty-bitmap:b0"

func (x *memExport) BlockStatus(ctx string, off, n uint64, fn func(length uint64, flags uint32) error) error {
	if err := x.enter(opStatus, off, n); err != nil {
		return err
	}
	switch ctx {
	case "base:allocation":
		x.d.mu.Lock()
		type ext struct {
			n     uint64
			flags uint32
		}
		var exts []ext
		for at := off; at < off+n; {
			b := at / memBlock
			hi := min((b+1)*memBlock, x.d.size)
			var fl uint32
			if _, ok := x.d.blocks[b]; !ok {
				fl = 3
				if x.d.zalloc[b] {
					fl = 2
				}
			}
			if k := len(exts); k > 0 && exts[k-1].flags == fl {
				exts[k-1].n += hi - at
			} else {
				exts = append(exts, ext{hi - at, fl})
			}
			at = hi
			if len(exts) > 4096 {
				break // enough: the server asks again
			}
		}
		// A trailing hole runs on to the end of the disk (the server
		// clamps it to the request).
		if k := len(exts); k > 0 && exts[k-1].flags == 3 {
			last := off
			for _, e := range exts[:k-1] {
				last += e.n
			}
			exts[k-1].n = x.d.size - last
		}
		x.d.mu.Unlock()
		for _, e := range exts {
			if err := fn(e.n, e.flags); err != nil {
				return err
			}
		}
		return nil
	case dirtyContext, "qemu:dirty-bitmap:b1":
		// b0: the even 64 KiB blocks are dirty; b1: the odd ones.
		const g = 64 << 10
		var phase uint64
		if ctx != dirtyContext {
			phase = 1
		}
		for at := off; at < off+n; {
			k := at / g
			hi := (k + 1) * g
			if err := fn(hi-at, uint32(1-(k+phase)%2)); err != nil {
				return err
			}
			at = hi
		}
		return nil
	}
	return fmt.Errorf("memexport: unknown context %q: %w", ctx, EINVAL)
}

func (x *memExport) Close() error {
	x.closes.Add(1)
	return nil
}

// waitEntered waits until n backend calls of op have started. The
// concurrency they reached is in maxSeen by then (enter stores it before
// it counts the call).
func (m *memExports) waitEntered(t testing.TB, op string, n int64) {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("%d %s calls", n, op), func() bool { return m.count(op) >= n })
}
