package nbd

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// Fuzz targets and the hostile-input tests built on the same harness: a
// fresh server per input, the client's bytes written then half-closed, so
// that the server sees EOF and must end on its own.
//
//	go test -run '^$' -fuzz '^FuzzHandshake$' -fuzztime 10s ./nbd
//	go test -run '^$' -fuzz '^FuzzRequests$' -fuzztime 10s ./nbd

const fuzzMaxPayload = 1 << 20

func fuzzExports() *memExports {
	m := newMemExports()
	ctxs := []string{"base:allocation", dirtyContext}
	d := m.add("disk", 4<<20, ExportInfo{Description: "fuzz", MetaContexts: ctxs})
	d.writeLocked(pattern(1, 8192), 4096)
	d.writeLocked(pattern(2, 5000), 1<<20)
	d.zalloc[100] = true
	m.add("ro", 1<<20, ExportInfo{ReadOnly: true, MetaContexts: ctxs[:1]})
	m.add("", 1<<20+512, ExportInfo{})
	return m
}

type fuzzEnv struct {
	t        testing.TB
	srv      *Server
	ln       *chanListener
	m        *memExports
	serveErr chan error
}

func startFuzzServer(t testing.TB, cfg *tls.Config) *fuzzEnv {
	t.Helper()
	m := fuzzExports()
	srv, err := NewServer(Options{Exports: m, TLS: cfg, MaxPayload: fuzzMaxPayload,
		MaxInFlightBytes: 2 * fuzzMaxPayload, MaxInFlight: 16, HandshakeTimeout: 10 * time.Second,
		Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e := &fuzzEnv{t: t, srv: srv, ln: newChanListener(), m: m, serveErr: make(chan error, 1)}
	go func() { e.serveErr <- srv.Serve(e.ln) }()
	t.Cleanup(func() { // after a failure: do not leave the server to the next input
		shutdownWithin(srv, time.Second)
	})
	return e
}

// conn connects a client socket.
func (e *fuzzEnv) conn() *net.UnixConn {
	e.t.Helper()
	a, b, err := socketPair()
	if err != nil {
		e.t.Fatal(err)
	}
	testwait.Send(e.t, e.ln.conns, net.Conn(b), "the server to accept")
	a.SetDeadline(time.Now().Add(20 * time.Second))
	return a
}

// finish shuts the server down and checks that it ended cleanly.
func (e *fuzzEnv) finish() {
	t := e.t
	t.Helper()
	if err := shutdownWithin(e.srv, 20*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := testwait.Recv(t, e.serveErr, "Serve to return"); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	e.m.checkClosed(t)
	checkNoServerGoroutines(t)
}

// checkNoServerGoroutines fails if goroutines of the server code are still
// running (the count of all goroutines is not stable under the fuzzer).
func checkNoServerGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "vdiskd/nbd.(*conn)") || strings.Contains(g, "vdiskd/nbd.(*Server)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server goroutines left running:\n%s", strings.Join(left, "\n\n"))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// exchange writes input, half-closes, and returns everything the server
// sends until it hangs up.
func exchange(t testing.TB, nc *net.UnixConn, r io.Reader, input []byte) []byte {
	t.Helper()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		nc.Write(input) // the server may hang up before reading it all
		nc.CloseWrite()
	}()
	out, err := io.ReadAll(r)
	<-wrote
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not hang up after the input ended (%d bytes in, %d out)", len(input), len(out))
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	return out
}

var helloBytes = []byte("NBDMAGICIHAVEOPT\x00\x03")

// checkNegotiationOutput checks what the server sent for arbitrary
// negotiation input: the greeting, then well-formed option replies, each
// option's ending in ACK or an error before the next one starts. Whatever
// follows the last option reply (EXPORT_NAME's answer, transmission) is
// not checked here.
func checkNegotiationOutput(t testing.TB, out []byte) {
	t.Helper()
	if !bytes.HasPrefix(out, helloBytes) {
		t.Fatalf("greeting %x", out[:min(len(out), 18)])
	}
	rd := bytes.NewReader(out[18:])
	open := false
	var cur uint32
	for rd.Len() >= 8 {
		rest := out[len(out)-rd.Len():]
		if binary.BigEndian.Uint64(rest) != magicOptReply {
			return
		}
		r, err := nbdtest.ReadOptReply(rd)
		if err != nil {
			t.Fatalf("truncated option reply: %v", err)
		}
		if open && r.Opt != cur {
			t.Fatalf("replies to option %d began before option %d was answered", r.Opt, cur)
		}
		if err := nbdtest.CheckOptReply(r.Opt, r); err != nil {
			t.Fatalf("option %d: %v", r.Opt, err)
		}
		cur, open = r.Opt, r.Type != repAck && !r.IsErr()
	}
}

// watchdog panics, with every goroutine's stack, if an input takes
// longer than any deadline should allow: the fuzzer then keeps the input
// as a crasher instead of hanging.
func watchdog() (stop func()) {
	tm := time.AfterFunc(60*time.Second, func() {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("input still running after 60 s:\n%s", buf))
	})
	return func() { tm.Stop() }
}

// runHandshake runs one negotiation input against a fresh server.
func runHandshake(t testing.TB, input []byte, cfg *tls.Config) {
	defer watchdog()()
	e := startFuzzServer(t, cfg)
	nc := e.conn()
	out := exchange(t, nc, nc, input)
	nc.Close()
	checkNegotiationOutput(t, out)
	e.finish()
}

// Session builders for seeds and tests.

func optBytes(code uint32, data []byte) []byte { return nbdtest.EncodeOption(code, data) }

func flagsBytes(f uint32) []byte { return binary.BigEndian.AppendUint32(nil, f) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func reqBytes(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) []byte {
	return append(nbdtest.EncodeRequest(flags, typ, cookie, off, length), payload...)
}

// validSession is a complete, valid client byte stream.
func validSession() []byte {
	return cat(
		flagsBytes(3),
		optBytes(optList, nil),
		optBytes(optStructuredReply, nil),
		optBytes(optListMetaContext, nbdtest.MetaOptionData("disk", "qemu:dirty-bitmap:")),
		optBytes(optSetMetaContext, nbdtest.MetaOptionData("disk", "base:allocation", dirtyContext)),
		optBytes(optInfo, nbdtest.InfoOptionData("disk", infoName, infoDescription, infoBlockSize)),
		optBytes(optGo, nbdtest.InfoOptionData("disk", infoBlockSize)),
		reqBytes(0, cmdRead, 1, 0, 16384, nil),
		reqBytes(cmdFlagFUA, cmdWrite, 2, 8192, 512, pattern(1, 512)),
		reqBytes(0, cmdBlockStatus, 3, 0, 1<<20, nil),
		reqBytes(cmdFlagNoHole, cmdWriteZeroes, 4, 0, 4096, nil),
		reqBytes(0, cmdFlush, 5, 0, 0, nil),
		reqBytes(0, cmdDisc, 6, 0, 0, nil),
	)
}

func handshakeSeeds() [][]byte {
	return [][]byte{
		validSession(),
		cat(flagsBytes(3), optBytes(optList, nil), optBytes(optAbort, nil)),
		cat(flagsBytes(1), optBytes(optExportName, []byte("disk")), reqBytes(0, cmdRead, 1, 0, 512, nil), reqBytes(0, cmdDisc, 2, 0, 0, nil)),
		cat(flagsBytes(3), optBytes(optExportName, nil), reqBytes(0, cmdRead, 1, 0, 512, nil)),
		cat(flagsBytes(3), optBytes(optStartTLS, nil), optBytes(optList, nil)),
		cat(flagsBytes(3), optBytes(optExtendedHeaders, nil), optBytes(42, []byte("junk")), optBytes(optGo, nbdtest.InfoOptionData("", 0, 1, 2, 3))),
		cat(flagsBytes(3), optBytes(optInfo, []byte{0, 0, 0, 9, 1}), optBytes(optInfo, nbdtest.InfoOptionData("ro")), optBytes(optGo, nbdtest.InfoOptionData("nope"))),
		cat(flagsBytes(3), optBytes(optStructuredReply, nil), optBytes(optStructuredReply, nil),
			optBytes(optSetMetaContext, nbdtest.MetaOptionData("disk", "qemu:dirty-bitmap:", "base:")),
			optBytes(optListMetaContext, nbdtest.MetaOptionData("disk")), optBytes(optGo, nbdtest.InfoOptionData("disk")),
			reqBytes(cmdFlagReqOne, cmdBlockStatus, 1, 0, 4096, nil)),
		cat(flagsBytes(7)),
		cat(flagsBytes(3), []byte("IHAVEOPX"), make([]byte, 8)),
		cat(flagsBytes(3), binary.BigEndian.AppendUint64(nil, magicIHaveOpt), []byte{0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff}),
	}
}

func FuzzHandshake(f *testing.F) {
	for _, s := range handshakeSeeds() {
		f.Add(s)
	}
	scfg, _ := nbdtest.TLSConfigs(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		runHandshake(t, data, nil)
		runHandshake(t, data, scfg)
	})
}

// ---- FuzzRequests ----

// reqModel is a request as the server will parse it.
type reqModel struct {
	nbdtest.Request
	cookie uint64
}

// modelRequests parses a transmission stream the way the server does,
// numbering the cookies 1, 2, ... in the bytes (so replies can be
// matched), and returns the requests the server will answer.
func modelRequests(b []byte, maxPayload uint32) []reqModel {
	var out []reqModel
	for pos := 0; pos+requestHeaderLen <= len(b); {
		h := b[pos:]
		if binary.BigEndian.Uint32(h) != magicRequest {
			break
		}
		typ := binary.BigEndian.Uint16(h[6:])
		length := binary.BigEndian.Uint32(h[24:])
		if typ == cmdDisc {
			break
		}
		if typ == cmdWrite && length > maxPayload {
			break
		}
		next := pos + requestHeaderLen
		if typ == cmdWrite {
			next += int(length)
			if next > len(b) {
				break // truncated payload: no reply
			}
		}
		cookie := uint64(len(out) + 1)
		binary.BigEndian.PutUint64(h[8:], cookie)
		out = append(out, reqModel{Request: nbdtest.Request{Type: typ, Flags: binary.BigEndian.Uint16(h[4:]),
			Offset: binary.BigEndian.Uint64(h[16:]), Length: length}, cookie: cookie})
		pos = next
	}
	return out
}

// fuzzMode is the handshake FuzzRequests does before its bytes, chosen by
// the first input byte.
type fuzzMode struct {
	sr, blockSize, meta, ro bool
}

func fuzzModeOf(b byte) fuzzMode {
	return fuzzMode{sr: b&1 != 0, blockSize: b&2 != 0, meta: b&4 != 0, ro: b&8 != 0}
}

func runRequests(t testing.TB, data []byte) {
	if len(data) == 0 {
		return
	}
	defer watchdog()()
	mode := fuzzModeOf(data[0])
	stream := bytes.Clone(data[1:])
	reqs := modelRequests(stream, fuzzMaxPayload)

	e := startFuzzServer(t, nil)
	nc := e.conn()
	c := nbdtest.NewClient(t, nc)
	c.Hello()
	c.Start()
	name := "disk"
	if mode.ro {
		name = "ro"
	}
	var contexts []string
	if mode.sr {
		c.StructuredReplies()
		if mode.meta {
			info, _ := e.m.Describe(nil, name)
			contexts = info.MetaContexts
			c.SetMeta(name, contexts...)
		}
	}
	var infos []uint16
	if mode.blockSize {
		infos = append(infos, infoBlockSize)
	}
	c.Go(name, infos...)

	for _, r := range reqs {
		c.Expect(r.cookie, r.Request)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		nc.Write(stream)
		nc.CloseWrite()
	}()
	got := 0
	for c.Pending() > 0 {
		r, err := c.ReadReply()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no reply within the deadline; %d of %d requests answered", got, len(reqs))
			}
			t.Fatalf("after %d of %d replies: %v", got, len(reqs), err)
		}
		got++
		checkResult(t, r, mode, len(contexts))
	}
	// Then the server hangs up, sending nothing more.
	rest, err := io.ReadAll(c.R)
	<-wrote
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the last reply: %x", len(rest), rest[:min(len(rest), 40)])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not hang up after the input ended")
	}
	nc.Close()
	e.finish()
}

// checkResult checks one complete reply beyond its shape (recvOne checks
// magic, lengths and READ coverage).
func checkResult(t testing.TB, r *nbdtest.Reply, mode fuzzMode, nctx int) {
	t.Helper()
	if r.Errno == uint32(ESHUTDOWN) {
		t.Fatalf("ESHUTDOWN without a shutdown: %v", r)
	}
	if !mode.sr {
		return
	}
	var status []nbdtest.Msg
	for i, m := range r.Msgs {
		if m.Done() != (i == len(r.Msgs)-1) {
			t.Fatalf("DONE on chunk %d of %d: %v", i, len(r.Msgs), r)
		}
		if !m.Simple && m.Type == chunkBlockStatus {
			status = append(status, m)
		}
		if !m.Simple && m.Type == chunkNone && (r.Req.Type != cmdRead || r.Req.Length != 0) {
			t.Fatalf("NONE chunk: %v", r)
		}
	}
	if r.Errno != 0 {
		if len(r.Msgs) != 1 {
			t.Fatalf("an error with other chunks: %v", r)
		}
		return
	}
	if r.Req.Type == cmdRead && r.Req.Flags&cmdFlagDF != 0 && len(r.Msgs) != 1 {
		t.Fatalf("DF read in %d chunks", len(r.Msgs))
	}
	if r.Req.Type != cmdBlockStatus {
		return
	}
	if len(status) != nctx || len(r.Msgs) != nctx {
		t.Fatalf("%d status chunks for %d contexts: %v", len(status), nctx, r)
	}
	for i, m := range status {
		id, ext := nbdtest.Extents(m)
		if id != uint32(i+1) {
			t.Fatalf("chunk %d for context %d", i, id)
		}
		var sum uint64
		for _, e := range ext {
			sum += uint64(e[0])
		}
		if sum > uint64(r.Req.Length) {
			t.Fatalf("extents cover %d of %d bytes", sum, r.Req.Length)
		}
		if r.Req.Flags&cmdFlagReqOne != 0 && len(ext) != 1 {
			t.Fatalf("REQ_ONE: %d extents", len(ext))
		}
	}
}

func requestSeeds() [][]byte {
	all := func(mode byte, reqs ...[]byte) []byte { return cat(append([][]byte{{mode}}, reqs...)...) }
	return [][]byte{
		all(7,
			reqBytes(0, cmdRead, 0, 0, 16384, nil),
			reqBytes(cmdFlagDF, cmdRead, 0, 4096, 8192, nil),
			reqBytes(cmdFlagFUA, cmdWrite, 0, 512, 1024, pattern(1, 1024)),
			reqBytes(0, cmdBlockStatus, 0, 0, 1<<20, nil),
			reqBytes(cmdFlagReqOne, cmdBlockStatus, 0, 4096, 1<<20, nil),
			reqBytes(cmdFlagNoHole|cmdFlagFastZero, cmdWriteZeroes, 0, 0, 8192, nil),
			reqBytes(cmdFlagFUA, cmdTrim, 0, 4096, 4096, nil),
			reqBytes(0, cmdCache, 0, 0, 4096, nil),
			reqBytes(0, cmdFlush, 0, 0, 0, nil),
			reqBytes(0, cmdRead, 0, 0, 0, nil),
			reqBytes(0, cmdDisc, 0, 0, 0, nil)),
		all(0,
			reqBytes(0, cmdRead, 0, 1, 100, nil),
			reqBytes(0, cmdWrite, 0, 3, 5, []byte("hello")),
			reqBytes(0, cmdRead, 0, 4<<20, 1, nil),
			reqBytes(0, cmdBlockStatus, 0, 0, 512, nil)),
		all(15,
			reqBytes(0, cmdWrite, 0, 0, 512, make([]byte, 512)),
			reqBytes(0, cmdRead, 0, 0, 512, nil)),
		all(3, reqBytes(0, cmdWrite, 0, 0, fuzzMaxPayload+1, nil)),
		all(1, reqBytes(0, cmdWrite, 0, 0, 4096, make([]byte, 100))),
		all(1, reqBytes(0, cmdRead, 0, 0, 512, nil), []byte{0x25, 0x60, 0x95}),
		all(5, reqBytes(0xffff, 0xffff, 0, 1<<63, 1<<32-1, nil)),
		all(1, []byte("garbage garbage garbage garbage")),
	}
}

func FuzzRequests(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runRequests(t, data) })
}

// ---- hostile bytes, as ordinary tests ----

// TestHostileSeeds runs the fuzz seeds and some fixed hostile inputs.
func TestHostileSeeds(t *testing.T) {
	scfg, _ := nbdtest.TLSConfigs(t)
	for i, s := range handshakeSeeds() {
		t.Run(fmt.Sprintf("handshake%d", i), func(t *testing.T) {
			runHandshake(t, s, nil)
			runHandshake(t, s, scfg)
		})
	}
	for i, s := range requestSeeds() {
		t.Run(fmt.Sprintf("requests%d", i), func(t *testing.T) { runRequests(t, s) })
	}
}

// TestTruncatedEverywhere cuts a valid session at every byte offset: the
// server answers what it got and hangs up when the input ends, and the
// replies are well formed up to there.
func TestTruncatedEverywhere(t *testing.T) {
	full := validSession()
	step := 1
	if testing.Short() {
		step = 7
	}
	for n := 0; n <= len(full); n += step {
		runHandshake(t, full[:n], nil)
	}
	// The transmission part, cut everywhere after a fixed handshake.
	reqs := requestSeeds()[0]
	for n := 1; n <= len(reqs); n += step {
		runRequests(t, reqs[:n])
	}
}

// TestHostileNeighbours: while garbage, truncated sessions, huge lengths
// and bad magics come and go on other connections, a well-behaved client
// on the same server is not disturbed.
func TestHostileNeighbours(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	good := ts.connect("disk", true, false, "base:allocation")
	full := validSession()
	inputs := [][]byte{
		nil,
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		bytes.Repeat([]byte{0xff}, 10000),
		bytes.Repeat([]byte{0}, 10000),
		cat(flagsBytes(3), binary.BigEndian.AppendUint64(nil, magicIHaveOpt), []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}),
		cat(flagsBytes(3), binary.BigEndian.AppendUint64(nil, magicIHaveOpt), []byte{0, 0, 0, 6, 0, 0x10, 0, 1}),
		cat(flagsBytes(3), optBytes(optGo, nbdtest.InfoOptionData("disk")), reqBytes(0, cmdWrite, 1, 0, 1<<31, nil)),
		cat(flagsBytes(3), optBytes(optGo, nbdtest.InfoOptionData("disk")), reqBytes(0, cmdRead, 1, 0, 1<<31, nil), bytes.Repeat([]byte{1}, 100)),
		cat(flagsBytes(3), optBytes(optGo, nbdtest.InfoOptionData("disk")), bytes.Repeat([]byte{0x25, 0x60, 0x95, 0x13}, 100)),
		cat(flagsBytes(3), optBytes(optGo, nbdtest.InfoOptionData("disk")), binary.BigEndian.AppendUint32(nil, magicSimple), make([]byte, 24)),
	}
	for n := 0; n < len(full); n += 5 {
		inputs = append(inputs, full[:n])
	}
	for i, in := range inputs {
		nc := ts.rawConn()
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		out := exchange(t, nc, nc, in)
		if !bytes.HasPrefix(out, helloBytes) {
			t.Fatalf("input %d: no greeting", i)
		}
		nc.Close()
		off := uint64(i%16) * 4096
		good.Write(off, pattern(i, 4096))
		if got := good.Read(off, 4096); !bytes.Equal(got, pattern(i, 4096)) {
			t.Fatalf("after input %d: read back differs", i)
		}
		if r := good.Do(0, cmdBlockStatus, 0, 65536, nil); r.Errno != 0 {
			t.Fatalf("after input %d: %v", i, r)
		}
	}
	good.Disconnect()
	testwait.Until(t, "hostile connections to end", func() bool { return ts.srv.Connections() == 0 })
}
