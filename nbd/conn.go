package nbd

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

const (
	readBufferSize  = 64 << 10
	writeBufferSize = 256 << 10
	// shutdownGrace is how long a connection keeps reading after Shutdown,
	// answering ESHUTDOWN, before it hangs up.
	shutdownGrace = 2 * time.Second
	// writeTimeout cuts a client that stops reading its replies.
	writeTimeout = 2 * time.Minute
)

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn // the socket; closing it ends everything
	rw net.Conn // what requests travel over: nc, or TLS over it
	br *bufio.Reader
	bw *bufio.Writer

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

	phaseMu      sync.Mutex
	transmitting bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, rw: nc,
		br: bufio.NewReaderSize(nc, readBufferSize), bw: bufio.NewWriterSize(nc, writeBufferSize)}
	c.info.Remote = nc.RemoteAddr()
	return c
}

// serve runs the connection to its end.
func (c *conn) serve() {
	defer c.close()
	log := c.s.log.With("remote", c.info.Remote)
	exp, info, err := c.negotiateSafely(log)
	if err != nil {
		if !errors.Is(err, errHangUp) && !errors.Is(err, io.EOF) {
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
	c.transmit(log)
	if err := exp.Close(); err != nil {
		log.Warn("nbd export close", "err", err)
	}
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
	c.nc.SetReadDeadline(time.Now().Add(shutdownGrace))
}

// budget bounds what a connection holds in flight: requests and bytes.
// The reader waits on it, so a client that floods the server stops being
// read rather than growing memory.
type budget struct {
	mu      sync.Mutex
	cond    sync.Cond
	n, max  int
	b, maxB int64
}

func (b *budget) init(maxN int, maxB int64) {
	b.cond.L = &b.mu
	b.max, b.maxB = maxN, maxB
}

func (b *budget) acquire(cost int64) {
	b.mu.Lock()
	for b.n >= b.max || (b.n > 0 && b.b+cost > b.maxB) {
		b.cond.Wait()
	}
	b.n++
	b.b += cost
	b.mu.Unlock()
}

func (b *budget) release(cost int64) {
	b.mu.Lock()
	b.n--
	b.b -= cost
	b.mu.Unlock()
	b.cond.Signal()
}
