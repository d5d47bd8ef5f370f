package nbd

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// The server's limits: connection and handshake caps at accept, the
// handshake and idle timeouts, the server-wide byte budget, withdrawn
// sessions, and what an idle or half-negotiated connection costs.

// countingObserver records what the limits report.
type countingObserver struct {
	nopObserver
	mu       sync.Mutex
	rejected map[Reason]int
	waits    int
	waited   time.Duration
}

func newCountingObserver() *countingObserver {
	return &countingObserver{rejected: map[Reason]int{}}
}

func (o *countingObserver) ConnectionRejected(r Reason) {
	o.mu.Lock()
	o.rejected[r]++
	o.mu.Unlock()
}

func (o *countingObserver) BudgetWaited(d time.Duration) {
	o.mu.Lock()
	o.waits++
	o.waited += d
	o.mu.Unlock()
}

func (o *countingObserver) count(r Reason) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rejected[r]
}

func (o *countingObserver) budgetWaits() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.waits
}

// only checks that nothing but want was counted, want[r] times each.
func (o *countingObserver) only(t *testing.T, want map[Reason]int) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range Reasons {
		if o.rejected[r] != want[r] {
			t.Errorf("rejected[%s] = %d, want %d (all: %v)", r, o.rejected[r], want[r], o.rejected)
		}
	}
}

// refused checks that the server closed a fresh connection without a
// greeting.
func refused(t *testing.T, nc net.Conn) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(nc)
	if len(b) != 0 || err != nil {
		t.Fatalf("want the connection closed at accept; got %d bytes (%v)", len(b), err)
	}
}

func TestMaxConns(t *testing.T) {
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) { o.Observer, o.MaxConns, o.MaxHandshakes = obs, 2, -1 })
	a := ts.connect("disk", true, false) // in transmission
	b := ts.dial()                       // in negotiation: both count
	refused(t, ts.rawConn())
	refused(t, ts.rawConn())
	obs.only(t, map[Reason]int{ReasonMaxConnections: 2})
	a.Write(0, pattern(1, 4096)) // the admitted ones are untouched
	b.Start()
	b.AbortNegotiation()
	testwait.Until(t, "a free slot", func() bool { return ts.srv.Connections() == 1 })
	c := ts.connect("disk", false, false)
	if got := c.Read(0, 4096); string(got) != string(pattern(1, 4096)) {
		t.Fatal("read back through the newly admitted connection differs")
	}
	c.Disconnect()
	a.Disconnect()
}

// Connections still negotiating have their own, smaller cap; one that
// reaches transmission frees its slot.
func TestMaxHandshakes(t *testing.T) {
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) { o.Observer, o.MaxHandshakes = obs, 2 })
	a := ts.dial().Start()
	b := ts.dial().Start()
	refused(t, ts.rawConn())
	obs.only(t, map[Reason]int{ReasonMaxHandshakes: 1})
	a.Go("disk")
	testwait.Until(t, "a's slot to free", func() bool {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return ts.srv.handshakes == 1
	})
	c := ts.dial().Start() // takes a's slot
	refused(t, ts.rawConn())
	obs.only(t, map[Reason]int{ReasonMaxHandshakes: 2})
	c.Go("disk")
	b.AbortNegotiation()
	a.Write(0, pattern(2, 4096))
	if got := c.Read(0, 4096); string(got) != string(pattern(2, 4096)) {
		t.Fatal("read back differs")
	}
	a.Disconnect()
	c.Disconnect()
}

func TestHandshakeTimeoutCounted(t *testing.T) {
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) { o.Observer, o.HandshakeTimeout = obs, 300*time.Millisecond })
	slow := ts.dial().Start()
	for range 5 { // one byte at a time, never a whole option
		time.Sleep(100 * time.Millisecond)
		slow.Conn.Write([]byte{0x49})
	}
	slow.ExpectClosed()
	ts.dial().ExpectClosed() // never sends its flags
	obs.only(t, map[Reason]int{ReasonHandshakeTimeout: 2})
	// Shutdown's hang-up in negotiation is not a handshake timeout.
	ts2obs := newCountingObserver()
	ts2 := newTestServer(t, nil, func(o *Options) { o.Observer = ts2obs })
	n := ts2.dial().Start()
	ts2.stop()
	n.ExpectClosed()
	ts2obs.only(t, map[Reason]int{})
}

func TestIdleTimeout(t *testing.T) {
	const idle = 400 * time.Millisecond
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) { o.Observer, o.IdleTimeout = obs, idle })
	// Silent: cut.
	silent := ts.connect("disk", true, false)
	start := time.Now()
	silent.ExpectClosed()
	if d := time.Since(start); d < idle {
		t.Fatalf("cut after %v, before the idle timeout %v", d, idle)
	}
	obs.only(t, map[Reason]int{ReasonIdleTimeout: 1})

	// Waiting on a slow request is not idle.
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opFlush, fault{gate: gate})
	busy := ts.connect("disk", true, false)
	cookie := busy.Send(0, cmdFlush, 0, 0, nil)
	ts.exp.waitEntered(t, opFlush, 1)
	time.Sleep(4 * idle)
	open()
	if r := busy.Recv(); r.Cookie != cookie || r.Errno != 0 {
		t.Fatalf("flush after %v in the backend: %v", 4*idle, r)
	}
	// Nor is a client that keeps talking, slower than its requests run
	// but faster than the timeout.
	for range 8 {
		time.Sleep(idle / 3)
		busy.Read(0, 512)
	}
	busy.ExpectClosed() // then silent again: cut
	obs.only(t, map[Reason]int{ReasonIdleTimeout: 2})

	// Half a request header, then silence: idle too.
	half := ts.connect("disk", false, false)
	half.SendRaw(nbdtest.EncodeRequest(0, cmdRead, 1, 0, 512)[:10])
	half.ExpectClosed()
	obs.only(t, map[Reason]int{ReasonIdleTimeout: 3})
}

// Without an idle timeout a silent client stays, however long.
func TestNoIdleTimeoutByDefault(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	if ts.srv.opts.IdleTimeout != 0 {
		t.Fatalf("IdleTimeout defaults to %v", ts.srv.opts.IdleTimeout)
	}
	c := ts.connect("disk", true, false)
	time.Sleep(500 * time.Millisecond)
	c.Read(0, 512)
	c.Disconnect()
}

// The server-wide budget: a connection whose request would take it over
// waits, whichever connection holds the rest, and goes on once replies
// drain; the wait is reported.
func TestSharedBudget(t *testing.T) {
	const mib = 1 << 20
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) {
		o.Observer, o.MaxPayload, o.MaxInFlightBytes, o.MaxTotalInFlightBytes = obs, mib, 4*mib, 2*mib
	})
	gate, open := testwait.Gate(t)
	ts.exp.setFault(opWrite, fault{gate: gate, match: func(off, n uint64) bool { return off == 0 }})
	a := ts.connect("disk", true, false)
	b := ts.connect("disk", true, false)
	wa := a.Send(0, cmdWrite, 0, mib, pattern(1, mib))
	ts.exp.waitEntered(t, opWrite, 1)
	// 1 MiB + 1 MiB and headers > 2 MiB. The server does not read the
	// payload while it waits, so it is sent from another goroutine.
	wb := b.NextCookie()
	b.Expect(wb, nbdtest.Request{Type: cmdWrite, Offset: mib, Length: mib})
	sending := make(chan error, 1)
	go func() {
		_, err := b.Conn.Write(append(nbdtest.EncodeRequest(0, cmdWrite, wb, mib, mib), pattern(2, mib)...))
		sending <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if n := ts.exp.count(opWrite); n != 1 {
		t.Fatalf("%d writes reached the backend; the second should wait for the budget", n)
	}
	if obs.budgetWaits() != 0 {
		t.Fatal("a wait was reported before it ended")
	}
	open()
	if err := testwait.Recv(t, sending, "the second write to be sent"); err != nil {
		t.Fatal(err)
	}
	if r := a.Recv(); r.Cookie != wa || r.Errno != 0 {
		t.Fatalf("a: %v", r)
	}
	if r := b.Recv(); r.Cookie != wb || r.Errno != 0 {
		t.Fatalf("b: %v", r)
	}
	if n := obs.budgetWaits(); n != 1 {
		t.Fatalf("%d budget waits reported, want 1", n)
	}
	if got := b.Read(mib, mib); string(got) != string(pattern(2, mib)) {
		t.Fatal("the write that waited did not land")
	}
	a.Disconnect()
	b.Disconnect()
}

// inUse is what the server-wide budget holds now.
func (b *sharedBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// sharedBudget serves waiters in order: a small request does not overtake
// a large one that waits, and a request larger than the budget runs
// alone.
func TestSharedBudgetOrder(t *testing.T) {
	b := &sharedBudget{max: 10}
	b.acquire(6)
	order := make(chan int64, 3)
	start := func(n int64) {
		go func() { b.acquire(n); order <- n }()
		testwait.Until(t, "a waiter", func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			for e := b.waiters.Front(); e != nil; e = e.Next() {
				if e.Value.(*budgetWaiter).n == min(n, b.max) {
					return true
				}
			}
			return false
		})
	}
	start(6)
	start(1) // 6+1 fits, but 6 waits first
	select {
	case n := <-order:
		t.Fatalf("acquire(%d) overtook the waiter before it", n)
	case <-time.After(50 * time.Millisecond):
	}
	b.release(6)
	if a, c := testwait.Recv(t, order, "a grant"), testwait.Recv(t, order, "a grant"); a+c != 7 {
		t.Fatalf("granted %d and %d, want 6 and 1", a, c)
	}
	start(100) // more than the whole budget: waits for it to empty
	b.release(6)
	select {
	case <-order:
		t.Fatal("the oversized request ran beside another")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(1)
	if n := testwait.Recv(t, order, "the oversized grant"); n != 100 {
		t.Fatalf("granted %d", n)
	}
	b.release(100)
	if b.used != 0 || b.waiters.Len() != 0 {
		t.Fatalf("used %d, %d waiters", b.used, b.waiters.Len())
	}
}

// revocableExports hands out exports that are withdrawn when the context
// registered for their name ends, as mgmt's do when a token is revoked.
type revocableExports struct {
	*memExports
	mu   sync.Mutex
	ctxs map[string]context.Context
}

type revocableExport struct {
	Export
	ctx context.Context
}

func (x revocableExport) Context() context.Context { return x.ctx }

func (r *revocableExports) Open(c *Conn, name string) (Export, ExportInfo, error) {
	x, info, err := r.memExports.Open(c, name)
	if err != nil {
		return nil, info, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx := r.ctxs[name]
	if ctx == nil {
		ctx = context.Background()
	}
	return revocableExport{Export: x, ctx: ctx}, info, nil
}

// A withdrawn session ends like a shutdown of one connection: the request
// in flight finishes, later ones get ESHUTDOWN saying why, the server
// hangs up within the grace; other sessions go on.
func TestSessionEnd(t *testing.T) {
	for _, sr := range []bool{true, false} {
		obs := newCountingObserver()
		exp := defaultExports()
		ctx, revoke := context.WithCancelCause(context.Background())
		rex := &revocableExports{memExports: exp, ctxs: map[string]context.Context{"disk": ctx}}
		ts := newTestServer(t, exp, func(o *Options) { o.Observer, o.Exports = obs, rex })
		other := ts.connect("small", sr, false) // not revoked
		c := ts.connect("disk", sr, false)
		c.Write(0, pattern(7, 4096))
		gate, open := testwait.Gate(t)
		ts.exp.setFault(opRead, fault{gate: gate, match: func(off, n uint64) bool { return off == 0 }})
		inflight := c.Send(0, cmdRead, 0, 4096, nil)
		ts.exp.waitEntered(t, opRead, 1)
		revoke(errors.New("token revoked by the test"))
		testwait.Until(t, "the session to end", func() bool { return obs.count(ReasonSessionEnded) == 1 })
		start := time.Now()
		r := c.Do(0, cmdWrite, 4096, 4096, pattern(8, 4096))
		if r.Errno != uint32(ESHUTDOWN) {
			t.Fatalf("sr=%v: write after the session ended: %v", sr, r)
		}
		if sr {
			if m := r.Msgs[len(r.Msgs)-1]; !strings.Contains(string(m.Payload[6:]), "token revoked by the test") {
				t.Fatalf("ESHUTDOWN message %q does not say why", m.Payload[6:])
			}
		}
		open()
		if r := c.Recv(); r.Cookie != inflight || r.Errno != 0 || string(r.Data) != string(pattern(7, 4096)) {
			t.Fatalf("sr=%v: the read in flight when the session ended: %v", sr, r)
		}
		c.ExpectClosed()
		if d := time.Since(start); d > 5*sessionEndGrace {
			t.Fatalf("hung up %v after the session ended; the grace is %v", d, sessionEndGrace)
		}
		if n := ts.exp.count(opWrite); n != 1 {
			t.Fatalf("%d writes reached the backend; the one after the end must not", n)
		}
		other.Read(0, 512)
		other.Disconnect()
		obs.only(t, map[Reason]int{ReasonSessionEnded: 1})

		// A session that ended before GO finished ends at once.
		d := ts.connect("disk", sr, false)
		if r := d.Do(0, cmdRead, 0, 512, nil); r.Errno != uint32(ESHUTDOWN) {
			t.Fatalf("read on a session already ended: %v", r)
		}
		d.ExpectClosed()
		ts.stop()
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// What a connection costs while it negotiates: a little, and nothing for
// an option length it has not sent (a flood of half-open connections is
// bounded by MaxHandshakes times this).
func TestHandshakeCostsLittle(t *testing.T) {
	const n = 200
	ts := newTestServer(t, nil, func(o *Options) { o.MaxHandshakes = -1 })
	before := heapInUse()
	var cs []*nbdtest.Client
	for i := range n {
		c := ts.dial().Start()
		if i%2 == 0 {
			// An option header claiming 1 MiB of data, and no data.
			h := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
			h = binary.BigEndian.AppendUint32(h, optInfo)
			c.SendRaw(binary.BigEndian.AppendUint32(h, maxOptionData))
		}
		cs = append(cs, c)
	}
	testwait.Until(t, "every connection", func() bool { return ts.srv.Connections() == n })
	time.Sleep(100 * time.Millisecond) // let the readers block on the missing data
	per := (heapInUse() - before) / n
	t.Logf("%d bytes of heap per negotiating connection", per)
	if per > 24<<10 {
		t.Errorf("a negotiating connection holds %d bytes of heap; want under 24 KiB", per)
	}
	for _, c := range cs {
		c.Conn.Close()
	}
}

// And once connected, an idle one keeps its read buffer and nothing else.
func TestIdleConnectionCostsLittle(t *testing.T) {
	const n = 100
	ts := newTestServer(t, nil, nil)
	before := heapInUse()
	var cs []*nbdtest.Client
	for range n {
		c := ts.connect("disk", true, false)
		c.Read(0, 64<<10) // it has written a reply once
		cs = append(cs, c)
	}
	per := (heapInUse() - before) / n
	t.Logf("%d bytes of heap per idle connection", per)
	if per > readBufferSize+32<<10 {
		t.Errorf("an idle connection holds %d bytes of heap; want its %d-byte read buffer and little more", per, readBufferSize)
	}
	for _, c := range cs {
		c.Disconnect()
	}
}

// A client that stops halfway through a WRITE's payload, or stops reading
// its replies, is cut after StallTimeout, and what it held of the
// server-wide budget comes back; other clients never notice.
func TestStalledClients(t *testing.T) {
	const stall = 300 * time.Millisecond
	obs := newCountingObserver()
	ts := newTestServer(t, nil, func(o *Options) {
		o.Observer, o.StallTimeout, o.MaxPayload, o.MaxInFlightBytes = obs, stall, 1<<20, 8<<20
	})
	other := ts.connect("disk", true, false)
	half := ts.connect("disk", true, false)
	half.SendRaw(append(nbdtest.EncodeRequest(0, cmdWrite, 1, 0, 64<<10), make([]byte, 1024)...))
	testwait.Until(t, "the write to hold budget", func() bool { return ts.srv.budget.inUse() > 0 })
	start := time.Now()
	half.ExpectClosed()
	if d := time.Since(start); d < stall/2 {
		t.Fatalf("cut %v into a stall of %v", d, stall)
	}
	obs.only(t, map[Reason]int{ReasonStalled: 1})
	if ts.exp.count(opWrite) != 0 {
		t.Fatal("the half-sent write reached the backend")
	}

	deaf := ts.connect("disk", true, false)
	go func() {
		for i := uint64(0); ; i++ { // 1 MiB reads, never reading a reply
			if _, err := deaf.Conn.Write(nbdtest.EncodeRequest(0, cmdRead, i, (i%16)<<20, 1<<20)); err != nil {
				return
			}
		}
	}()
	testwait.Until(t, "the deaf client to be cut", func() bool { return obs.count(ReasonStalled) == 2 })
	other.Write(0, pattern(9, 4096))
	if got := other.Read(0, 4096); string(got) != string(pattern(9, 4096)) {
		t.Fatal("read back differs")
	}
	other.Disconnect()
	testwait.Until(t, "the budget to come back", func() bool { return ts.srv.budget.inUse() == 0 })
	obs.only(t, map[Reason]int{ReasonStalled: 2})
}
