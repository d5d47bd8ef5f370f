package nbd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
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
		slow := c.Send(0, cmdRead, 0, 4096, nil)
		ts.exp.waitEntered(t, opRead, 1)
		fast := c.Send(0, cmdRead, 4096, 4096, nil)
		w := c.Send(0, cmdWrite, 8192, 512, pattern(1, 512))
		got := map[uint64]bool{}
		for range 2 {
			r := c.Recv()
			if r.Cookie == slow {
				t.Fatal("the blocked request was answered first")
			}
			got[r.Cookie] = true
		}
		if !got[fast] || !got[w] {
			t.Fatalf("replies %v", got)
		}
		open()
		if r := c.Recv(); r.Cookie != slow || r.Errno != 0 || len(r.Data) != 4096 {
			t.Fatalf("slow reply %v", r)
		}
		c.Disconnect()
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
		c.Send(0, cmdRead, uint64(i)*4096, 4096, nil)
	}
	ts.exp.waitEntered(t, opRead, 128)
	if n := ts.exp.maxSeen.Load(); n < 128 {
		t.Fatalf("%d concurrent backend calls, want 128", n)
	}
	open()
	rs := c.RecvAll()
	if len(rs) != 128 {
		t.Fatalf("%d replies", len(rs))
	}
	for _, r := range rs {
		if r.Errno != 0 || len(r.Data) != 4096 {
			t.Fatalf("%v", r)
		}
	}
	c.Disconnect()
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
		c.Send(0, cmdRead, uint64(i%64)*4096, 4096, nil)
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
	if rs := c.RecvAll(); len(rs) != total {
		t.Fatalf("%d replies", len(rs))
	}
	if n := ts.exp.maxSeen.Load(); n > 4 {
		t.Fatalf("%d concurrent backend calls, want at most 4", n)
	}
	c.Disconnect()
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
			b := nbdtest.EncodeRequest(0, cmdWrite, uint64(i+1), uint64(i)*payload%(8<<20), payload)
			if _, err = c.Conn.Write(append(b, make([]byte, payload)...)); err != nil {
				break
			}
		}
		wrote <- err
	}()
	for range total { // the cookies the goroutine writes: 1, 2, ...
		c.Expect(c.NextCookie(), nbdtest.Request{Type: cmdWrite, Length: payload})
	}
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
	if rs := c.RecvAll(); len(rs) != total {
		t.Fatalf("%d replies", len(rs))
	}
	if err := testwait.Recv(t, wrote, "the client's writes to end"); err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
}

// TestDiscDrains: DISC waits for requests in flight, their replies are
// sent, then the server hangs up and closes the export.
func TestDiscDrains(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opWrite, fault{gate: gate})
	c := ts.connect("disk", true, false)
	w := c.Send(cmdFlagFUA, cmdWrite, 0, 4096, pattern(7, 4096))
	ts.exp.waitEntered(t, opWrite, 1)
	c.Send(0, cmdDisc, 0, 0, nil)
	// Nothing yet: the write is still running.
	c.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.R.Peek(1); err == nil {
		t.Fatal("the server answered while the write was blocked")
	}
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if ts.exp.opened[0].closes.Load() != 0 {
		t.Fatal("export closed with a request in flight")
	}
	open()
	if r := c.Recv(); r.Cookie != w || r.Errno != 0 {
		t.Fatalf("%v", r)
	}
	c.ExpectClosed()
	testwait.Until(t, "export close", func() bool { return ts.exp.opened[0].closes.Load() == 1 })
	if got := ts.exp.disks["disk"].bytes(0, 4096); !bytes.Equal(got, pattern(7, 4096)) {
		t.Fatal("write lost")
	}
}

// TestDataAfterDisc: whatever follows DISC is ignored.
func TestDataAfterDisc(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	b := nbdtest.EncodeRequest(0, cmdDisc, 1, 0, 0)
	b = append(b, nbdtest.EncodeRequest(0, cmdRead, 2, 0, 512)...)
	b = append(b, "garbage"...)
	c.SendRaw(b)
	c.ExpectClosed()
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
		r := c.Do(0, tc.typ, 0, n, p)
		if r.Errno != uint32(EIO) || len(r.Msgs) != 1 || r.Msgs[0].Type != chunkError {
			t.Fatalf("%s panic: %v", tc.op, r)
		}
		ts.exp.setFault(tc.op, fault{})
		if r := c.Do(0, tc.typ, 0, n, p); r.Errno != 0 {
			t.Fatalf("%s after the panic: %v", tc.op, r)
		}
		other.Read(0, 512)
	}
	c.Disconnect()
	other.Disconnect()
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
			b := nbdtest.EncodeRequest(0, cmdRead, i, (i%16)<<20, 1<<20)
			if _, err := stuck.Conn.Write(b); err != nil {
				return
			}
		}
	}()
	testwait.Until(t, "the stuck connection to fill its budget", func() bool {
		return ts.exp.count(opRead) >= 7
	})
	ok := ts.connect("disk", true, false)
	for i := range 20 {
		ok.Write(uint64(i)*4096, pattern(i, 4096))
		if got := ok.Read(uint64(i)*4096, 4096); !bytes.Equal(got, pattern(i, 4096)) {
			t.Fatal("read back differs")
		}
	}
	ok.Disconnect()
	if err := shutdownWithin(ts.srv, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a wedged client: %v, want the context's deadline", err)
	}
	ts.stop()
	stuck.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, stuck.Conn) // the server has hung up: EOF
}

// TestWriteTooBigHangsUp: a WRITE above MaxPayload is a hang-up, after
// the replies to requests before it.
func TestWriteTooBigHangsUp(t *testing.T) {
	ts := newTestServer(t, nil, func(o *Options) { o.MaxPayload = 64 << 10 })
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opRead, fault{gate: gate})
	c := ts.connect("disk", true, false)
	rd := c.Send(0, cmdRead, 0, 4096, nil)
	ts.exp.waitEntered(t, opRead, 1)
	hdr := nbdtest.EncodeRequest(0, cmdWrite, 99, 0, 64<<10+1)
	c.SendRaw(hdr)
	time.Sleep(20 * time.Millisecond)
	open()
	if r := c.Recv(); r.Cookie != rd || r.Errno != 0 {
		t.Fatalf("%v", r)
	}
	c.ExpectClosed()
}

// TestRequestHeaderFields: cookies are echoed whatever their value.
func TestRequestHeaderFields(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	c := ts.connect("disk", true, false)
	for _, cookie := range []uint64{0, 1, 1<<64 - 1, 0x8000000000000000} {
		c.SendCookie(cookie, 0, cmdRead, 0, 512, nil)
		if r := c.Recv(); r.Cookie != cookie {
			t.Fatalf("cookie %#x came back as %#x", cookie, r.Cookie)
		}
		c.SendCookie(cookie, 0, 77, 0, 512, nil)
		if r := c.Recv(); r.Cookie != cookie || r.Errno != uint32(EINVAL) {
			t.Fatalf("cookie %#x: %v", cookie, r)
		}
	}
	// Two requests with the same cookie both get answers.
	c.SendRaw(append(nbdtest.EncodeRequest(0, cmdFlush, 5, 0, 0), nbdtest.EncodeRequest(0, cmdFlush, 5, 0, 0)...))
	for range 2 {
		m, err := nbdtest.ReadMsg(c.R, func(uint64) (int, bool) { return 0, true })
		if err != nil || m.Cookie != 5 || !m.Simple || m.Errno != 0 {
			t.Fatalf("%+v %v", m, err)
		}
	}
	c.Disconnect()
}
