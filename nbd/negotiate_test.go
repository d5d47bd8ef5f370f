package nbd

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"
)

// (Most negotiation cases are scripted: testdata/scripts/negotiate.)

// TestHelloBytes: the greeting is exactly NBDMAGIC, IHAVEOPT, 0x0003.
func TestHelloBytes(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	nc := ts.rawConn()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 18)
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	want := []byte("NBDMAGICIHAVEOPT\x00\x03")
	if !bytes.Equal(got, want) {
		t.Fatalf("hello %q, want %q", got, want)
	}
}

// TestNoZeroesExact: EXPORT_NAME sends exactly 10 bytes with NO_ZEROES
// and 134 without, and nothing else before the first reply.
func TestNoZeroesExact(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		want  int
	}{{flagFixedNewstyle | flagNoZeroes, 10}, {flagFixedNewstyle, 134}, {0, 134}, {flagNoZeroes, 10}} {
		ts := newTestServer(t, nil, nil)
		c := ts.dial()
		c.sendFlags(tc.flags)
		c.sendOption(optExportName, []byte("disk"))
		c.send(0, cmdFlush, 0, 0, nil)
		b := make([]byte, tc.want+16)
		if _, err := io.ReadFull(c.br, b); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(b) != 16<<20 || !bytes.Equal(b[10:tc.want], make([]byte, tc.want-10)) {
			t.Fatalf("flags %d: export reply %x", tc.flags, b[:tc.want])
		}
		if m := binary.BigEndian.Uint32(b[tc.want:]); m != magicSimple {
			t.Fatalf("flags %d: %d bytes of export reply, then %x", tc.flags, tc.want, b[tc.want:])
		}
		c.pending = map[uint64]sent{}
		c.disconnect()
		ts.stop()
	}
}

// TestInfoThenGoIdentical: INFO followed by the same GO gives the same
// information, for every export and request list.
func TestInfoThenGoIdentical(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	for _, name := range []string{"disk", "ro", "small", ""} {
		for _, infos := range [][]uint16{nil, {infoName}, {infoDescription, infoBlockSize}, {3, 2, 1, 0, 77}} {
			for _, sr := range []bool{false, true} {
				c := ts.dial().start()
				if sr {
					c.structured()
				}
				data := infoOptionData(name, infos...)
				info := c.opt(optInfo, data)
				gor := c.opt(optGo, data)
				if len(info) != len(gor) {
					t.Fatalf("%q %v: INFO %s, GO %s", name, infos, fmtReplies(info), fmtReplies(gor))
				}
				for i := range info {
					if info[i].typ != gor[i].typ || !bytes.Equal(info[i].data, gor[i].data) {
						t.Fatalf("%q %v: INFO %s, GO %s", name, infos, fmtReplies(info), fmtReplies(gor))
					}
				}
				e := parseInfo(gor)
				if e.size != ts.exp.disks[name].size {
					t.Fatalf("%q: size %d", name, e.size)
				}
				if !e.hasBlockSize || e.minB != 512 || e.prefB != 64<<10 || e.maxB != 32<<20 {
					t.Fatalf("%q: block size %+v", name, e)
				}
				if e.tflags&tflagHasFlags == 0 || (e.tflags&tflagSendDF != 0) != sr {
					t.Fatalf("%q: flags %#x", name, e.tflags)
				}
				if e.tflags&tflagSendFastZero != 0 && e.tflags&tflagSendWriteZeroes == 0 {
					t.Fatalf("%q: FAST_ZERO without WRITE_ZEROES", name)
				}
				c.disconnect()
			}
		}
	}
}

// TestOptionDataLimits: up to 1 MiB of option data is read and refused,
// more is a hang-up (without reading it).
func TestOptionDataLimits(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.dial().start()
	big := bytes.Repeat([]byte{0xee}, maxOptionData)
	c.optErr(99, big, repErrUnsup)
	c.optErr(optList, big, repErrInvalid)
	c.optErr(optStructuredReply, big, repErrInvalid)
	c.optErr(optInfo, big, repErrInvalid)
	c.structured()
	c.optErr(optListMetaContext, big, repErrInvalid)
	c.goExport("disk")
	c.disconnect()

	for _, n := range []uint32{maxOptionData + 1, 1<<32 - 1} {
		c := ts.dial().start()
		h := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
		h = binary.BigEndian.AppendUint32(h, optList)
		h = binary.BigEndian.AppendUint32(h, n)
		c.write(h)
		c.expectClosed()
	}
}

// TestLongStrings: strings up to 4096 bytes are fine, longer ones are
// refused wherever they appear.
func TestLongStrings(t *testing.T) {
	exp := defaultExports()
	long := string(bytes.Repeat([]byte{'n'}, 4096))
	exp.add(long, 1<<20, ExportInfo{Description: long, MetaContexts: []string{"base:allocation"}})
	// Listings and descriptions the server cannot send are left out.
	exp.add("bad\x00name", 1<<20, ExportInfo{Description: "x"})
	exp.add("baddesc", 1<<20, ExportInfo{Description: "\xff"})
	ts := newTestServer(t, exp, nil)
	c := ts.dial().start()
	rs := c.opt(optList, nil)
	var names []string
	for _, r := range rs {
		if r.typ == repServer {
			n := binary.BigEndian.Uint32(r.data)
			names = append(names, string(r.data[4:4+n]))
		}
	}
	if !slices.Contains(names, long) || slices.Contains(names, "bad\x00name") || slices.Contains(names, "baddesc") {
		t.Fatalf("LIST names %d entries: %q...", len(names), names)
	}
	e := parseInfo(c.opt(optInfo, infoOptionData(long, infoName, infoDescription)))
	if e.name == nil || *e.name != long || e.desc == nil || *e.desc != long {
		t.Fatal("INFO of the longest name")
	}
	e = parseInfo(c.opt(optInfo, infoOptionData("baddesc", infoDescription)))
	if e.desc != nil {
		t.Fatalf("an invalid description was sent: %q", *e.desc)
	}
	c.optErr(optInfo, infoOptionData(long+"n"), repErrInvalid)
	c.structured()
	if got := parseMeta(c.opt(optListMetaContext, metaOptionData(long))); len(got) != 1 {
		t.Fatalf("meta contexts of the longest name: %v", got)
	}
	c.optErr(optListMetaContext, metaOptionData(long+"n"), repErrInvalid)
	c.optErr(optSetMetaContext, metaOptionData("disk", long+"q"), repErrInvalid)
	c.optErr(optSetMetaContext, metaOptionData("disk", "base:\x00"), repErrInvalid)
	c.optErr(optSetMetaContext, metaOptionData("disk", "base:\xc3"), repErrInvalid)
	if got := c.setMeta("disk", long); len(got) != 0 {
		t.Fatalf("%v", got)
	}
	c.goExport(long)
	c.disconnect()
}

// refusingExports refuses or fails in every way an Exports can.
type refusingExports struct {
	*memExports
	mu                            sync.Mutex // the test changes the fields under it
	describeErr, openErr, listErr error
	panicOn                       string
	sawTLS                        []bool
	openGate                      chan struct{} // Open waits for it when set
	openEntered                   chan struct{} // and says so here first
}

// set changes the refusals.
func (r *refusingExports) set(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

func (r *refusingExports) Describe(c *Conn, name string) (ExportInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sawTLS = append(r.sawTLS, c.TLS)
	if r.panicOn == "describe" {
		panic("describe bug")
	}
	if r.describeErr != nil {
		return ExportInfo{}, r.describeErr
	}
	return r.memExports.Describe(c, name)
}

func (r *refusingExports) Open(c *Conn, name string) (Export, ExportInfo, error) {
	r.mu.Lock()
	r.sawTLS = append(r.sawTLS, c.TLS)
	panicOn, gate, openErr := r.panicOn, r.openGate, r.openErr
	r.mu.Unlock()
	if panicOn == "open" {
		panic("open bug")
	}
	if gate != nil {
		r.openEntered <- struct{}{}
		<-gate
	}
	if openErr != nil {
		return nil, ExportInfo{}, openErr
	}
	return r.memExports.Open(c, name)
}

func (r *refusingExports) List(c *Conn) ([]Listing, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.panicOn == "list" {
		panic("list bug")
	}
	if r.listErr != nil {
		return nil, r.listErr
	}
	return r.memExports.List(c)
}

// TestExportsRefusals: OptionErrors choose the reply, other errors are
// ERR_UNKNOWN; a panic in Exports closes that connection only.
func TestExportsRefusals(t *testing.T) {
	m := defaultExports()
	r := &refusingExports{memExports: m}
	leaks := leakCheck(t)
	srv, err := NewServer(Options{Exports: r})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, ln: newChanListener(), exp: m, serveErr: make(chan error, 1)}
	go func() { ts.serveErr <- srv.Serve(ts.ln) }()
	defer func() {
		ts.stop()
		m.checkClosed(t)
		leaks()
	}()

	c := ts.dial().start()
	c.structured()
	r.set(func() { r.describeErr = PolicyRefusal("not you") })
	if msg := c.optErr(optInfo, infoOptionData("disk"), repErrPolicy); msg != "not you" {
		t.Fatalf("message %q", msg)
	}
	c.optErr(optListMetaContext, metaOptionData("disk"), repErrPolicy)
	c.optErr(optSetMetaContext, metaOptionData("disk", "base:allocation"), repErrPolicy)
	r.set(func() { r.describeErr = errors.New("secret internal detail") })
	if msg := c.optErr(optInfo, infoOptionData("disk"), repErrUnknown); msg != "unknown export" {
		t.Fatalf("an internal error leaked to the client: %q", msg)
	}
	r.set(func() { r.describeErr = nil })
	r.set(func() { r.openErr = UnknownExport("gone") })
	c.optErr(optGo, infoOptionData("disk"), repErrUnknown)
	r.set(func() { r.openErr = nil })
	r.set(func() { r.listErr = PolicyRefusal("no listing") })
	c.optErr(optList, nil, repErrPolicy)
	r.set(func() { r.listErr = errors.New("db down") })
	c.optErr(optList, nil, repErrUnknown)
	r.set(func() { r.listErr = nil })
	c.goExport("disk")
	c.disconnect()

	r.set(func() { r.openErr = errors.New("no") })
	c = ts.dial().start()
	c.sendOption(optExportName, []byte("disk"))
	c.expectClosed()
	r.set(func() { r.openErr = nil })

	for _, p := range []struct {
		on   string
		code uint32
		data []byte
	}{{"describe", optInfo, infoOptionData("disk")}, {"open", optGo, infoOptionData("disk")}, {"list", optList, nil}} {
		r.set(func() { r.panicOn = p.on })
		c := ts.dial().start()
		c.sendOption(p.code, p.data)
		c.expectClosed()
		r.set(func() { r.panicOn = "" })
		ok := ts.dial().start()
		ok.goExport("disk")
		ok.disconnect()
	}
}

// TestConnTLSVisible: Exports see Conn.TLS once STARTTLS has succeeded.
func TestConnTLSVisible(t *testing.T) {
	m := defaultExports()
	r := &refusingExports{memExports: m}
	scfg, ccfg := testTLS(t)
	ts := newTestServer(t, m, func(o *Options) { o.Exports = r; o.TLS = scfg })
	c := ts.dial().start()
	c.startTLS(ccfg)
	c.structured()
	c.setMeta("disk", "base:allocation")
	c.goExport("disk", infoBlockSize)
	c.writeAt(0, pattern(1, 4096))
	if !bytes.Equal(c.read(0, 4096), pattern(1, 4096)) {
		t.Fatal("read over TLS differs")
	}
	c.disconnect()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.sawTLS, []bool{true, true}) {
		t.Fatalf("Exports saw TLS %v", r.sawTLS)
	}
}

// TestStartTLSPlaintextAfter: bytes sent after STARTTLS before the
// server's ACK was read are refused (they could be injected).
func TestStartTLSPlaintextAfter(t *testing.T) {
	scfg, _ := testTLS(t)
	ts := newTestServer(t, nil, func(o *Options) { o.TLS = scfg })
	c := ts.dial().start()
	c.write(append(encodeOption(optStartTLS, nil), encodeOption(optList, nil)...))
	r, err := readOptReply(c.br)
	if err != nil || r.typ != repAck {
		t.Fatalf("%v %v", r, err)
	}
	c.expectClosed()
}

// TestStartTLSBadHandshake: a failed TLS handshake ends the connection;
// others go on.
func TestStartTLSBadHandshake(t *testing.T) {
	scfg, _ := testTLS(t)
	ts := newTestServer(t, nil, func(o *Options) { o.TLS = scfg })
	c := ts.dial().start()
	rs := c.opt(optStartTLS, nil)
	if rs[0].typ != repAck {
		t.Fatal(fmtReplies(rs))
	}
	// A client that does not trust the certificate gives up.
	tc := tls.Client(c.nc, &tls.Config{ServerName: "localhost"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake with an untrusted certificate succeeded")
	}
	tc.Close()
	c2 := ts.dial().start()
	c2.write([]byte("this is not a ClientHello at all"))
	c2.nc.Write(encodeOption(optStartTLS, nil)) // may fail: the garbage is a bad option magic
	c2.expectClosed()
}

// TestHandshakeTimeout: negotiation has a deadline.
func TestHandshakeTimeout(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) { o.HandshakeTimeout = 500 * time.Millisecond })
	start := time.Now()
	idle := ts.dial()
	idle.expectClosed()
	busy := ts.dial().start()
	busyStart := time.Now()
	for time.Since(busyStart) < 100*time.Millisecond {
		busy.opt(optList, nil)
	}
	time.Sleep(time.Until(busyStart.Add(time.Second)))
	busy.nc.Write(encodeOption(optList, nil)) // may fail: the server has hung up
	busy.expectClosed()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	// After GO the deadline is gone.
	c := ts.connect("disk", false, false)
	time.Sleep(600 * time.Millisecond)
	c.read(0, 512)
	c.disconnect()
}
