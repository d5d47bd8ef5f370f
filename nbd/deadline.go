package nbd

import (
	"errors"
	"net"
	"sync"
	"time"
)

// readDeadline arbitrates the socket's read deadline between the reader,
// which times what it waits for (the handshake, an idle client, the rest
// of a request), and the end of the connection (Shutdown, a withdrawn
// session), which grants a last grace period. The end always wins: a
// timeout the reader sets later never pushes it back.
type readDeadline struct {
	mu   sync.Mutex
	want time.Time // the reader's own; zero: none
	end  time.Time // zero until the connection is ending
}

// applyLocked sets the earlier of the two on the socket.
func (c *conn) applyLocked() {
	t := c.rd.want
	if e := c.rd.end; !e.IsZero() && (t.IsZero() || e.Before(t)) {
		t = e
	}
	c.nc.SetReadDeadline(t)
}

// setReadDeadline sets the reader's own deadline (zero: none); the end,
// when earlier, still applies.
func (c *conn) setReadDeadline(t time.Time) {
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	c.rd.want = t
	c.applyLocked()
}

// endBy makes the reader give up at t at the latest.
func (c *conn) endBy(t time.Time) {
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	if c.rd.end.IsZero() || t.Before(c.rd.end) {
		c.rd.end = t
	}
	c.applyLocked()
}

// ending reports whether endBy was called.
func (c *conn) ending() bool {
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	return !c.rd.end.IsZero()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
