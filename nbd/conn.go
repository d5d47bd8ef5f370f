package nbd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Negotiation moves a few hundred bytes, so it gets small buffers: a
	// flood of connections that never finish it costs little memory.
	handshakeBufferSize = 4 << 10
	// Transmission reads through a larger buffer, so pipelined small
	// requests cost one system call for many, and writes replies through
	// a pooled buffer held only while replies are queued: an idle
	// connection keeps readBufferSize and no more.
	readBufferSize  = 64 << 10
	writeBufferSize = 256 << 10
	// shutdownGrace is how long a connection keeps reading after Shutdown,
	// answering ESHUTDOWN, before it hangs up.
	shutdownGrace = 2 * time.Second
	// sessionEndGrace is the same after the export is withdrawn: long
	// enough to answer requests already on the wire, short enough that
	// a revoked token stops working at once.
	sessionEndGrace = time.Second
)

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn // the socket; closing it ends everything
	rw net.Conn // what requests travel over: nc, or TLS over it
	br *bufio.Reader
	bw *bufio.Writer // negotiation only; replies use pooled writers
	rd readDeadline

	info        Conn
	clientFlags uint32

	// Negotiated state.
	structured  bool
	meta        []string // selected contexts; the ID of meta[i] is i+1
	metaExport  string   // the export meta was selected for
	strictAlign bool     // the client asked for INFO_BLOCK_SIZE in GO

	// Transmission.
	exp      Export
	expInfo  ExportInfo
	budget   budget
	inflight sync.WaitGroup
	replies  chan *reply
	work     chan *request // idle workers wait here; see dispatch
	// sessionEnd holds why the export was withdrawn (Revocable), once
	// it is; requests read after that get ESHUTDOWN with this message.
	sessionEnd atomic.Pointer[string]
	// lastReply is when replies were last flushed (UnixNano), kept only
	// with an idle timeout, which counts from it.
	lastReply atomic.Int64

	phaseMu      sync.Mutex
	transmitting bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, rw: nc,
		br: bufio.NewReaderSize(nc, handshakeBufferSize), bw: bufio.NewWriterSize(nc, handshakeBufferSize)}
	c.info.Remote = nc.RemoteAddr()
	return c
}

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.close()
	log := c.s.log.With("remote", c.info.Remote)
	exp, info, err := c.negotiateSafely(log)
	c.s.handshakeDone()
	if err != nil {
		switch {
		case isTimeout(err) && !c.ending():
			c.s.rejected(ReasonHandshakeTimeout, c.info.Remote, "nbd handshake timed out")
		case !errors.Is(err, errHangUp) && !errors.Is(err, io.EOF):
			log.Info("nbd negotiation failed", "err", err)
		}
		return
	}
	c.phaseMu.Lock()
	c.exp, c.expInfo, c.transmitting = exp, info, true
	c.phaseMu.Unlock()
	if c.s.isStopping() {
		c.wakeForShutdown()
	}
	if err := c.bw.Flush(); err != nil {
		exp.Close()
		return
	}
	c.bw = nil
	c.br = transmissionReader(c.br, c.rw)
	if r, ok := exp.(Revocable); ok {
		ctx := r.Context()
		if ctx.Err() != nil {
			c.endSession(context.Cause(ctx)) // before the first request, not beside it
		} else {
			stop := context.AfterFunc(ctx, func() { c.endSession(context.Cause(ctx)) })
			defer stop()
		}
	}
	c.transmit(log)
	if err := exp.Close(); err != nil {
		log.Warn("nbd export close", "err", err)
	}
}

// transmissionReader swaps negotiation's small buffer for a large one,
// keeping whatever the client already sent after its last option.
func transmissionReader(small *bufio.Reader, rw net.Conn) *bufio.Reader {
	var src io.Reader = rw
	if n := small.Buffered(); n > 0 {
		early, _ := small.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(early)), rw)
	}
	return bufio.NewReaderSize(src, readBufferSize)
}

// close ends the connection; over TLS it sends close_notify first, as
// proto.md asks of a soft disconnect.
func (c *conn) close() {
	if tc, ok := c.rw.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(time.Second))
		tc.Close()
	}
	c.nc.Close()
}

func (c *conn) negotiateSafely(log *slog.Logger) (exp Export, info ExportInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("nbd negotiation panic", "panic", p, "stack", string(debug.Stack()))
			exp, err = nil, fmt.Errorf("nbd: panic: %v", p)
		}
	}()
	return c.negotiate()
}

// wakeForShutdown makes a connection blocked on reading notice Shutdown:
// negotiation answers its next option with ERR_SHUTDOWN, transmission its
// next requests with ESHUTDOWN, and both hang up after shutdownGrace.
func (c *conn) wakeForShutdown() {
	c.endBy(time.Now().Add(shutdownGrace))
}

// endSession ends a connection whose export was withdrawn while it was
// open, the way Shutdown does: requests in flight finish (they were
// authorised when they were read), later ones get ESHUTDOWN saying why,
// and the server hangs up after sessionEndGrace. ESHUTDOWN is what
// proto.md has a server send when it is about to end the session;
// clients report it per request and then disconnect, where a bare hang-up
// would leave requests in flight unanswered (and qemu retrying them on a
// reconnect the token no longer allows).
func (c *conn) endSession(why error) {
	msg := "the session ended"
	if why != nil {
		msg = "the session ended: " + why.Error()
	}
	if !c.sessionEnd.CompareAndSwap(nil, &msg) {
		return
	}
	c.s.opts.Observer.ConnectionRejected(ReasonSessionEnded)
	c.s.log.Info("nbd session ended; disconnecting the client", "remote", c.info.Remote, "why", msg)
	c.endBy(time.Now().Add(sessionEndGrace))
}

// writerPool holds reply buffers between bursts of replies.
var writerPool sync.Pool

func getWriter(w io.Writer) *bufio.Writer {
	if bw, ok := writerPool.Get().(*bufio.Writer); ok {
		bw.Reset(w)
		return bw
	}
	return bufio.NewWriterSize(w, writeBufferSize)
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writerPool.Put(bw)
}
