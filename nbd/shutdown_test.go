package nbd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// shutdownAsync starts Shutdown and returns its result channel once the
// server is stopping.
func (ts *testServer) shutdownAsync(ctx context.Context) chan error {
	ts.t.Helper()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	testwait.Until(ts.t, "Shutdown to start", ts.srv.isStopping)
	return done
}

func notYet(t *testing.T, done chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("%s returned (%v) too early", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestShutdownInNegotiation: options after Shutdown get ERR_SHUTDOWN,
// ABORT still gets its ACK, EXPORT_NAME a hang-up; Shutdown returns once
// the clients are gone.
func TestShutdownInNegotiation(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.dial().Start()
	c.StructuredReplies()
	c2 := ts.dial().Start()
	done := ts.shutdownAsync(context.Background())
	for _, o := range []struct {
		code uint32
		data []byte
	}{
		{optList, nil}, {optGo, nbdtest.InfoOptionData("disk")}, {optInfo, nbdtest.InfoOptionData("disk")},
		{optStructuredReply, nil}, {optSetMetaContext, nbdtest.MetaOptionData("disk", "base:allocation")},
		{optStartTLS, nil}, {99, []byte("x")},
	} {
		c.OptErr(o.code, o.data, repErrShutdown)
	}
	notYet(t, done, "Shutdown")
	if rs := c.Opt(optAbort, nil); len(rs) != 1 || rs[0].Type != repAck {
		t.Fatalf("ABORT: %s", nbdtest.FmtReplies(rs))
	}
	c.ExpectClosed()
	notYet(t, done, "Shutdown")
	c2.SendOption(optExportName, []byte("disk"))
	c2.ExpectClosed()
	if err := testwait.Recv(t, done, "Shutdown"); err != nil {
		t.Fatal(err)
	}
	if n := ts.exp.openedCount(); n != 0 {
		t.Fatalf("%d exports opened after Shutdown", n)
	}
}

// TestShutdownInTransmission: requests in flight finish, new ones get
// ESHUTDOWN (payload consumed, nothing written), Shutdown returns after
// DISC, the export is closed once.
func TestShutdownInTransmission(t *testing.T) {
	for _, sr := range []bool{false, true} {
		ts := newTestServer(t, nil, nil)
		gate, open := testwait.Gate(t)
		ts.exp.setFault(opRead, fault{gate: gate, match: func(off, n uint64) bool { return off == 0 }})
		c := ts.connect("disk", sr, false)
		c.Write(0, pattern(3, 4096))
		rd := c.Send(0, cmdRead, 0, 4096, nil)
		ts.exp.waitEntered(t, opRead, 1)
		done := ts.shutdownAsync(context.Background())
		for _, rq := range []struct {
			typ uint16
			n   uint32
		}{{cmdWrite, 4096}, {cmdFlush, 0}, {cmdRead, 512}, {cmdWriteZeroes, 4096}, {cmdTrim, 4096}, {cmdCache, 512}} {
			var p []byte
			off := uint64(4096)
			if rq.typ == cmdWrite {
				p = pattern(4, 4096)
			}
			if rq.typ == cmdFlush {
				off = 0
			}
			r := c.Do(0, rq.typ, off, rq.n, p)
			if r.Errno != uint32(ESHUTDOWN) || len(r.Data) != 0 {
				t.Fatalf("sr=%v cmd %d after Shutdown: %v", sr, rq.typ, r)
			}
		}
		if ts.exp.count(opWrite) != 1 || ts.exp.count(opFlush) != 0 {
			t.Fatal("a request after Shutdown reached the backend")
		}
		notYet(t, done, "Shutdown")
		open()
		r := c.Recv()
		if r.Cookie != rd || r.Errno != 0 || !bytes.Equal(r.Data, pattern(3, 4096)) {
			t.Fatalf("in-flight read: %v", r)
		}
		c.Disconnect()
		if err := testwait.Recv(t, done, "Shutdown"); err != nil {
			t.Fatal(err)
		}
		ts.stop()
		ts.exp.checkClosed(t)
	}
}

// TestShutdownContextCuts: when ctx ends first, Shutdown cuts the clients
// and returns ctx's error.
func TestShutdownContextCuts(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	n := ts.dial().Start() // in negotiation
	start := time.Now()
	if err := shutdownWithin(ts.srv, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > shutdownGrace {
		t.Fatalf("Shutdown took %v", d)
	}
	c.ExpectClosed()
	n.ExpectClosed()
	if ts.srv.Connections() != 0 {
		t.Fatal("connections left")
	}
}

// TestShutdownContextWaitsForBackend: a cut connection still waits for
// its backend calls before Close; Shutdown returns after them.
func TestShutdownContextWaitsForBackend(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opWrite, fault{gate: gate})
	c := ts.connect("disk", true, false)
	c.Send(0, cmdWrite, 0, 512, pattern(1, 512))
	ts.exp.waitEntered(t, opWrite, 1)
	ctx, cancel := contextWithTimeout(50 * time.Millisecond)
	defer cancel()
	done := ts.shutdownAsync(ctx)
	c.ExpectClosed()
	time.Sleep(100 * time.Millisecond)
	if ts.exp.opened[0].closes.Load() != 0 {
		t.Fatal("export closed while a write was in flight")
	}
	open()
	if err := testwait.Recv(t, done, "Shutdown"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestShutdownGrace: clients that neither send nor leave are hung up on
// after the grace period, in negotiation and in transmission.
func TestShutdownGrace(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	n := ts.dial().Start()
	start := time.Now()
	if err := shutdownWithin(ts.srv, testwait.Limit); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < shutdownGrace/2 || d > 3*shutdownGrace {
		t.Fatalf("Shutdown took %v, grace is %v", d, shutdownGrace)
	}
	c.ExpectClosed()
	n.ExpectClosed()
}

// TestServeAfterShutdown: Serve on a stopped server closes the listener
// and returns ErrServerClosed; Shutdown is idempotent.
func TestServeAfterShutdown(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	ts.stop()
	ln := newChanListener()
	if err := ts.srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-ln.closed:
	default:
		t.Fatal("listener left open")
	}
	if err := shutdownWithin(ts.srv, testwait.Limit); err != nil {
		t.Fatal(err)
	}
}

// TestServeTCP: a real listener, two clients, Shutdown closes the
// listener so that Serve returns ErrServerClosed and new dials fail.
func TestServeTCP(t *testing.T) {
	leaks := leakCheck(t)
	exp := defaultExports()
	srv, err := NewServer(Options{Exports: exp})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	go func() { serveErr <- srv.Serve(ln2) }()
	for _, l := range []net.Listener{ln, ln2} {
		nc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := nbdtest.NewClient(t, nc)
		c.Hello()
		c.Start()
		c.StructuredReplies()
		c.Go("disk")
		c.Write(0, pattern(1, 4096))
		if !bytes.Equal(c.Read(0, 4096), pattern(1, 4096)) {
			t.Fatal("read back differs")
		}
		c.Disconnect()
		nc.Close()
	}
	testwait.Until(t, "connections to end", func() bool { return srv.Connections() == 0 })
	if err := shutdownWithin(srv, testwait.Limit); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := testwait.Recv(t, serveErr, "Serve to return"); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
	}
	if nc, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		nc.Close()
		t.Fatal("the listener still accepts")
	}
	exp.checkClosed(t)
	if exp.openedCount() != 2 {
		t.Fatalf("%d exports opened", exp.openedCount())
	}
	leaks()
}

// TestNewServerChecks: NewServer refuses bad options.
func TestNewServerChecks(t *testing.T) {
	exp := defaultExports()
	for _, o := range []Options{
		{},
		{Exports: exp, MinBlock: 3},
		{Exports: exp, MinBlock: 128 << 10},
		{Exports: exp, PreferredBlock: 256},
		{Exports: exp, PreferredBlock: 3 << 10},
		{Exports: exp, MinBlock: 4096, PreferredBlock: 2048},
		{Exports: exp, MaxPayload: 4096},
		{Exports: exp, MaxInFlightBytes: 1 << 20},
	} {
		if _, err := NewServer(o); err == nil {
			t.Errorf("NewServer(%+v) accepted", o)
		}
	}
	if _, err := NewServer(Options{Exports: exp, MinBlock: 1, PreferredBlock: 512, MaxPayload: 512, MaxInFlightBytes: 2 << 20}); err != nil {
		t.Errorf("smallest valid options: %v", err)
	}
}

// TestShutdownDuringGo: Shutdown while GO is opening the export: the
// client still enters transmission (it got its ACK), its requests get
// ESHUTDOWN, and Shutdown returns once it leaves.
func TestShutdownDuringGo(t *testing.T) {
	m := defaultExports()
	r := &refusingExports{memExports: m, openEntered: make(chan struct{}, 1)}
	ts := newTestServer(t, m, func(o *Options) { o.Exports = r })
	gate, open := testwait.Gate(t) // after the server: opened before its Shutdown
	r.set(func() { r.openGate = gate })
	c := ts.dial().Start()
	c.StructuredReplies()
	c.SendOption(optGo, nbdtest.InfoOptionData("disk"))
	testwait.Recv(t, r.openEntered, "GO to open the export")
	done := ts.shutdownAsync(context.Background())
	open()
	if rs := c.OptReplies(optGo); rs[len(rs)-1].Type != repAck {
		t.Fatal(nbdtest.FmtReplies(rs))
	}
	if res := c.Do(0, cmdRead, 0, 512, nil); res.Errno != uint32(ESHUTDOWN) {
		t.Fatalf("%v", res)
	}
	c.Disconnect()
	if err := testwait.Recv(t, done, "Shutdown"); err != nil {
		t.Fatal(err)
	}
}
