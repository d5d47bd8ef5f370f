package nbd

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// A small raw-protocol NBD client and an in-process server harness.

// ---- listener and socket pairs ----

// chanListener hands Serve the server ends of socket pairs made by dial.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.UnixAddr{Name: "pair", Net: "unix"} }

// socketPair returns two connected unix stream sockets; they support
// deadlines and CloseWrite.
func socketPair() (a, b *net.UnixConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	mk := func(fd int) (*net.UnixConn, error) {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	if a, err = mk(fds[0]); err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	if b, err = mk(fds[1]); err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// ---- goroutine leak checks ----

// leakCheck returns a function that fails t if more goroutines run than
// when leakCheck was called, after giving exiting ones a moment.
func leakCheck(t testing.TB) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d running, %d before\n%s", n, before, buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// ---- server harness ----

type testServer struct {
	t        testing.TB
	srv      *Server
	ln       *chanListener
	exp      *memExports
	serveErr chan error
	stopped  bool
}

// testLogger logs to t when NBD_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NBD_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// defaultExports makes the exports most tests use: "disk" (writable,
// 16 MiB, base:allocation and the dirty bitmap), "ro" (read-only 1 MiB),
// "small" (1 MiB + 512: an unaligned size), and "" (the default, 1 MiB).
func defaultExports() *memExports {
	m := newMemExports()
	ctxs := []string{"base:allocation", dirtyContext, "qemu:dirty-bitmap:b1"}
	m.add("disk", 16<<20, ExportInfo{Description: "a test disk", MetaContexts: ctxs})
	m.add("ro", 1<<20, ExportInfo{ReadOnly: true, Description: "read-only", MetaContexts: ctxs[:1]})
	m.add("small", 1<<20+512, ExportInfo{MetaContexts: ctxs[:1]})
	m.add("", 1<<20, ExportInfo{Description: "default"})
	return m
}

// newTestServer serves exp (defaultExports when nil) and shuts the server
// down at the end of the test, checking that Serve returned
// ErrServerClosed, every opened export was closed once and no goroutine
// was left behind.
func newTestServer(t testing.TB, exp *memExports, mod func(*Options)) *testServer {
	t.Helper()
	leaks := leakCheck(t)
	if exp == nil {
		exp = defaultExports()
	}
	o := Options{Exports: exp, Logger: testLogger(t), HandshakeTimeout: 30 * time.Second}
	if mod != nil {
		mod(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, ln: newChanListener(), exp: exp, serveErr: make(chan error, 1)}
	go func() { ts.serveErr <- srv.Serve(ts.ln) }()
	t.Cleanup(func() {
		ts.stop()
		exp.checkClosed(t)
		if n := srv.budget.inUse(); n != 0 {
			t.Errorf("%d bytes of the server-wide budget still held after Shutdown", n)
		}
		leaks()
	})
	return ts
}

// stop shuts the server down (once) and checks Serve's result.
func (ts *testServer) stop() {
	ts.t.Helper()
	if ts.stopped {
		return
	}
	ts.stopped = true
	if err := shutdownWithin(ts.srv, 20*time.Second); err != nil {
		ts.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-ts.serveErr:
		if !errors.Is(err, ErrServerClosed) {
			ts.t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(testwait.Limit):
		ts.t.Error("Serve did not return after Shutdown")
	}
}

// errShutdownStuck is shutdownWithin's error when Shutdown does not return.
var errShutdownStuck = errors.New("Shutdown did not return: a backend call is still blocked (a gate left shut?)")

// shutdownWithin runs Shutdown with a context that ends after d, and
// gives up on it testwait.Limit later: Shutdown waits for backend calls in
// flight whatever its context says, and a test must not hang on one.
func shutdownWithin(srv *Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d + testwait.Limit):
		return errShutdownStuck
	}
}

// rawConn connects a new client socket to the server.
func (ts *testServer) rawConn() *net.UnixConn {
	ts.t.Helper()
	a, b, err := socketPair()
	if err != nil {
		ts.t.Fatal(err)
	}
	testwait.Send(ts.t, ts.ln.conns, net.Conn(b), "the server to accept")
	ts.t.Cleanup(func() { a.Close() })
	return a
}

// dial connects a client and reads the server's greeting.
func (ts *testServer) dial() *client {
	ts.t.Helper()
	c := newClient(ts.t, ts.rawConn())
	c.hello()
	return c
}

// ---- client ----

type client struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	sr   bool // structured replies negotiated
	size uint64
	tfl  uint16

	hsFlags uint16
	next    uint64
	pending map[uint64]sent
}

// sent is a request awaiting its reply.
type sent struct {
	typ    uint16
	flags  uint16
	off    uint64
	length uint32
}

func newClient(t testing.TB, nc net.Conn) *client {
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, nc: nc, br: bufio.NewReader(nc), pending: map[uint64]sent{}, next: 1}
}

func (c *client) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf(format, args...)
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.fatalf("write: %v", err)
	}
}

// hello reads the server greeting and checks the magic numbers.
func (c *client) hello() uint16 {
	c.t.Helper()
	var h [18]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.fatalf("hello: %v", err)
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicNBD {
		c.fatalf("hello: magic %#x", m)
	}
	if m := binary.BigEndian.Uint64(h[8:]); m != magicIHaveOpt {
		c.fatalf("hello: IHAVEOPT %#x", m)
	}
	c.hsFlags = binary.BigEndian.Uint16(h[16:])
	return c.hsFlags
}

func (c *client) sendFlags(f uint32) {
	c.t.Helper()
	c.write(binary.BigEndian.AppendUint32(nil, f))
}

// start reads the greeting and sends the usual client flags.
func (c *client) start() *client {
	c.sendFlags(flagFixedNewstyle | flagNoZeroes)
	return c
}

func encodeOption(code uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func (c *client) sendOption(code uint32, data []byte) {
	c.t.Helper()
	c.write(encodeOption(code, data))
}

// optReply is one option reply.
type optReply struct {
	opt, typ uint32
	data     []byte
}

func (r optReply) isErr() bool { return r.typ&(1<<31) != 0 }

// readOptReply reads one option reply.
func readOptReply(r io.Reader) (optReply, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return optReply{}, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return optReply{}, fmt.Errorf("option reply magic %#x", m)
	}
	o := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	n := binary.BigEndian.Uint32(h[16:])
	if n > 1<<24 {
		return optReply{}, fmt.Errorf("option reply of %d bytes", n)
	}
	o.data = make([]byte, n)
	if _, err := io.ReadFull(r, o.data); err != nil {
		return optReply{}, err
	}
	return o, nil
}

// checkOptReply checks the rules of proto.md for one reply to option opt.
func checkOptReply(opt uint32, r optReply) error {
	if r.opt != opt {
		return fmt.Errorf("reply for option %d to option %d", r.opt, opt)
	}
	switch r.typ {
	case repAck:
		if len(r.data) != 0 {
			return fmt.Errorf("ACK with %d bytes", len(r.data))
		}
	case repServer:
		if opt != optList || len(r.data) < 4 || uint64(binary.BigEndian.Uint32(r.data)) > uint64(len(r.data)-4) {
			return fmt.Errorf("bad REP_SERVER %x", r.data)
		}
	case repInfo:
		if opt != optInfo && opt != optGo || len(r.data) < 2 {
			return fmt.Errorf("bad REP_INFO %x", r.data)
		}
		switch binary.BigEndian.Uint16(r.data) {
		case infoExport:
			if len(r.data) != 12 {
				return fmt.Errorf("INFO_EXPORT of %d bytes", len(r.data))
			}
		case infoBlockSize:
			if len(r.data) != 14 {
				return fmt.Errorf("INFO_BLOCK_SIZE of %d bytes", len(r.data))
			}
		}
	case repMetaContext:
		if opt != optListMetaContext && opt != optSetMetaContext || len(r.data) < 5 {
			return fmt.Errorf("bad REP_META_CONTEXT %x", r.data)
		}
	default:
		if !r.isErr() {
			return fmt.Errorf("unknown reply type %#x", r.typ)
		}
		if err := checkString(r.data); err != nil {
			return fmt.Errorf("error message: %v", err)
		}
	}
	return nil
}

// opt sends an option and reads its replies up to the final one.
func (c *client) opt(code uint32, data []byte) []optReply {
	c.t.Helper()
	c.sendOption(code, data)
	return c.optReplies(code)
}

func (c *client) optReplies(code uint32) []optReply {
	c.t.Helper()
	var out []optReply
	for {
		r, err := readOptReply(c.br)
		if err != nil {
			c.fatalf("option %d: reading reply: %v (after %d replies)", code, err, len(out))
		}
		if err := checkOptReply(code, r); err != nil {
			c.fatalf("option %d: %v", code, err)
		}
		out = append(out, r)
		if r.typ == repAck || r.isErr() {
			return out
		}
	}
}

// optErr sends an option and expects exactly one error reply of type want.
func (c *client) optErr(code uint32, data []byte, want uint32) string {
	c.t.Helper()
	rs := c.opt(code, data)
	if len(rs) != 1 || rs[0].typ != want {
		c.fatalf("option %d: replies %s, want one %s", code, fmtReplies(rs), repName(want))
	}
	return string(rs[0].data)
}

func (c *client) structured() {
	c.t.Helper()
	rs := c.opt(optStructuredReply, nil)
	if len(rs) != 1 || rs[0].typ != repAck {
		c.fatalf("STRUCTURED_REPLY: %s", fmtReplies(rs))
	}
	c.sr = true
}

// expectClosed checks that the server hangs up without sending more.
func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.br)
	if len(b) != 0 {
		c.fatalf("expected a hang-up, got %d more bytes %x", len(b), b[:min(len(b), 64)])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.fatalf("expected a hang-up; the connection is still open")
	}
}

func metaOptionData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func infoOptionData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// metaCtx is one REP_META_CONTEXT.
type metaCtx struct {
	id   uint32
	name string
}

func parseMeta(rs []optReply) []metaCtx {
	var out []metaCtx
	for _, r := range rs {
		if r.typ == repMetaContext {
			out = append(out, metaCtx{binary.BigEndian.Uint32(r.data), string(r.data[4:])})
		}
	}
	return out
}

// setMeta selects contexts and returns the server's answer.
func (c *client) setMeta(name string, queries ...string) []metaCtx {
	c.t.Helper()
	rs := c.opt(optSetMetaContext, metaOptionData(name, queries...))
	if last := rs[len(rs)-1]; last.typ != repAck {
		c.fatalf("SET_META_CONTEXT: %s", fmtReplies(rs))
	}
	return parseMeta(rs)
}

// exportInfo is what INFO or GO told.
type exportInfo struct {
	size                uint64
	tflags              uint16
	name, desc          *string
	minB, prefB, maxB   uint32
	hasBlockSize        bool
	replies             []optReply
	unknownInformations int
}

func parseInfo(rs []optReply) exportInfo {
	var e exportInfo
	e.replies = rs
	for _, r := range rs {
		if r.typ != repInfo {
			continue
		}
		switch binary.BigEndian.Uint16(r.data) {
		case infoExport:
			e.size = binary.BigEndian.Uint64(r.data[2:])
			e.tflags = binary.BigEndian.Uint16(r.data[10:])
		case infoName:
			s := string(r.data[2:])
			e.name = &s
		case infoDescription:
			s := string(r.data[2:])
			e.desc = &s
		case infoBlockSize:
			e.hasBlockSize = true
			e.minB = binary.BigEndian.Uint32(r.data[2:])
			e.prefB = binary.BigEndian.Uint32(r.data[6:])
			e.maxB = binary.BigEndian.Uint32(r.data[10:])
		default:
			e.unknownInformations++
		}
	}
	return e
}

// goExport sends GO and expects success.
func (c *client) goExport(name string, infos ...uint16) exportInfo {
	c.t.Helper()
	rs := c.opt(optGo, infoOptionData(name, infos...))
	if last := rs[len(rs)-1]; last.typ != repAck {
		c.fatalf("GO %q: %s", name, fmtReplies(rs))
	}
	e := parseInfo(rs)
	c.size, c.tfl = e.size, e.tflags
	return e
}

// connect negotiates the usual way: flags, STRUCTURED_REPLY (if sr), the
// given contexts, GO asking for BLOCK_SIZE (if blockSize).
func (ts *testServer) connect(name string, sr, blockSize bool, contexts ...string) *client {
	ts.t.Helper()
	c := ts.dial().start()
	if sr {
		c.structured()
		if len(contexts) > 0 {
			if got := c.setMeta(name, contexts...); len(got) != len(contexts) {
				c.fatalf("SET_META_CONTEXT selected %v, want %v", got, contexts)
			}
		}
	}
	var infos []uint16
	if blockSize {
		infos = append(infos, infoBlockSize)
	}
	c.goExport(name, infos...)
	return c
}

// ---- transmission ----

func encodeRequest(flags, typ uint16, cookie, off uint64, length uint32) []byte {
	b := make([]byte, requestHeaderLen)
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], cookie)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	return b
}

// send writes a request (and its payload for WRITE) and returns its
// cookie. For WRITE, length is len(payload).
func (c *client) send(flags, typ uint16, off uint64, length uint32, payload []byte) uint64 {
	c.t.Helper()
	cookie := c.next
	c.next++
	c.sendCookie(cookie, flags, typ, off, length, payload)
	return cookie
}

func (c *client) sendCookie(cookie uint64, flags, typ uint16, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	b := encodeRequest(flags, typ, cookie, off, length)
	c.write(append(b, payload...))
	if typ != cmdDisc {
		c.pending[cookie] = sent{typ: typ, flags: flags, off: off, length: length}
	}
}

// msg is one simple reply or structured chunk.
type msg struct {
	simple  bool
	errno   uint32 // simple replies
	flags   uint16
	typ     uint16
	cookie  uint64
	payload []byte // chunk payload, or the data of a simple READ reply
}

func (m msg) done() bool { return m.simple || m.flags&replyFlagDone != 0 }

// readMsg reads one reply message. readLen tells how much data a
// successful simple reply to cookie carries (READ without SR).
func readMsg(r io.Reader, readLen func(cookie uint64) (int, bool)) (msg, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:4]); err != nil {
		return msg{}, err
	}
	switch m := binary.BigEndian.Uint32(h[:]); m {
	case magicSimple:
		if _, err := io.ReadFull(r, h[4:16]); err != nil {
			return msg{}, fmt.Errorf("truncated simple reply: %w", err)
		}
		out := msg{simple: true, errno: binary.BigEndian.Uint32(h[4:]), cookie: binary.BigEndian.Uint64(h[8:])}
		n, ok := readLen(out.cookie)
		if !ok {
			return out, fmt.Errorf("simple reply for unknown cookie %d", out.cookie)
		}
		if out.errno == 0 && n > 0 {
			out.payload = make([]byte, n)
			if _, err := io.ReadFull(r, out.payload); err != nil {
				return out, fmt.Errorf("truncated simple read data: %w", err)
			}
		}
		return out, nil
	case magicStructured:
		if _, err := io.ReadFull(r, h[4:20]); err != nil {
			return msg{}, fmt.Errorf("truncated chunk header: %w", err)
		}
		out := msg{flags: binary.BigEndian.Uint16(h[4:]), typ: binary.BigEndian.Uint16(h[6:]),
			cookie: binary.BigEndian.Uint64(h[8:])}
		n := binary.BigEndian.Uint32(h[16:])
		if n > 64<<20 {
			return out, fmt.Errorf("chunk of %d bytes", n)
		}
		out.payload = make([]byte, n)
		if _, err := io.ReadFull(r, out.payload); err != nil {
			return out, fmt.Errorf("truncated chunk: %w", err)
		}
		return out, checkChunk(out)
	default:
		return msg{}, fmt.Errorf("reply magic %#x", m)
	}
}

// checkChunk checks one chunk's shape against proto.md.
func checkChunk(m msg) error {
	p := m.payload
	switch m.typ {
	case chunkNone:
		if len(p) != 0 || m.flags&replyFlagDone == 0 {
			return fmt.Errorf("NONE chunk of %d bytes, flags %#x", len(p), m.flags)
		}
	case chunkOffsetData:
		if len(p) < 9 {
			return fmt.Errorf("OFFSET_DATA of %d bytes", len(p))
		}
	case chunkOffsetHole:
		if len(p) != 12 || binary.BigEndian.Uint32(p[8:]) == 0 {
			return fmt.Errorf("bad OFFSET_HOLE %x", p)
		}
	case chunkBlockStatus:
		if len(p) < 12 || (len(p)-4)%8 != 0 {
			return fmt.Errorf("BLOCK_STATUS of %d bytes", len(p))
		}
		for i := 4; i < len(p); i += 8 {
			if binary.BigEndian.Uint32(p[i:]) == 0 {
				return fmt.Errorf("BLOCK_STATUS extent of length 0")
			}
		}
	case chunkError, chunkErrorOffset:
		if len(p) < 6 {
			return fmt.Errorf("ERROR chunk of %d bytes", len(p))
		}
		if binary.BigEndian.Uint32(p) == 0 {
			return fmt.Errorf("ERROR chunk with error 0")
		}
		ml := int(binary.BigEndian.Uint16(p[4:]))
		want := 6 + ml
		if m.typ == chunkErrorOffset {
			want += 8
		}
		if len(p) != want {
			return fmt.Errorf("ERROR chunk of %d bytes with a %d-byte message", len(p), ml)
		}
		if err := checkString(p[6 : 6+ml]); err != nil {
			return fmt.Errorf("ERROR chunk message: %v", err)
		}
	default:
		return fmt.Errorf("unknown chunk type %#x", m.typ)
	}
	return nil
}

// result is the complete reply to one request.
type result struct {
	cookie uint64
	req    sent
	msgs   []msg
	errno  uint32
	data   []byte // assembled READ data
}

func (r *result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cookie %d errno %d:", r.cookie, r.errno)
	for _, m := range r.msgs {
		if m.simple {
			fmt.Fprintf(&b, " simple(err=%d, %d bytes)", m.errno, len(m.payload))
		} else {
			fmt.Fprintf(&b, " chunk(type=%#x flags=%d len=%d)", m.typ, m.flags, len(m.payload))
		}
	}
	return b.String()
}

// recvOne reads messages until one request's reply is complete.
func (c *client) recvOne(acc map[uint64]*result) (*result, error) {
	for {
		m, err := readMsg(c.br, func(cookie uint64) (int, bool) {
			s, ok := c.pending[cookie]
			if !ok {
				return 0, false
			}
			if s.typ == cmdRead {
				return int(s.length), true
			}
			return 0, true
		})
		if err != nil {
			return nil, err
		}
		s, ok := c.pending[m.cookie]
		if !ok {
			return nil, fmt.Errorf("reply for cookie %d, which is not pending", m.cookie)
		}
		if m.simple && c.sr && s.typ == cmdRead {
			return nil, fmt.Errorf("simple reply to READ %d with structured replies on", m.cookie)
		}
		if !m.simple && !c.sr {
			return nil, fmt.Errorf("structured chunk without structured replies")
		}
		r := acc[m.cookie]
		if r == nil {
			r = &result{cookie: m.cookie, req: s}
			acc[m.cookie] = r
		}
		r.msgs = append(r.msgs, m)
		if m.simple {
			r.errno = m.errno
		} else if m.typ == chunkError || m.typ == chunkErrorOffset {
			if r.errno != 0 {
				return nil, fmt.Errorf("cookie %d: two error chunks", m.cookie)
			}
			r.errno = binary.BigEndian.Uint32(m.payload)
		}
		if m.done() {
			delete(c.pending, m.cookie)
			delete(acc, m.cookie)
			if err := finishResult(r, c.sr); err != nil {
				return r, err
			}
			return r, nil
		}
	}
}

// finishResult checks a complete reply and assembles READ data.
func finishResult(r *result, sr bool) error {
	if !sr {
		if len(r.msgs) != 1 {
			return fmt.Errorf("%v: several simple replies", r)
		}
		if r.req.typ == cmdRead && r.errno == 0 {
			r.data = r.msgs[0].payload
		}
		return nil
	}
	for _, m := range r.msgs {
		switch m.typ {
		case chunkOffsetData, chunkOffsetHole:
			if r.req.typ != cmdRead {
				return fmt.Errorf("%v: read chunk for command %d", r, r.req.typ)
			}
		case chunkBlockStatus:
			if r.req.typ != cmdBlockStatus {
				return fmt.Errorf("%v: block status chunk for command %d", r, r.req.typ)
			}
		}
	}
	if r.req.typ == cmdRead {
		data, err := assembleRead(r.req.off, r.req.length, r.msgs)
		if err != nil {
			return fmt.Errorf("%v: %w", r, err)
		}
		if r.errno == 0 {
			r.data = data
		}
	}
	return nil
}

// assembleRead checks that the content chunks of a structured READ reply
// stay inside the request, do not overlap and, without an error, cover it
// exactly; it returns the data.
func assembleRead(off uint64, length uint32, msgs []msg) ([]byte, error) {
	type span struct {
		rel, n uint64
		data   []byte // nil for a hole
	}
	var spans []span
	failed := false
	for _, m := range msgs {
		var at, n uint64
		var data []byte
		switch m.typ {
		case chunkOffsetData:
			at, n, data = binary.BigEndian.Uint64(m.payload), uint64(len(m.payload)-8), m.payload[8:]
		case chunkOffsetHole:
			at, n = binary.BigEndian.Uint64(m.payload), uint64(binary.BigEndian.Uint32(m.payload[8:]))
		case chunkError, chunkErrorOffset:
			failed = true
			continue
		case chunkNone:
			continue
		default:
			return nil, fmt.Errorf("chunk type %#x in a READ reply", m.typ)
		}
		if at < off || at-off > uint64(length) || n > uint64(length)-(at-off) {
			return nil, fmt.Errorf("chunk [%d,+%d) outside the request [%d,+%d)", at, n, off, length)
		}
		spans = append(spans, span{at - off, n, data})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.rel, b.rel) })
	var covered uint64
	for i, s := range spans {
		if i > 0 && spans[i-1].rel+spans[i-1].n > s.rel {
			return nil, fmt.Errorf("chunks overlap at %d", off+s.rel)
		}
		covered += s.n
	}
	if failed {
		if covered != 0 {
			return nil, fmt.Errorf("an error reply also carries %d bytes of content", covered)
		}
		return nil, nil
	}
	if covered != uint64(length) {
		return nil, fmt.Errorf("chunks cover %d of %d bytes", covered, length)
	}
	data := make([]byte, length)
	for _, s := range spans {
		copy(data[s.rel:], s.data)
	}
	return data, nil
}

// recv reads one complete reply.
func (c *client) recv() *result {
	c.t.Helper()
	r, err := c.recvOne(map[uint64]*result{})
	if err != nil {
		c.fatalf("reply: %v", err)
	}
	return r
}

// recvAll reads replies until nothing is pending; it returns them in the
// order they completed.
func (c *client) recvAll() []*result {
	c.t.Helper()
	acc := map[uint64]*result{}
	var out []*result
	for len(c.pending) > 0 {
		r, err := c.recvOne(acc)
		if err != nil {
			c.fatalf("reply: %v", err)
		}
		out = append(out, r)
	}
	return out
}

// do sends one request and waits for its reply.
func (c *client) do(flags, typ uint16, off uint64, length uint32, payload []byte) *result {
	c.t.Helper()
	cookie := c.send(flags, typ, off, length, payload)
	r := c.recv()
	if r.cookie != cookie {
		c.fatalf("reply to %d, want %d", r.cookie, cookie)
	}
	return r
}

func (c *client) read(off uint64, n uint32) []byte {
	c.t.Helper()
	r := c.do(0, cmdRead, off, n, nil)
	if r.errno != 0 {
		c.fatalf("read %d+%d: errno %d", off, n, r.errno)
	}
	return r.data
}

func (c *client) writeAt(off uint64, p []byte) {
	c.t.Helper()
	if r := c.do(0, cmdWrite, off, uint32(len(p)), p); r.errno != 0 {
		c.fatalf("write %d+%d: errno %d", off, len(p), r.errno)
	}
}

// disconnect sends DISC and expects the server to hang up.
func (c *client) disconnect() {
	c.t.Helper()
	c.send(0, cmdDisc, 0, 0, nil)
	c.expectClosed()
}

// extents decodes a BLOCK_STATUS chunk: context ID and (length, flags).
func extents(m msg) (uint32, [][2]uint32) {
	id := binary.BigEndian.Uint32(m.payload)
	var out [][2]uint32
	for i := 4; i+8 <= len(m.payload); i += 8 {
		out = append(out, [2]uint32{binary.BigEndian.Uint32(m.payload[i:]), binary.BigEndian.Uint32(m.payload[i+4:])})
	}
	return id, out
}

// ---- names for messages ----

func repName(t uint32) string {
	names := map[uint32]string{
		repAck: "ACK", repServer: "SERVER", repInfo: "INFO", repMetaContext: "META_CONTEXT",
		repErrUnsup: "ERR_UNSUP", repErrPolicy: "ERR_POLICY", repErrInvalid: "ERR_INVALID",
		repErrTLSReqd: "ERR_TLS_REQD", repErrUnknown: "ERR_UNKNOWN", repErrShutdown: "ERR_SHUTDOWN",
		repErrBlockSizeReqd: "ERR_BLOCK_SIZE_REQD", repErrTooBig: "ERR_TOO_BIG",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("%#x", t)
}

func fmtReplies(rs []optReply) string {
	var parts []string
	for _, r := range rs {
		s := repName(r.typ)
		if len(r.data) > 0 {
			if r.isErr() {
				s += fmt.Sprintf("(%q)", r.data)
			} else {
				s += fmt.Sprintf("(%x)", r.data)
			}
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ---- TLS ----

var (
	tlsOnce   sync.Once
	tlsServer *tls.Config
	tlsClient *tls.Config
)

// testTLS returns server and client configurations for a certificate
// generated once per run.
func testTLS(t testing.TB) (*tls.Config, *tls.Config) {
	t.Helper()
	tlsOnce.Do(func() {
		cert, pool, err := selfSigned()
		if err != nil {
			panic(err)
		}
		tlsServer = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		tlsClient = &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	})
	return tlsServer.Clone(), tlsClient.Clone()
}

// startTLS upgrades the client after an ACK to STARTTLS.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	rs := c.opt(optStartTLS, nil)
	if len(rs) != 1 || rs[0].typ != repAck {
		c.fatalf("STARTTLS: %s", fmtReplies(rs))
	}
	if c.br.Buffered() != 0 {
		c.fatalf("bytes after the STARTTLS ACK")
	}
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		c.fatalf("TLS handshake: %v", err)
	}
	c.nc = tc
	c.br = bufio.NewReader(tc)
	c.sr = false
}

// selfSigned makes a CA-less self-signed certificate for "localhost".
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}
