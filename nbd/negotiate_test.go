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

	"github.com/vdiskd/vdiskd/nbd/nbdtest"
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
		c.SendFlags(tc.flags)
		c.SendOption(optExportName, []byte("disk"))
		c.Send(0, cmdFlush, 0, 0, nil)
		b := make([]byte, tc.want+16)
		if _, err := io.ReadFull(c.R, b); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(b) != 16<<20 || !bytes.Equal(b[10:tc.want], make([]byte, tc.want-10)) {
			t.Fatalf("flags %d: export reply %x", tc.flags, b[:tc.want])
		}
		if m := binary.BigEndian.Uint32(b[tc.want:]); m != magicSimple {
			t.Fatalf("flags %d: %d bytes of export reply, then %x", tc.flags, tc.want, b[tc.want:])
		}
		c.ClearPending()
		c.Disconnect()
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
				c := ts.dial().Start()
				if sr {
					c.StructuredReplies()
				}
				data := nbdtest.InfoOptionData(name, infos...)
				info := c.Opt(optInfo, data)
				gor := c.Opt(optGo, data)
				if len(info) != len(gor) {
					t.Fatalf("%q %v: INFO %s, GO %s", name, infos, nbdtest.FmtReplies(info), nbdtest.FmtReplies(gor))
				}
				for i := range info {
					if info[i].Type != gor[i].Type || !bytes.Equal(info[i].Data, gor[i].Data) {
						t.Fatalf("%q %v: INFO %s, GO %s", name, infos, nbdtest.FmtReplies(info), nbdtest.FmtReplies(gor))
					}
				}
				e := nbdtest.ParseInfo(gor)
				if e.Size != ts.exp.disks[name].size {
					t.Fatalf("%q: size %d", name, e.Size)
				}
				if !e.HasBlockSize || e.MinBlock != 512 || e.PrefBlock != 64<<10 || e.MaxBlock != 32<<20 {
					t.Fatalf("%q: block size %+v", name, e)
				}
				if e.TFlags&tflagHasFlags == 0 || (e.TFlags&tflagSendDF != 0) != sr {
					t.Fatalf("%q: flags %#x", name, e.TFlags)
				}
				if e.TFlags&tflagSendFastZero != 0 && e.TFlags&tflagSendWriteZeroes == 0 {
					t.Fatalf("%q: FAST_ZERO without WRITE_ZEROES", name)
				}
				c.Disconnect()
			}
		}
	}
}

// TestOptionDataLimits: up to 1 MiB of option data is read and refused,
// more is a hang-up (without reading it).
func TestOptionDataLimits(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.dial().Start()
	big := bytes.Repeat([]byte{0xee}, maxOptionData)
	c.OptErr(99, big, repErrUnsup)
	c.OptErr(optList, big, repErrInvalid)
	c.OptErr(optStructuredReply, big, repErrInvalid)
	c.OptErr(optInfo, big, repErrInvalid)
	c.StructuredReplies()
	c.OptErr(optListMetaContext, big, repErrInvalid)
	c.Go("disk")
	c.Disconnect()

	for _, n := range []uint32{maxOptionData + 1, 1<<32 - 1} {
		c := ts.dial().Start()
		h := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
		h = binary.BigEndian.AppendUint32(h, optList)
		h = binary.BigEndian.AppendUint32(h, n)
		c.SendRaw(h)
		c.ExpectClosed()
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
	c := ts.dial().Start()
	rs := c.Opt(optList, nil)
	var names []string
	for _, r := range rs {
		if r.Type == repServer {
			n := binary.BigEndian.Uint32(r.Data)
			names = append(names, string(r.Data[4:4+n]))
		}
	}
	if !slices.Contains(names, long) || slices.Contains(names, "bad\x00name") || slices.Contains(names, "baddesc") {
		t.Fatalf("LIST names %d entries: %q...", len(names), names)
	}
	e := nbdtest.ParseInfo(c.Opt(optInfo, nbdtest.InfoOptionData(long, infoName, infoDescription)))
	if e.Name == nil || *e.Name != long || e.Description == nil || *e.Description != long {
		t.Fatal("INFO of the longest name")
	}
	e = nbdtest.ParseInfo(c.Opt(optInfo, nbdtest.InfoOptionData("baddesc", infoDescription)))
	if e.Description != nil {
		t.Fatalf("an invalid description was sent: %q", *e.Description)
	}
	c.OptErr(optInfo, nbdtest.InfoOptionData(long+"n"), repErrInvalid)
	c.StructuredReplies()
	if got := nbdtest.ParseMeta(c.Opt(optListMetaContext, nbdtest.MetaOptionData(long))); len(got) != 1 {
		t.Fatalf("meta contexts of the longest name: %v", got)
	}
	c.OptErr(optListMetaContext, nbdtest.MetaOptionData(long+"n"), repErrInvalid)
	c.OptErr(optSetMetaContext, nbdtest.MetaOptionData("disk", long+"q"), repErrInvalid)
	c.OptErr(optSetMetaContext, nbdtest.MetaOptionData("disk", "base:\x00"), repErrInvalid)
	c.OptErr(optSetMetaContext, nbdtest.MetaOptionData("disk", "base:\xc3"), repErrInvalid)
	if got := c.SetMeta("disk", long); len(got) != 0 {
		t.Fatalf("%v", got)
	}
	c.Go(long)
	c.Disconnect()
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

	c := ts.dial().Start()
	c.StructuredReplies()
	r.set(func() { r.describeErr = PolicyRefusal("not you") })
	if msg := c.OptErr(optInfo, nbdtest.InfoOptionData("disk"), repErrPolicy); msg != "not you" {
		t.Fatalf("message %q", msg)
	}
	c.OptErr(optListMetaContext, nbdtest.MetaOptionData("disk"), repErrPolicy)
	c.OptErr(optSetMetaContext, nbdtest.MetaOptionData("disk", "base:allocation"), repErrPolicy)
	r.set(func() { r.describeErr = errors.New("secret internal detail") })
	if msg := c.OptErr(optInfo, nbdtest.InfoOptionData("disk"), repErrUnknown); msg != "unknown export" {
		t.Fatalf("an internal error leaked to the client: %q", msg)
	}
	r.set(func() { r.describeErr = nil })
	r.set(func() { r.openErr = UnknownExport("gone") })
	c.OptErr(optGo, nbdtest.InfoOptionData("disk"), repErrUnknown)
	r.set(func() { r.openErr = nil })
	r.set(func() { r.listErr = PolicyRefusal("no listing") })
	c.OptErr(optList, nil, repErrPolicy)
	r.set(func() { r.listErr = errors.New("db down") })
	c.OptErr(optList, nil, repErrUnknown)
	r.set(func() { r.listErr = nil })
	c.Go("disk")
	c.Disconnect()

	r.set(func() { r.openErr = errors.New("no") })
	c = ts.dial().Start()
	c.SendOption(optExportName, []byte("disk"))
	c.ExpectClosed()
	r.set(func() { r.openErr = nil })

	for _, p := range []struct {
		on   string
		code uint32
		data []byte
	}{{"describe", optInfo, nbdtest.InfoOptionData("disk")}, {"open", optGo, nbdtest.InfoOptionData("disk")}, {"list", optList, nil}} {
		r.set(func() { r.panicOn = p.on })
		c := ts.dial().Start()
		c.SendOption(p.code, p.data)
		c.ExpectClosed()
		r.set(func() { r.panicOn = "" })
		ok := ts.dial().Start()
		ok.Go("disk")
		ok.Disconnect()
	}
}

// TestConnTLSVisible: Exports see Conn.TLS once STARTTLS has succeeded.
func TestConnTLSVisible(t *testing.T) {
	m := defaultExports()
	r := &refusingExports{memExports: m}
	scfg, ccfg := nbdtest.TLSConfigs(t)
	ts := newTestServer(t, m, func(o *Options) { o.Exports = r; o.TLS = scfg })
	c := ts.dial().Start()
	c.StartTLS(ccfg)
	c.StructuredReplies()
	c.SetMeta("disk", "base:allocation")
	c.Go("disk", infoBlockSize)
	c.Write(0, pattern(1, 4096))
	if !bytes.Equal(c.Read(0, 4096), pattern(1, 4096)) {
		t.Fatal("read over TLS differs")
	}
	c.Disconnect()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.sawTLS, []bool{true, true}) {
		t.Fatalf("Exports saw TLS %v", r.sawTLS)
	}
}

// TestStartTLSPlaintextAfter: bytes sent after STARTTLS before the
// server's ACK was read are refused (they could be injected).
func TestStartTLSPlaintextAfter(t *testing.T) {
	scfg, _ := nbdtest.TLSConfigs(t)
	ts := newTestServer(t, nil, func(o *Options) { o.TLS = scfg })
	c := ts.dial().Start()
	c.SendRaw(append(nbdtest.EncodeOption(optStartTLS, nil), nbdtest.EncodeOption(optList, nil)...))
	r, err := nbdtest.ReadOptReply(c.R)
	if err != nil || r.Type != repAck {
		t.Fatalf("%v %v", r, err)
	}
	c.ExpectClosed()
}

// TestStartTLSBadHandshake: a failed TLS handshake ends the connection;
// others go on.
func TestStartTLSBadHandshake(t *testing.T) {
	scfg, _ := nbdtest.TLSConfigs(t)
	ts := newTestServer(t, nil, func(o *Options) { o.TLS = scfg })
	c := ts.dial().Start()
	rs := c.Opt(optStartTLS, nil)
	if rs[0].Type != repAck {
		t.Fatal(nbdtest.FmtReplies(rs))
	}
	// A client that does not trust the certificate gives up.
	tc := tls.Client(c.Conn, &tls.Config{ServerName: "localhost"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake with an untrusted certificate succeeded")
	}
	tc.Close()
	c2 := ts.dial().Start()
	c2.SendRaw([]byte("this is not a ClientHello at all"))
	c2.Conn.Write(nbdtest.EncodeOption(optStartTLS, nil)) // may fail: the garbage is a bad option magic
	c2.ExpectClosed()
}

// TestHandshakeTimeout: negotiation has a deadline.
func TestHandshakeTimeout(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) { o.HandshakeTimeout = 500 * time.Millisecond })
	start := time.Now()
	idle := ts.dial()
	idle.ExpectClosed()
	busy := ts.dial().Start()
	busyStart := time.Now()
	for time.Since(busyStart) < 100*time.Millisecond {
		busy.Opt(optList, nil)
	}
	time.Sleep(time.Until(busyStart.Add(time.Second)))
	busy.Conn.Write(nbdtest.EncodeOption(optList, nil)) // may fail: the server has hung up
	busy.ExpectClosed()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	// After GO the deadline is gone.
	c := ts.connect("disk", false, false)
	time.Sleep(600 * time.Millisecond)
	c.Read(0, 512)
	c.Disconnect()
}
