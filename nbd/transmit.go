package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"time"
)

// request is one decoded transmission request.
type request struct {
	flags   uint16
	typ     uint16
	cookie  uint64
	off     uint64
	length  uint32
	payload *[]byte // WRITE data, pooled
	start   time.Time
	cost    int64 // budget held until the reply is written
}

// transmit runs the transmission phase: this goroutine reads requests,
// each runs on its own goroutine (bounded by the budget), and one writer
// sends replies in whatever order they finish.
func (c *conn) transmit(log *slog.Logger) {
	c.budget.init(c.s.opts.MaxInFlight, c.s.opts.MaxInFlightBytes)
	c.replies = make(chan *reply, c.s.opts.MaxInFlight)
	c.work = make(chan *request)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeReplies(log)
	}()
	err := c.readRequestsSafely(log)
	switch {
	case err == nil: // DISC: finish everything, then close
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case isTimeout(err) && c.ending(): // Shutdown or a withdrawn session: said already
	case errors.Is(err, errIdle):
		c.s.opts.Observer.ConnectionRejected(ReasonIdleTimeout)
		log.Info("nbd client idle; disconnecting", "idle_timeout", c.s.opts.IdleTimeout)
	case errors.Is(err, errStalled):
		c.s.opts.Observer.ConnectionRejected(ReasonStalled)
		log.Info("nbd connection dropped", "err", err)
	default:
		log.Info("nbd connection dropped", "err", err)
	}
	c.inflight.Wait()
	close(c.work)
	close(c.replies)
	<-writerDone
}

// readRequestsSafely turns a panic while reading into this connection's
// end: one client's bad luck must not stop the daemon.
func (c *conn) readRequestsSafely(log *slog.Logger) (err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("nbd reader panic", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("nbd: panic: %v", p)
		}
	}()
	return c.readRequests()
}

var (
	errIdle    = errors.New("nbd: client idle")
	errStalled = errors.New("nbd: a request's payload stopped arriving")
)

// readHeader reads the next request header. With an idle timeout it
// waits that long for one, counted from the last reply when that is later:
// a client waiting on us is not idle.
func (c *conn) readHeader(h []byte) error {
	idle := c.s.opts.IdleTimeout
	got := 0
	for {
		if idle > 0 && c.br.Buffered() < len(h)-got {
			c.setReadDeadline(time.Now().Add(idle))
		}
		n, err := io.ReadFull(c.br, h[got:])
		got += n
		switch {
		case err == nil:
			return nil
		case idle > 0 && isTimeout(err) && !c.ending():
			if c.budget.busy() || time.Since(time.Unix(0, c.lastReply.Load())) < idle {
				continue
			}
			return errIdle
		}
		return err
	}
}

// readPayload reads a WRITE's data. When it is not all buffered already,
// the client has StallTimeout to send it: a stalled payload holds its
// share of the server-wide budget.
func (c *conn) readPayload(p []byte) error {
	if c.br.Buffered() >= len(p) {
		_, err := io.ReadFull(c.br, p)
		return err
	}
	c.setReadDeadline(time.Now().Add(c.s.opts.StallTimeout))
	_, err := io.ReadFull(c.br, p)
	if isTimeout(err) && !c.ending() {
		return errStalled
	}
	c.setReadDeadline(time.Time{}) // readHeader sets its own
	return err
}

// readRequests reads until DISC (nil) or an error.
func (c *conn) readRequests() error {
	var h [requestHeaderLen]byte
	for {
		if err := c.readHeader(h[:]); err != nil {
			return err
		}
		if m := binary.BigEndian.Uint32(h[0:]); m != magicRequest {
			return fmt.Errorf("nbd: request magic %#x", m)
		}
		r := &request{
			flags:  binary.BigEndian.Uint16(h[4:]),
			typ:    binary.BigEndian.Uint16(h[6:]),
			cookie: binary.BigEndian.Uint64(h[8:]),
			off:    binary.BigEndian.Uint64(h[16:]),
			length: binary.BigEndian.Uint32(h[24:]),
		}
		if r.typ == cmdDisc {
			return nil
		}

		if r.typ == cmdWrite && r.length > c.s.opts.MaxPayload {
			// proto.md lets a server hang up on a payload it deems a denial
			// of service; anything above the advertised maximum (2^25) is.
			return fmt.Errorf("nbd: write of %d bytes exceeds the %d-byte maximum payload", r.length, c.s.opts.MaxPayload)
		}
		errno := c.check(r)
		r.cost = c.costOf(r, errno)
		c.budget.acquire(r.cost)
		if waited := c.s.budget.acquire(r.cost); waited > 0 {
			c.s.opts.Observer.BudgetWaited(waited)
		}
		if r.typ == cmdWrite {
			r.payload = getBuf(int(r.length))
			if err := c.readPayload(*r.payload); err != nil {
				putBuf(r.payload)
				c.s.budget.release(r.cost)
				c.budget.release(r.cost)
				return err
			}
		}
		r.start = time.Now()
		c.s.opts.Observer.RequestStarted(Command(r.typ))
		msg := ""
		if errno == 0 {
			if why := c.sessionEnd.Load(); why != nil {
				errno, msg = ESHUTDOWN, *why
			} else if c.s.isStopping() {
				errno = ESHUTDOWN
			}
		}
		if errno != 0 {
			putBuf(r.payload)
			c.s.opts.Observer.RequestDone(Command(r.typ), time.Since(r.start), errno)
			c.replies <- c.errorReply(r, errno, msg)
			continue
		}
		c.inflight.Add(1)
		c.dispatch(r)
	}
}

// dispatch hands r to an idle worker, or starts one. Workers live as long
// as the connection, so their stacks, grown once through the store's deep
// call chains, are reused; a goroutine per request paid for that growth on
// every request (a fifth of the CPU of 4 KiB reads). There are never more
// workers than the budget's request limit.
func (c *conn) dispatch(r *request) {
	select {
	case c.work <- r:
	default:
		go c.worker(r)
	}
}

func (c *conn) worker(r *request) {
	for {
		c.handle(r)
		var ok bool
		if r, ok = <-c.work; !ok {
			return
		}
	}
}

// check validates a request against the negotiated state; 0 means valid.
func (c *conn) check(r *request) Errno {
	allowed := uint16(cmdFlagFUA) // valid on every command (proto.md)
	switch r.typ {
	case cmdRead:
		if c.structured {
			allowed |= cmdFlagDF
		}
	case cmdWrite, cmdFlush, cmdTrim, cmdCache:
	case cmdWriteZeroes:
		allowed |= cmdFlagNoHole
		if !c.expInfo.ReadOnly {
			allowed |= cmdFlagFastZero
		}
	case cmdBlockStatus:
		allowed |= cmdFlagReqOne
	default:
		return EINVAL
	}
	if r.flags&^allowed != 0 {
		return EINVAL
	}
	if r.typ == cmdFlush {
		if r.off != 0 || r.length != 0 {
			return EINVAL
		}
		return 0
	}
	writes := r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes
	if writes && c.expInfo.ReadOnly {
		return EPERM
	}
	end := r.off + uint64(r.length)
	if end < r.off || end > c.expInfo.Size {
		if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
			return ENOSPC
		}
		return EINVAL
	}
	if c.strictAlign {
		m := uint64(c.s.opts.MinBlock)
		if r.off%m != 0 || (uint64(r.length)%m != 0 && end != c.expInfo.Size) {
			return EINVAL
		}
	}
	switch r.typ {
	case cmdRead:
		if r.length > c.s.opts.MaxPayload {
			if c.structured {
				return EOVERFLOW // proto.md: a large read may be refused up front
			}
			return EINVAL
		}
	case cmdBlockStatus:
		if !c.structured || len(c.meta) == 0 || r.length == 0 {
			return EINVAL
		}
	}
	return 0
}

// maxExtents bounds the descriptors of one BLOCK_STATUS chunk (proto.md
// suggests 2^20). At 4 KiB granularity that still covers any request below
// 4 GiB, which virtnbdbackup relies on.
const maxExtents = 1 << 20

// costOf is what a request holds of the connection's budget until its
// reply is written: its payload, its read data, or its extent list.
func (c *conn) costOf(r *request, errno Errno) int64 {
	const base = 256
	if r.typ == cmdWrite {
		return base + int64(r.length)
	}
	if errno != 0 {
		return base
	}
	switch r.typ {
	case cmdRead:
		return base + int64(r.length)
	case cmdBlockStatus:
		n := min(int64(r.length)/int64(c.s.opts.MinBlock)+2, maxExtents)
		if r.flags&cmdFlagReqOne != 0 {
			n = 1
		}
		return base + 8*n*int64(len(c.meta))
	}
	return base
}

// handle runs one valid request and queues its reply.
func (c *conn) handle(r *request) {
	defer c.inflight.Done()
	var rep *reply
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("nbd request panic", "command", commandName(r.typ), "panic", p, "stack", string(debug.Stack()))
			c.s.opts.Observer.RequestDone(Command(r.typ), time.Since(r.start), EIO)
			c.replies <- c.errorReply(r, EIO, "internal error")
		}
	}()
	switch r.typ {
	case cmdRead:
		rep = c.read(r)
	case cmdBlockStatus:
		rep = c.blockStatus(r)
	default:
		err := c.run(r)
		putBuf(r.payload)
		r.payload = nil
		if err != nil {
			rep = c.errorReply(r, errnoOf(err), err.Error())
		} else {
			rep = c.okReply(r)
		}
	}
	c.s.opts.Observer.RequestDone(Command(r.typ), time.Since(r.start), rep.errno)
	c.replies <- rep
}

// run executes a command without reply data.
func (c *conn) run(r *request) error {
	fua := r.flags&cmdFlagFUA != 0
	n := uint64(r.length)
	switch r.typ {
	case cmdWrite:
		return c.exp.WriteAt(*r.payload, r.off, fua)
	case cmdFlush:
		return c.exp.Flush()
	case cmdTrim:
		return c.exp.Trim(r.off, n, fua)
	case cmdCache:
		return c.exp.Cache(r.off, n)
	case cmdWriteZeroes:
		var f ZeroFlags
		if fua {
			f |= ZeroFUA
		}
		if r.flags&cmdFlagNoHole != 0 {
			f |= ZeroNoHole
		}
		if r.flags&cmdFlagFastZero != 0 {
			f |= ZeroFast
		}
		return c.exp.Zero(r.off, n, f)
	}
	return EINVAL
}

// writeReplies sends replies as they come, flushing the socket whenever
// nothing else is queued, so replies that finish together share a write.
// The write buffer is borrowed for each such burst.
func (c *conn) writeReplies(log *slog.Logger) {
	dead := false
	var bw *bufio.Writer
	for rep := range c.replies {
		if !dead {
			if bw == nil {
				bw = getWriter(c.rw)
			}
			c.rw.SetWriteDeadline(time.Now().Add(c.s.opts.StallTimeout))
			flushed, err := c.writeReply(bw, rep)
			switch {
			case err != nil:
				dead = true
				if isTimeout(err) {
					c.s.opts.Observer.ConnectionRejected(ReasonStalled)
				}
				log.Info("nbd reply failed; closing", "err", err)
				c.nc.Close() // the reader sees it and stops
				putWriter(bw)
				bw = nil
			case flushed:
				putWriter(bw)
				bw = nil
				if c.s.opts.IdleTimeout > 0 {
					c.lastReply.Store(time.Now().UnixNano())
				}
			}
		}
		c.s.budget.release(rep.cost)
		c.budget.release(rep.cost)
		rep.free()
	}
	if bw != nil {
		bw.Flush()
		putWriter(bw)
	}
}

// writeReply writes rep, and flushes when nothing else is queued.
func (c *conn) writeReply(bw *bufio.Writer, rep *reply) (flushed bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("nbd writer panic", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("nbd: panic: %v", p)
		}
	}()
	if err := rep.writeTo(bw, c.rw); err != nil {
		return false, err
	}
	if len(c.replies) == 0 && c.budget.inFlight() > 1 {
		// Other requests are running: let them finish first, so their
		// replies share this write (one syscall per reply was a third of
		// the CPU of 4 KiB random reads at queue depth 32).
		runtime.Gosched()
	}
	if len(c.replies) == 0 {
		return true, bw.Flush()
	}
	return false, nil
}
