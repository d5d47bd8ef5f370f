package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// nbdWire is a small pipelined NBD client for tests that must know exactly
// when each reply arrived (the crash tests' durability model), which no
// real client reports. Fixed newstyle, OPT_GO, simple replies only; many
// requests in flight, replies matched by cookie. When the connection dies
// every pending request fails with the reader's error.

const (
	wireMagicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	wireMagicIHaveOpt = 0x49484156454F5054 // "IHAVEOPT"
	wireMagicOptReply = 0x3e889045565a9
	wireMagicRequest  = 0x25609513
	wireMagicSimple   = 0x67446698

	wireOptGo      = 7
	wireRepAck     = 1
	wireRepInfo    = 3
	wireInfoExport = 0

	wireCmdRead        = 0
	wireCmdWrite       = 1
	wireCmdDisc        = 2
	wireCmdFlush       = 3
	wireCmdTrim        = 4
	wireCmdWriteZeroes = 6

	wireFlagFUA    = 1 << 0
	wireFlagNoHole = 1 << 1

	wireTFlagReadOnly  = 1 << 1
	wireTFlagMultiConn = 1 << 8
)

type nbdWire struct {
	nc    net.Conn
	Size  uint64
	Flags uint16 // transmission flags

	wmu sync.Mutex // one request on the socket at a time
	bw  *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]*wireCall
	next    uint64
	err     error // why the reader stopped; set once
	stopped chan struct{}
}

// wireCall is one request in flight. Done is closed when its reply (or the
// connection's death) arrived; Err is then set (an *wireErrno for an NBD
// error reply).
type wireCall struct {
	c    *nbdWire
	typ  uint16
	buf  []byte // READ: filled from the reply
	Err  error
	Done chan struct{}
}

type wireErrno uint32

func (e wireErrno) Error() string { return fmt.Sprintf("nbd error %d", uint32(e)) }

// dialNBD connects to host and opens export name with OPT_GO.
func dialNBD(host, name string) (*nbdWire, error) {
	nc, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &nbdWire{nc: nc, bw: bufio.NewWriterSize(nc, 1<<20), pending: map[uint64]*wireCall{},
		next: 1, stopped: make(chan struct{})}
	br := bufio.NewReaderSize(nc, 1<<20)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.negotiate(br, name); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nbd handshake for %q: %w", name, err)
	}
	nc.SetDeadline(time.Time{})
	go c.readReplies(br)
	return c, nil
}

func (c *nbdWire) negotiate(br *bufio.Reader, name string) error {
	var hello [18]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != wireMagicNBD || binary.BigEndian.Uint64(hello[8:]) != wireMagicIHaveOpt {
		return fmt.Errorf("bad greeting %x", hello)
	}
	b := binary.BigEndian.AppendUint32(nil, 1|2) // FIXED_NEWSTYLE | NO_ZEROES
	b = binary.BigEndian.AppendUint64(b, wireMagicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, wireOptGo)
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(name)+2))
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, 0) // no information requests
	if _, err := c.nc.Write(b); err != nil {
		return err
	}
	for {
		var h [20]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return err
		}
		typ, n := binary.BigEndian.Uint32(h[12:]), binary.BigEndian.Uint32(h[16:])
		if binary.BigEndian.Uint64(h[0:]) != wireMagicOptReply || n > 1<<20 {
			return fmt.Errorf("bad option reply %x", h)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return err
		}
		switch {
		case typ&(1<<31) != 0:
			return fmt.Errorf("option error %#x: %s", typ, data)
		case typ == wireRepInfo && len(data) == 12 && binary.BigEndian.Uint16(data) == wireInfoExport:
			c.Size = binary.BigEndian.Uint64(data[2:])
			c.Flags = binary.BigEndian.Uint16(data[10:])
		case typ == wireRepAck:
			if c.Size == 0 {
				return errors.New("no export information before ACK")
			}
			return nil
		}
	}
}

func (c *nbdWire) readReplies(br *bufio.Reader) {
	err := func() error {
		for {
			var h [16]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return err
			}
			if m := binary.BigEndian.Uint32(h[0:]); m != wireMagicSimple {
				return fmt.Errorf("bad reply magic %#x", m)
			}
			errno, cookie := binary.BigEndian.Uint32(h[4:]), binary.BigEndian.Uint64(h[8:])
			c.mu.Lock()
			call := c.pending[cookie]
			delete(c.pending, cookie)
			c.mu.Unlock()
			if call == nil {
				return fmt.Errorf("reply to unknown cookie %d", cookie)
			}
			if errno != 0 {
				call.Err = wireErrno(errno)
			} else if call.typ == wireCmdRead {
				if _, err := io.ReadFull(br, call.buf); err != nil {
					call.Err = err
					close(call.Done)
					return err
				}
			}
			close(call.Done)
		}
	}()
	c.mu.Lock()
	c.err = fmt.Errorf("nbd connection lost: %w", err)
	for cookie, call := range c.pending {
		call.Err = c.err
		close(call.Done)
		delete(c.pending, cookie)
	}
	c.mu.Unlock()
	close(c.stopped)
}

// Start sends one request; buf is the payload of a WRITE or the
// destination of a READ (length len(buf)), length is used otherwise. The
// request is on the socket when Start returns.
func (c *nbdWire) Start(typ, flags uint16, off uint64, length uint32, buf []byte) *wireCall {
	call := &wireCall{c: c, typ: typ, Done: make(chan struct{})}
	if typ == wireCmdRead || typ == wireCmdWrite {
		length = uint32(len(buf))
		call.buf = buf
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		call.Err = c.err
		c.mu.Unlock()
		close(call.Done)
		return call
	}
	cookie := c.next
	c.next++
	c.pending[cookie] = call
	c.mu.Unlock()
	h := binary.BigEndian.AppendUint32(make([]byte, 0, 28), wireMagicRequest)
	h = binary.BigEndian.AppendUint16(h, flags)
	h = binary.BigEndian.AppendUint16(h, typ)
	h = binary.BigEndian.AppendUint64(h, cookie)
	h = binary.BigEndian.AppendUint64(h, off)
	h = binary.BigEndian.AppendUint32(h, length)
	c.bw.Write(h)
	if typ == wireCmdWrite {
		c.bw.Write(buf)
	}
	if err := c.bw.Flush(); err != nil {
		c.nc.Close() // the reader fails every pending call, this one too
	}
	return call
}

// wireReplyTimeout bounds the wait for one reply: a server that never
// answers fails the call (and the connection) instead of hanging the test.
const wireReplyTimeout = time.Minute

// Wait waits for a call and returns its error. With no reply within
// wireReplyTimeout it closes the connection, which fails every call on it.
func (w *wireCall) Wait() error {
	select {
	case <-w.Done:
		return w.Err
	case <-time.After(wireReplyTimeout):
	}
	w.c.nc.Close()
	<-w.Done // the reader fails it now
	return fmt.Errorf("no reply within %v, closed the connection: %w", wireReplyTimeout, w.Err)
}

// ReadAt reads len(p) bytes at off, splitting into 32 MiB requests.
func (c *nbdWire) ReadAt(p []byte, off uint64) error {
	const max = 32 << 20
	var calls []*wireCall
	for len(p) > 0 {
		n := min(len(p), max)
		calls = append(calls, c.Start(wireCmdRead, 0, off, 0, p[:n]))
		p, off = p[n:], off+uint64(n)
	}
	for _, call := range calls {
		if err := call.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// WriteAt writes p at off (FUA if fua) and waits for the reply.
func (c *nbdWire) WriteAt(p []byte, off uint64, fua bool) error {
	var f uint16
	if fua {
		f = wireFlagFUA
	}
	return c.Start(wireCmdWrite, f, off, 0, p).Wait()
}

// Flush sends FLUSH and waits for the reply.
func (c *nbdWire) Flush() error { return c.Start(wireCmdFlush, 0, 0, 0, nil).Wait() }

// Close sends DISC (if the connection still works) and closes the socket.
func (c *nbdWire) Close() {
	c.Start(wireCmdDisc, 0, 0, 0, nil) // no reply comes; the server closes
	select {
	case <-c.stopped:
	case <-time.After(5 * time.Second):
	}
	c.nc.Close()
	<-c.stopped
}

// Abort closes the socket without a goodbye.
func (c *nbdWire) Abort() {
	c.nc.Close()
	<-c.stopped
}
