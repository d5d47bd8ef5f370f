package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// connOf returns the server's only connection (tests peek at its budget).
func (ts *testServer) connOf() *conn {
	ts.t.Helper()
	var c *conn
	testwait.Until(ts.t, "one connection", func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		for x := range ts.srv.conns {
			c = x
		}
		return len(ts.srv.conns) == 1
	})
	return c
}

func (c *conn) budgetNow() (int, int64) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	return c.budget.n, c.budget.b
}

// TestRepliesOutOfOrder: a request blocked in the backend does not hold
// back the replies to later ones.
func TestRepliesOutOfOrder(t *testing.T) {
	for _, sr := range []bool{false, true} {
		ts := newTestServer(t, nil, nil)
		gate, open := testwait.Gate(t)
		ts.exp.setFault(opRead, fault{gate: gate, match: func(off, n uint64) bool { return off == 0 }})
		c := ts.connect("disk", sr, false)
		slow := c.send(0, cmdRead, 0, 4096, nil)
		ts.exp.waitEntered(t, opRead, 1)
		fast := c.send(0, cmdRead, 4096, 4096, nil)
		w := c.send(0, cmdWrite, 8192, 512, pattern(1, 512))
		got := map[uint64]bool{}
		for range 2 {
			r := c.recv()
			if r.cookie == slow {
				t.Fatal("the blocked request was answered first")
			}
			got[r.cookie] = true
		}
		if !got[fast] || !got[w] {
			t.Fatalf("replies %v", got)
		}
		open()
		if r := c.recv(); r.cookie != slow || r.errno != 0 || len(r.data) != 4096 {
			t.Fatalf("slow reply %v", r)
		}
		c.disconnect()
		ts.stop()
	}
}

// TestManyInFlight: 128 requests run at once on one connection.
func TestManyInFlight(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opRead, fault{gate: gate})
	c := ts.connect("disk", true, false)
	for i := range 128 {
		c.send(0, cmdRead, uint64(i)*4096, 4096, nil)
	}
	ts.exp.waitEntered(t, opRead, 128)
	if n := ts.exp.maxSeen.Load(); n < 128 {
		t.Fatalf("%d concurrent backend calls, want 128", n)
	}
	open()
	rs := c.recvAll()
	if len(rs) != 128 {
		t.Fatalf("%d replies", len(rs))
	}
	for _, r := range rs {
		if r.errno != 0 || len(r.data) != 4096 {
			t.Fatalf("%v", r)
		}
	}
	c.disconnect()
}

// TestBackPressureCount: with the backend blocked the server takes no more
// than MaxInFlight requests off the socket into goroutines and buffers.
func TestBackPressureCount(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) { o.MaxInFlight = 4 })
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opRead, fault{gate: gate})
	c := ts.connect("disk", true, false)
	sc := ts.connOf()
	const total = 200
	for i := range total {
		c.send(0, cmdRead, uint64(i%64)*4096, 4096, nil)
	}
	ts.exp.waitEntered(t, opRead, 4)
	time.Sleep(50 * time.Millisecond) // give a runaway reader time to show
	if n := ts.exp.count(opRead); n != 4 {
		t.Fatalf("%d reads started, want 4 (MaxInFlight)", n)
	}
	if n, _ := sc.budgetNow(); n != 4 {
		t.Fatalf("budget holds %d requests, want 4", n)
	}
	open()
	if rs := c.recvAll(); len(rs) != total {
		t.Fatalf("%d replies", len(rs))
	}
	if n := ts.exp.maxSeen.Load(); n > 4 {
		t.Fatalf("%d concurrent backend calls, want at most 4", n)
	}
	c.disconnect()
}

// TestBackPressureBytes: write payloads in flight stay within
// MaxInFlightBytes; the rest stays in the client's socket.
func TestBackPressureBytes(t *testing.T) {
	const payload = 512 << 10
	ts := newTestServer(t, nil, func(o *Options) {
		o.MaxPayload = 1 << 20
		o.MaxInFlightBytes = 2 << 20 // the least NewServer allows
	})
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opWrite, fault{gate: gate})
	c := ts.connect("disk", false, false)
	sc := ts.connOf()
	const total = 20
	wrote := make(chan error, 1)
	go func() { // the client blocks once the socket is full
		var err error
		for i := range total {
			b := encodeRequest(0, cmdWrite, uint64(i+1), uint64(i)*payload%(8<<20), payload)
			if _, err = c.nc.Write(append(b, make([]byte, payload)...)); err != nil {
				break
			}
		}
		wrote <- err
	}()
	for i := range total {
		c.pending[uint64(i+1)] = sent{typ: cmdWrite, length: payload}
	}
	c.next = total + 1
	ts.exp.waitEntered(t, opWrite, 3)
	time.Sleep(50 * time.Millisecond)
	// 3 × (512 KiB + 256) fit in 2 MiB, 4 do not.
	if n := ts.exp.count(opWrite); n != 3 {
		t.Fatalf("%d writes started, want 3", n)
	}
	n, b := sc.budgetNow()
	if n != 3 || b > 2<<20 {
		t.Fatalf("budget holds %d requests, %d bytes", n, b)
	}
	select {
	case err := <-wrote:
		t.Fatalf("the client wrote 10 MiB while the server had room for 2: %v", err)
	default:
	}
	open()
	if rs := c.recvAll(); len(rs) != total {
		t.Fatalf("%d replies", len(rs))
	}
	if err := testwait.Recv(t, wrote, "the client's writes to end"); err != nil {
		t.Fatal(err)
	}
	c.disconnect()
}

// TestDiscDrains: DISC waits for requests in flight, their replies are
// sent, then the server hangs up and closes the export.
func TestDiscDrains(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opWrite, fault{gate: gate})
	c := ts.connect("disk", true, false)
	w := c.send(cmdFlagFUA, cmdWrite, 0, 4096, pattern(7, 4096))
	ts.exp.waitEntered(t, opWrite, 1)
	c.send(0, cmdDisc, 0, 0, nil)
	// Nothing yet: the write is still running.
	c.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.br.Peek(1); err == nil {
		t.Fatal("the server answered while the write was blocked")
	}
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if ts.exp.opened[0].closes.Load() != 0 {
		t.Fatal("export closed with a request in flight")
	}
	open()
	if r := c.recv(); r.cookie != w || r.errno != 0 {
		t.Fatalf("%v", r)
	}
	c.expectClosed()
	testwait.Until(t, "export close", func() bool { return ts.exp.opened[0].closes.Load() == 1 })
	if got := ts.exp.disks["disk"].bytes(0, 4096); !bytes.Equal(got, pattern(7, 4096)) {
		t.Fatal("write lost")
	}
}

// TestDataAfterDisc: whatever follows DISC is ignored.
func TestDataAfterDisc(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	b := encodeRequest(0, cmdDisc, 1, 0, 0)
	b = append(b, encodeRequest(0, cmdRead, 2, 0, 512)...)
	b = append(b, "garbage"...)
	c.write(b)
	c.expectClosed()
	if ts.exp.count(opRead) != 0 {
		t.Fatal("a request after DISC ran")
	}
}

// TestBackendPanic: a panic in the backend is EIO for that request; the
// connection and others go on.
func TestBackendPanic(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false, "base:allocation")
	other := ts.connect("disk", false, false)
	for _, tc := range []struct {
		op  string
		typ uint16
	}{{opRead, cmdRead}, {opWrite, cmdWrite}, {opStatus, cmdBlockStatus}, {opFlush, cmdFlush}, {opZero, cmdWriteZeroes}} {
		ts.exp.setFault(tc.op, fault{panic: "backend bug"})
		var p []byte
		n := uint32(4096)
		if tc.typ == cmdWrite {
			p = pattern(1, 4096)
		}
		if tc.typ == cmdFlush {
			n = 0
		}
		r := c.do(0, tc.typ, 0, n, p)
		if r.errno != uint32(EIO) || len(r.msgs) != 1 || r.msgs[0].typ != chunkError {
			t.Fatalf("%s panic: %v", tc.op, r)
		}
		ts.exp.setFault(tc.op, fault{})
		if r := c.do(0, tc.typ, 0, n, p); r.errno != 0 {
			t.Fatalf("%s after the panic: %v", tc.op, r)
		}
		other.read(0, 512)
	}
	c.disconnect()
	other.disconnect()
}

// TestClientNeverReads: a client that sends reads and never takes the
// replies wedges only its own connection: others keep working, and
// Shutdown with a deadline cuts it.
func TestClientNeverReads(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) {
		o.MaxPayload = 1 << 20
		o.MaxInFlightBytes = 8 << 20
	})
	stuck := ts.connect("disk", true, false)
	go func() {
		// 1 MiB reads until the socket is full both ways; errors end it.
		for i := uint64(0); ; i++ {
			b := encodeRequest(0, cmdRead, i, (i%16)<<20, 1<<20)
			if _, err := stuck.nc.Write(b); err != nil {
				return
			}
		}
	}()
	testwait.Until(t, "the stuck connection to fill its budget", func() bool {
		return ts.exp.count(opRead) >= 7
	})
	ok := ts.connect("disk", true, false)
	for i := range 20 {
		ok.writeAt(uint64(i)*4096, pattern(i, 4096))
		if got := ok.read(uint64(i)*4096, 4096); !bytes.Equal(got, pattern(i, 4096)) {
			t.Fatal("read back differs")
		}
	}
	ok.disconnect()
	if err := shutdownWithin(ts.srv, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a wedged client: %v, want the context's deadline", err)
	}
	ts.stop()
	stuck.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, stuck.nc) // the server has hung up: EOF
}

// TestWriteTooBigHangsUp: a WRITE above MaxPayload is a hang-up, after
// the replies to requests before it.
func TestWriteTooBigHangsUp(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) { o.MaxPayload = 64 << 10 })
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opRead, fault{gate: gate})
	c := ts.connect("disk", true, false)
	rd := c.send(0, cmdRead, 0, 4096, nil)
	ts.exp.waitEntered(t, opRead, 1)
	hdr := encodeRequest(0, cmdWrite, 99, 0, 64<<10+1)
	c.write(hdr)
	time.Sleep(20 * time.Millisecond)
	open()
	if r := c.recv(); r.cookie != rd || r.errno != 0 {
		t.Fatalf("%v", r)
	}
	c.expectClosed()
}

// TestRequestHeaderFields: cookies are echoed whatever their value.
func TestRequestHeaderFields(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	for _, cookie := range []uint64{0, 1, 1<<64 - 1, 0x8000000000000000} {
		c.sendCookie(cookie, 0, cmdRead, 0, 512, nil)
		if r := c.recv(); r.cookie != cookie {
			t.Fatalf("cookie %#x came back as %#x", cookie, r.cookie)
		}
		c.sendCookie(cookie, 0, 77, 0, 512, nil)
		if r := c.recv(); r.cookie != cookie || r.errno != uint32(EINVAL) {
			t.Fatalf("cookie %#x: %v", cookie, r)
		}
	}
	// Two requests with the same cookie both get answers.
	c.write(append(encodeRequest(0, cmdFlush, 5, 0, 0), encodeRequest(0, cmdFlush, 5, 0, 0)...))
	for range 2 {
		m, err := readMsg(c.br, func(uint64) (int, bool) { return 0, true })
		if err != nil || m.cookie != 5 || !m.simple || m.errno != 0 {
			t.Fatalf("%+v %v", m, err)
		}
	}
	c.disconnect()
}
