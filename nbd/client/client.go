// Package client is vdiskd's NBD client, for the daemon's own use: the
// replicator writes a VDI's changed blocks into its replica on a peer
// with it. It speaks the fixed newstyle handshake with NBD_OPT_GO (and
// STARTTLS when given a TLS config), simple replies only, and pipelines
// requests: any number of goroutines may call ReadAt, WriteAt and Flush at
// once on one connection, each waiting for its own reply.
//
// nbd/nbdtest is the protocol-probing client of the tests; this one is
// small on purpose and returns errors instead of failing a test.
package client

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// The protocol's numbers this client uses (doc/proto.md of the NBD
// project).
const (
	magicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply = 0x3e889045565a9
	magicRequest  = 0x25609513
	magicSimple   = 0x67446698

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optStartTLS = 5
	optGo       = 7
	repAck      = 1
	repInfo     = 3
	infoExport  = 0
	repErrBit   = 1 << 31

	tflagReadOnly  = 1 << 1
	tflagSendFlush = 1 << 2
	tflagSendFUA   = 1 << 3

	cmdRead    = 0
	cmdWrite   = 1
	cmdDisc    = 2
	cmdFlush   = 3
	cmdFlagFUA = 1 << 0

	maxOptReply = 64 << 10
)

// ErrClosed is returned for requests on a closed or failed connection.
var ErrClosed = errors.New("nbd client: connection closed")

// Error is a server's error reply to one request.
type Error struct {
	Op    string
	Errno syscall.Errno
}

func (e *Error) Error() string { return fmt.Sprintf("nbd client: %s: %v", e.Op, e.Errno) }

// Client is one NBD connection to one export.
type Client struct {
	conn  net.Conn
	size  uint64
	flags uint16

	wmu sync.Mutex // serialises writes of requests to conn

	mu      sync.Mutex // guards below
	pending map[uint64]*call
	cookie  uint64
	err     error // set once the connection failed or closed

	readerDone chan struct{} // closed when readReplies returns
}

type call struct {
	buf   []byte // where a read's data goes
	reply chan error
}

// Dial connects to addr (host:port), negotiates export with NBD_OPT_GO,
// with STARTTLS first if tlsConf is not nil.
func Dial(ctx context.Context, addr, export string, tlsConf *tls.Config) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd client: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := handshake(conn, export, tlsConf)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("nbd client: %s at %s: %w", export, addr, err)
	}
	_ = c.conn.SetDeadline(time.Time{})
	go c.readReplies()
	return c, nil
}

func handshake(conn net.Conn, export string, tlsConf *tls.Config) (*Client, error) {
	var hello [18]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	if binary.BigEndian.Uint64(hello[0:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicIHaveOpt {
		return nil, errors.New("not a newstyle NBD server")
	}
	hflags := binary.BigEndian.Uint16(hello[16:])
	if hflags&flagFixedNewstyle == 0 {
		return nil, errors.New("the server does not speak fixed newstyle")
	}
	cflags := uint32(flagFixedNewstyle)
	if hflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	if err := binary.Write(conn, binary.BigEndian, cflags); err != nil {
		return nil, err
	}
	if tlsConf != nil {
		if err := sendOpt(conn, optStartTLS, nil); err != nil {
			return nil, err
		}
		if typ, data, err := readOptReply(conn, optStartTLS); err != nil {
			return nil, err
		} else if typ != repAck {
			return nil, fmt.Errorf("STARTTLS refused (%#x: %s)", typ, data)
		}
		tc := tls.Client(conn, tlsConf)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	// NBD_OPT_GO: the name, and no info requests.
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 0)
	if err := sendOpt(conn, optGo, data); err != nil {
		return nil, err
	}
	c := &Client{conn: conn, pending: map[uint64]*call{}, readerDone: make(chan struct{})}
	sawExport := false
	for {
		typ, body, err := readOptReply(conn, optGo)
		if err != nil {
			return nil, err
		}
		switch {
		case typ == repAck:
			if !sawExport {
				return nil, errors.New("the server acknowledged NBD_OPT_GO without the export's size")
			}
			return c, nil
		case typ == repInfo && len(body) >= 12 && binary.BigEndian.Uint16(body) == infoExport:
			c.size = binary.BigEndian.Uint64(body[2:])
			c.flags = binary.BigEndian.Uint16(body[10:])
			sawExport = true
		case typ&repErrBit != 0:
			return nil, fmt.Errorf("the server refused the export (%#x): %s", typ, body)
		}
	}
}

func sendOpt(w io.Writer, opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := w.Write(append(b, data...))
	return err
}

func readOptReply(r io.Reader, opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, fmt.Errorf("reading an option reply: %w", err)
	}
	if binary.BigEndian.Uint64(h[0:]) != magicOptReply || binary.BigEndian.Uint32(h[8:]) != opt {
		return 0, nil, errors.New("a malformed option reply")
	}
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptReply {
		return 0, nil, fmt.Errorf("an option reply of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(h[12:]), body, nil
}

// Size is the export's size in bytes.
func (c *Client) Size() uint64 { return c.size }

// ReadOnly reports whether the server refuses writes to the export.
func (c *Client) ReadOnly() bool { return c.flags&tflagReadOnly != 0 }

// CanFUA reports whether the server takes FUA writes.
func (c *Client) CanFUA() bool { return c.flags&tflagSendFUA != 0 }

// WriteAt writes p at off; with fua the server makes it durable before it
// replies (or, if it cannot take FUA, Flush must follow).
func (c *Client) WriteAt(ctx context.Context, p []byte, off uint64, fua bool) error {
	var flags uint16
	if fua && c.CanFUA() {
		flags = cmdFlagFUA
	}
	return c.do(ctx, "write", cmdWrite, flags, off, uint32(len(p)), p, nil)
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(ctx context.Context, p []byte, off uint64) error {
	return c.do(ctx, "read", cmdRead, 0, off, uint32(len(p)), nil, p)
}

// Flush makes every write the server acknowledged durable.
func (c *Client) Flush(ctx context.Context) error {
	if c.flags&tflagSendFlush == 0 {
		return nil // the server writes through
	}
	return c.do(ctx, "flush", cmdFlush, 0, 0, 0, nil, nil)
}

// do sends one request and waits for its reply (or ctx, or the
// connection's end).
func (c *Client) do(ctx context.Context, op string, typ, flags uint16, off uint64, length uint32, payload, into []byte) error {
	cl := &call{buf: into, reply: make(chan error, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = cl
	c.mu.Unlock()

	hdr := make([]byte, 28, 28+len(payload))
	binary.BigEndian.PutUint32(hdr[0:], magicRequest)
	binary.BigEndian.PutUint16(hdr[4:], flags)
	binary.BigEndian.PutUint16(hdr[6:], typ)
	binary.BigEndian.PutUint64(hdr[8:], cookie)
	binary.BigEndian.PutUint64(hdr[16:], off)
	binary.BigEndian.PutUint32(hdr[24:], length)
	c.wmu.Lock()
	_, err := (&net.Buffers{hdr, payload}).WriteTo(c.conn)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("nbd client: sending a %s: %w", op, err))
	}
	select {
	case err := <-cl.reply:
		if errno, ok := err.(syscall.Errno); ok {
			return &Error{Op: fmt.Sprintf("%s of %d bytes at %d", op, length, off), Errno: errno}
		}
		return err
	case <-ctx.Done():
		if into != nil {
			// A read's data would still come into the caller's buffer:
			// end the connection and wait for the reader to stop.
			c.fail(fmt.Errorf("nbd client: a %s was abandoned: %w", op, ctx.Err()))
			<-c.readerDone
			return ctx.Err()
		}
		// A write's or flush's reply may still come; the reader drops
		// it, and the connection stays usable.
		c.mu.Lock()
		delete(c.pending, cookie)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// readReplies matches replies to their requests until the connection ends.
func (c *Client) readReplies() {
	defer close(c.readerDone)
	var h [16]byte
	for {
		if _, err := io.ReadFull(c.conn, h[:]); err != nil {
			c.fail(err)
			return
		}
		if binary.BigEndian.Uint32(h[0:]) != magicSimple {
			c.fail(errors.New("nbd client: a reply that is not a simple reply"))
			return
		}
		errno := binary.BigEndian.Uint32(h[4:])
		cookie := binary.BigEndian.Uint64(h[8:])
		c.mu.Lock()
		cl := c.pending[cookie]
		delete(c.pending, cookie)
		c.mu.Unlock()
		// No one waits only for a write or flush whose caller gave up:
		// no data follows those.
		if errno == 0 && cl != nil && cl.buf != nil {
			if _, err := io.ReadFull(c.conn, cl.buf); err != nil {
				c.fail(err)
				cl.reply <- ErrClosed
				return
			}
		}
		if cl != nil {
			if errno != 0 {
				cl.reply <- syscall.Errno(errno)
			} else {
				cl.reply <- nil
			}
		}
	}
}

// fail ends the connection with err: every waiting request gets it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	}
	c.err = err
	for k, cl := range c.pending {
		cl.reply <- err
		delete(c.pending, k)
	}
	c.conn.Close()
}

// Close tells the server goodbye (NBD_CMD_DISC) and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	failed := c.err != nil
	c.mu.Unlock()
	if !failed {
		hdr := make([]byte, 28)
		binary.BigEndian.PutUint32(hdr[0:], magicRequest)
		binary.BigEndian.PutUint16(hdr[6:], cmdDisc)
		c.wmu.Lock()
		_, _ = c.conn.Write(hdr)
		c.wmu.Unlock()
	}
	c.fail(ErrClosed)
	return nil
}
