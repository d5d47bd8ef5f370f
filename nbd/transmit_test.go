package nbd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// pattern returns n bytes derived from seed, none of them zero.
func pattern(seed, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seed*31+i*7+i>>9) | 1
	}
	return p
}

// TestReadWriteModel writes and reads at random against a byte model,
// with and without structured replies and strict alignment.
func TestReadWriteModel(t *testing.T) {
	for _, mode := range []struct {
		name      string
		sr, align bool
	}{{"simple", false, false}, {"structured", true, false}, {"structured-aligned", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			ts := newTestServer(t, nil, nil)
			c := ts.connect("disk", mode.sr, mode.align)
			const size = 1 << 20 // stay in the first MiB
			model := make([]byte, size)
			rng := rand.New(rand.NewPCG(1, 2))
			unit := 1
			if mode.align {
				unit = 512
			}
			for i := range 300 {
				off := rng.IntN(size/unit) * unit
				n := rng.IntN(min(size-off, 64<<10)/unit+1) * unit
				switch rng.IntN(5) {
				case 0, 1:
					p := pattern(i, n)
					c.Write(uint64(off), p)
					copy(model[off:], p)
				case 2:
					fl := uint16(0)
					if rng.IntN(2) == 0 {
						fl |= cmdFlagNoHole
					}
					if r := c.Do(fl, cmdWriteZeroes, uint64(off), uint32(n), nil); r.Errno != 0 {
						t.Fatalf("zero %d+%d: %v", off, n, r)
					}
					clear(model[off : off+n])
				case 3:
					if r := c.Do(cmdFlagFUA, cmdTrim, uint64(off), uint32(n), nil); r.Errno != 0 {
						t.Fatalf("trim %d+%d: %v", off, n, r)
					}
					clear(model[off : off+n])
				case 4:
					fl := uint16(0)
					if mode.sr && rng.IntN(2) == 0 {
						fl = cmdFlagDF
					}
					r := c.Do(fl, cmdRead, uint64(off), uint32(n), nil)
					if r.Errno != 0 {
						t.Fatalf("read %d+%d: %v", off, n, r)
					}
					if !bytes.Equal(r.Data, model[off:off+n]) {
						t.Fatalf("read %d+%d differs from the model", off, n)
					}
					if fl&cmdFlagDF != 0 {
						content := 0
						for _, m := range r.Msgs {
							if m.Type == chunkOffsetData || m.Type == chunkOffsetHole {
								content++
							}
						}
						if n > 0 && content != 1 {
							t.Fatalf("DF read %d+%d: %d content chunks", off, n, content)
						}
					}
				}
			}
			if got := c.Read(0, size); !bytes.Equal(got, model) {
				t.Fatal("final read differs from the model")
			}
			c.Disconnect()
		})
	}
}

// TestStructuredReadChunks checks the chunks of structured reads over
// random layouts of data and holes: alternating OFFSET_DATA and
// OFFSET_HOLE in ascending order, DONE only on the last, covering the
// request exactly.
func TestStructuredReadChunks(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	rng := rand.New(rand.NewPCG(3, 4))
	const blocks = 64
	for b := range blocks {
		if rng.IntN(2) == 0 {
			c.Write(uint64(b)*memBlock, pattern(b, memBlock))
		}
	}
	d := ts.exp.disks["disk"]
	for range 300 {
		off := uint64(rng.IntN(blocks * memBlock))
		n := uint32(rng.IntN(blocks*memBlock-int(off)) + 1)
		r := c.Do(0, cmdRead, off, n, nil)
		if r.Errno != 0 {
			t.Fatalf("read: %v", r)
		}
		if !bytes.Equal(r.Data, d.bytes(off, uint64(n))) {
			t.Fatalf("read %d+%d differs", off, n)
		}
		at := off
		for i, m := range r.Msgs {
			last := i == len(r.Msgs)-1
			if (m.Flags&replyFlagDone != 0) != last {
				t.Fatalf("read %d+%d: DONE on chunk %d of %d", off, n, i, len(r.Msgs))
			}
			if m.Type != chunkOffsetData && m.Type != chunkOffsetHole {
				t.Fatalf("read %d+%d: chunk type %d", off, n, m.Type)
			}
			if i > 0 && r.Msgs[i-1].Type == m.Type {
				t.Fatalf("read %d+%d: two %d chunks in a row", off, n, m.Type)
			}
			if got := binary.BigEndian.Uint64(m.Payload); got != at {
				t.Fatalf("read %d+%d: chunk %d at %d, want %d", off, n, i, got, at)
			}
			if m.Type == chunkOffsetData {
				at += uint64(len(m.Payload) - 8)
			} else {
				at += uint64(binary.BigEndian.Uint32(m.Payload[8:]))
			}
		}
		if at != off+uint64(n) {
			t.Fatalf("read %d+%d: chunks end at %d", off, n, at)
		}
	}
}

// zeroReporter is an Export whose ReadAt reports the zero runs it is told
// to, well-formed or not.
type zeroReporter struct {
	memExport
	runs [][2]int
}

func (z *zeroReporter) ReadAt(p []byte, off uint64, zero func(lo, hi int)) error {
	clear(p)
	for _, r := range z.runs {
		zero(r[0], r[1])
	}
	return nil
}

// oneExport serves a single Export value under the name "x".
type oneExport struct {
	x      Export
	info   ExportInfo
	closes int
}

func (o *oneExport) Describe(*Conn, string) (ExportInfo, error) { return o.info, nil }
func (o *oneExport) Open(*Conn, string) (Export, ExportInfo, error) {
	return closeCounter{o.x, &o.closes}, o.info, nil
}
func (o *oneExport) List(*Conn) ([]Listing, error) { return nil, nil }

type closeCounter struct {
	Export
	n *int
}

func (c closeCounter) Close() error { *c.n++; return nil }

// TestReadZeroRunsFromBackend feeds odd zero reports to the server: out
// of range, empty, adjacent, overlapping and out of order. Whatever the
// backend says, the chunks must stay well formed.
func TestReadZeroRunsFromBackend(t *testing.T) {
	for _, tc := range []struct {
		name string
		runs [][2]int
	}{
		{"none", nil},
		{"all", [][2]int{{0, 4096}}},
		{"all in pieces", [][2]int{{0, 1000}, {1000, 4096}}},
		{"middle", [][2]int{{100, 200}}},
		{"edges", [][2]int{{0, 1}, {4095, 4096}}},
		{"invalid", [][2]int{{-1, 5}, {10, 10}, {20, 10}, {4000, 5000}}},
		{"overlapping", [][2]int{{0, 100}, {50, 200}}},
		{"contained", [][2]int{{0, 300}, {100, 200}}},
		{"descending", [][2]int{{200, 300}, {0, 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serveOne(t, &zeroReporter{runs: tc.runs}, ExportInfo{Size: 1 << 20})
			for _, fl := range []uint16{0, cmdFlagDF} {
				r := c.Do(fl, cmdRead, 8192, 4096, nil) // finishResult checks the chunks
				if r.Errno != 0 || !bytes.Equal(r.Data, make([]byte, 4096)) {
					t.Fatalf("read: %v", r)
				}
			}
			c.Disconnect()
		})
	}
}

// TestReadErrors: a backend error is one ERROR chunk (structured) or an
// error with no data (simple), never data; errors map to their errno.
func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Errno
	}{
		{EIO, EIO},
		{errors.New("disk on fire"), EIO},
		{fmt.Errorf("wrapped: %w", EINVAL), EINVAL},
		{ENOMEM, ENOMEM},
		{syscall.ENOSPC, ENOSPC},
		{fmt.Errorf("quota: %w", syscall.EDQUOT), ENOSPC},
		{syscall.EFBIG, ENOSPC},
		{syscall.EROFS, EPERM},
		{syscall.EPERM, EPERM},
		{syscall.EIO, EIO},
		{ESHUTDOWN, ESHUTDOWN},
		{Errno(1234), Errno(1234)},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			ts := newTestServer(t, nil, nil)
			ts.exp.disks["disk"].writeLocked(pattern(1, 8192), 0)
			ts.exp.setFault(opRead, fault{err: tc.err, match: func(off, n uint64) bool { return off == 0 }})
			for _, sr := range []bool{false, true} {
				c := ts.connect("disk", sr, false)
				for _, n := range []uint32{512, 8192} {
					r := c.Do(0, cmdRead, 0, n, nil)
					if r.Errno != uint32(tc.want) {
						t.Fatalf("sr=%v: errno %d, want %d (%v)", sr, r.Errno, tc.want, r)
					}
					if len(r.Msgs) != 1 || len(r.Data) != 0 {
						t.Fatalf("sr=%v: an error reply with more: %v", sr, r)
					}
					if sr && (r.Msgs[0].Type != chunkError || r.Msgs[0].Flags&replyFlagDone == 0) {
						t.Fatalf("sr=%v: %v", sr, r)
					}
				}
				// The stream is still in step.
				if got := c.Read(4096, 4096); !bytes.Equal(got, pattern(1, 8192)[4096:]) {
					t.Fatal("read after an error differs")
				}
				c.Disconnect()
			}
		})
	}
}

// TestCommandErrorsFromBackend: every command reports its backend's error.
func TestCommandErrorsFromBackend(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false, "base:allocation")
	for _, tc := range []struct {
		op    string
		flags uint16
		typ   uint16
		n     uint32
	}{
		{opWrite, 0, cmdWrite, 512},
		{opFlush, 0, cmdFlush, 0},
		{opTrim, 0, cmdTrim, 512},
		{opZero, 0, cmdWriteZeroes, 512},
		{opCache, 0, cmdCache, 512},
		{opStatus, 0, cmdBlockStatus, 512},
	} {
		ts.exp.setFault(tc.op, fault{err: fmt.Errorf("no: %w", ENOSPC)})
		var payload []byte
		if tc.typ == cmdWrite {
			payload = make([]byte, tc.n)
		}
		r := c.Do(tc.flags, tc.typ, 0, tc.n, payload)
		if r.Errno != uint32(ENOSPC) || len(r.Msgs) != 1 || r.Msgs[0].Type != chunkError {
			t.Errorf("%s: %v", tc.op, r)
		}
		ts.exp.setFault(tc.op, fault{})
		if r := c.Do(tc.flags, tc.typ, 0, tc.n, payload); r.Errno != 0 {
			t.Errorf("%s after clearing the fault: %v", tc.op, r)
		}
	}
	c.Disconnect()
}

// TestFlagsReachBackend: FUA, NO_HOLE and FAST_ZERO arrive as asked.
func TestFlagsReachBackend(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, true)
	for _, rq := range []struct {
		flags, typ uint16
		n          uint32
	}{
		{0, cmdWrite, 512}, {cmdFlagFUA, cmdWrite, 512},
		{0, cmdTrim, 4096}, {cmdFlagFUA, cmdTrim, 4096},
		{0, cmdWriteZeroes, 4096}, {cmdFlagFUA, cmdWriteZeroes, 4096},
		{cmdFlagNoHole, cmdWriteZeroes, 4096}, {cmdFlagFastZero, cmdWriteZeroes, 4096},
		{cmdFlagFUA | cmdFlagNoHole | cmdFlagFastZero, cmdWriteZeroes, 4096},
		{0, cmdFlush, 0}, {cmdFlagFUA, cmdCache, 4096},
	} {
		var p []byte
		if rq.typ == cmdWrite {
			p = pattern(1, int(rq.n))
		}
		if r := c.Do(rq.flags, rq.typ, 0, rq.n, p); r.Errno != 0 {
			t.Fatalf("%v", r)
		}
	}
	c.Disconnect()
	x := ts.exp.opened[0]
	want := []string{
		"write 0+512 fua=false", "write 0+512 fua=true",
		"trim 0+4096 fua=false", "trim 0+4096 fua=true",
		"zero 0+4096 fua=false nohole=false fast=false", "zero 0+4096 fua=true nohole=false fast=false",
		"zero 0+4096 fua=false nohole=true fast=false", "zero 0+4096 fua=false nohole=false fast=true",
		"zero 0+4096 fua=true nohole=true fast=true",
		"flush", "cache 0+4096",
	}
	if !slices.Equal(x.fuaLog, want) {
		t.Fatalf("backend saw\n%q\nwant\n%q", x.fuaLog, want)
	}
}

// statusExport answers BLOCK_STATUS from a function.
type statusExport struct {
	memExport
	fn func(ctx string, off, n uint64, emit func(uint64, uint32) error) error
}

func (s *statusExport) BlockStatus(ctx string, off, n uint64, emit func(uint64, uint32) error) error {
	return s.fn(ctx, off, n, emit)
}

// serveOne runs a server for one Export and returns a connected client
// that negotiated structured replies and the given contexts. Everything
// is torn down and checked at the end of the test.
func serveOne(t *testing.T, x Export, info ExportInfo, contexts ...string) *nbdtest.Client {
	t.Helper()
	exp := &oneExport{x: x, info: info}
	leaks := leakCheck(t)
	srv, err := NewServer(Options{Exports: exp, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln := newChanListener()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	testwait.Send(t, ln.conns, net.Conn(b), "the server to accept")
	t.Cleanup(func() {
		a.Close()
		if err := shutdownWithin(srv, 10*time.Second); err != nil {
			t.Error(err)
		}
		if err := testwait.Recv(t, done, "Serve to return"); !errors.Is(err, ErrServerClosed) {
			t.Error(err)
		}
		if exp.closes != 1 {
			t.Errorf("Close called %d times", exp.closes)
		}
		leaks()
	})
	c := nbdtest.NewClient(t, a)
	c.Hello()
	c.Start()
	c.StructuredReplies()
	if len(contexts) > 0 {
		c.SetMeta("x", contexts...)
	}
	c.Go("x")
	return c
}

// TestBlockStatusShapes: one chunk per context in the order selected with
// its ID; extents clamped to the request; REQ_ONE gives one extent no
// longer than the request; lengths over 32 bits are split; an error in
// any context is the only chunk.
func TestBlockStatusShapes(t *testing.T) {
	const size = 8 << 30
	ctxs := []string{"base:allocation", "qemu:dirty-bitmap:a", "qemu:dirty-bitmap:b"}
	var failCtx atomic.Value // string
	failCtx.Store("")
	x := &statusExport{fn: func(ctx string, off, n uint64, emit func(uint64, uint32) error) error {
		if ctx == failCtx.Load().(string) {
			return fmt.Errorf("bitmap gone: %w", EINVAL)
		}
		switch ctx {
		case "base:allocation": // one hole to the end of the disk
			return emit(size-off, 3)
		case "qemu:dirty-bitmap:a": // 1 MiB runs, starting at off, with empty extents in between
			for at := off; at < off+n; at += 1 << 20 {
				if err := emit(0, 1); err != nil {
					return err
				}
				if err := emit(1<<20, uint32(at>>20)%2); err != nil {
					return err
				}
			}
			return nil
		case "qemu:dirty-bitmap:b": // no extents at all
			return nil
		}
		return EINVAL
	}}
	c := serveOne(t, x, ExportInfo{Size: size, MetaContexts: ctxs}, ctxs[1], ctxs[0])

	check := func(flags uint16, off uint64, n uint32) [][][2]uint32 {
		t.Helper()
		r := c.Do(flags, cmdBlockStatus, off, n, nil)
		if r.Errno != 0 {
			t.Fatalf("block status %d+%d: %v", off, n, r)
		}
		if len(r.Msgs) != 2 {
			t.Fatalf("%d chunks, want one per context", len(r.Msgs))
		}
		var out [][][2]uint32
		for i, m := range r.Msgs {
			id, ext := nbdtest.Extents(m)
			if id != uint32(i+1) {
				t.Fatalf("chunk %d has context %d", i, id)
			}
			if (m.Flags&replyFlagDone != 0) != (i == 1) {
				t.Fatalf("DONE on chunk %d", i)
			}
			var sum uint64
			for j, e := range ext {
				if j < len(ext)-1 && sum+uint64(e[0]) >= uint64(n) {
					t.Fatalf("extents run past the request before the last")
				}
				sum += uint64(e[0])
			}
			if sum > uint64(n) {
				t.Fatalf("extents cover %d bytes of a %d-byte request", sum, n)
			}
			if flags&cmdFlagReqOne != 0 && len(ext) != 1 {
				t.Fatalf("REQ_ONE: %d extents", len(ext))
			}
			out = append(out, ext)
		}
		return out
	}
	// 4 GiB - 1 over one hole: split below 2^32 at a 64 KiB multiple.
	got := check(0, 0, 1<<32-1)
	if want := [][2]uint32{{1<<32 - 64<<10, 3}, {64<<10 - 1, 3}}; !slices.Equal(got[1], want) {
		t.Fatalf("4 GiB-1 hole: %v, want %v", got[1], want)
	}
	if len(got[0]) != 4096 {
		t.Fatalf("dirty bitmap over 4 GiB-1: %d extents", len(got[0]))
	}
	got = check(cmdFlagReqOne, 1<<30, 1<<32-1)
	if want := [][2]uint32{{1<<32 - 64<<10, 3}}; !slices.Equal(got[1], want) {
		t.Fatalf("REQ_ONE over a hole: %v", got[1])
	}
	if want := [][2]uint32{{1 << 20, 0}}; !slices.Equal(got[0], want) {
		t.Fatalf("REQ_ONE bitmap: %v", got[0])
	}
	// Clamped to the request.
	got = check(0, 512, 1000)
	if !slices.Equal(got[1], [][2]uint32{{1000, 3}}) || !slices.Equal(got[0], [][2]uint32{{1000, 0}}) {
		t.Fatalf("short request: %v", got)
	}
	got = check(cmdFlagReqOne, 0, 100)
	if !slices.Equal(got[1], [][2]uint32{{100, 3}}) {
		t.Fatalf("REQ_ONE short: %v", got)
	}
	// An error in either context is the only chunk.
	for _, ctx := range ctxs[:2] {
		failCtx.Store(ctx)
		r := c.Do(0, cmdBlockStatus, 0, 1<<20, nil)
		if r.Errno != uint32(EINVAL) || len(r.Msgs) != 1 || r.Msgs[0].Type != chunkError {
			t.Fatalf("failing %s: %v", ctx, r)
		}
	}
	failCtx.Store("")
	c.Disconnect()

	// A context with no extents is an error, not an empty chunk.
	t.Run("no extents", func(t *testing.T) {
		c := serveOne(t, x, ExportInfo{Size: size, MetaContexts: ctxs}, ctxs[0], ctxs[2])
		r := c.Do(0, cmdBlockStatus, 0, 4096, nil)
		if r.Errno != uint32(EIO) || len(r.Msgs) != 1 || r.Msgs[0].Type != chunkError {
			t.Fatalf("%v", r)
		}
		c.Disconnect()
	})
}

// TestErrorMessagesAreStrings: whatever a backend's error says, the
// message the client gets is a proto.md string (UTF-8, no NUL, at most
// 4096 bytes); checkChunk and checkOptReply verify it.
func TestErrorMessagesAreStrings(t *testing.T) {
	bad := "x" + strings.Repeat("é", 3000) + "\x00\xff\xfe"
	m := defaultExports()
	r := &refusingExports{memExports: m}
	ts := newTestServer(t, m, func(o *Options) { o.Exports = r })
	c := ts.dial().Start()
	r.set(func() { r.describeErr = PolicyRefusal("%s", bad) })
	c.OptErr(optInfo, nbdtest.InfoOptionData("disk"), repErrPolicy)
	r.set(func() { r.describeErr = PolicyRefusal("%s", "nul\x00inside") })
	if msg := c.OptErr(optInfo, nbdtest.InfoOptionData("disk"), repErrPolicy); msg != "nulinside" {
		t.Fatalf("message %q", msg)
	}
	r.set(func() { r.describeErr = nil })
	c.StructuredReplies()
	c.Go("disk")
	for _, msg := range []string{bad, bad[1:], "\x00", strings.Repeat("\xff", 5000)} {
		ts.exp.setFault(opRead, fault{err: errors.New(msg)})
		if r := c.Do(0, cmdRead, 0, 512, nil); r.Errno != uint32(EIO) {
			t.Fatalf("%v", r)
		}
	}
	c.Disconnect()
}
