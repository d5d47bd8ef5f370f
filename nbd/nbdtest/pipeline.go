package nbdtest

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Pipelined mode: after Pipeline a goroutine reads the replies, and any
// goroutine may Submit requests and Wait for them. Nothing here fails the
// test: every outcome is a Call's error, for tests that load a server from
// many goroutines and must know exactly which requests were answered, and
// how (the crash tests' durability model). When the connection dies, every
// call in flight fails with the reader's error.

// Call is one request in flight in pipelined mode.
type Call struct {
	Cookie uint64
	Req    Request
	Reply  *Reply // when it came; nil if the connection died first
	Err    error  // the connection's error, when it died first
	c      *Client
	done   chan struct{}
}

// Done is closed when the reply (or the connection's death) arrived.
func (call *Call) Done() <-chan struct{} { return call.done }

// Wait waits for the call and returns its error: the connection's, or an
// Errno for an error reply. A call with no answer within the client's
// Timeout closes the connection (failing every call on it).
func (call *Call) Wait() error {
	timer := time.NewTimer(call.c.timeout())
	defer timer.Stop()
	select {
	case <-call.done:
	case <-timer.C:
		call.c.Conn.Close()
		<-call.done // the reader fails it now
		return fmt.Errorf("nbdtest: no reply within %v, closed the connection: %w", call.c.timeout(), call.Err)
	}
	if call.Err != nil {
		return call.Err
	}
	if call.Reply.Errno != 0 {
		return Errno(call.Reply.Errno)
	}
	return nil
}

// Data is a READ's data.
func (call *Call) Data() []byte {
	if call.Reply == nil {
		return nil
	}
	return call.Reply.Data
}

// Pipeline starts the reader goroutine; from now on use Submit, not Send
// and Recv. Nothing may be pending.
func (c *Client) Pipeline() {
	c.t.Helper()
	if c.Pending() != 0 {
		c.Fatalf("Pipeline with %d replies pending", c.Pending())
	}
	c.mu.Lock()
	c.calls = map[uint64]*Call{}
	c.stopped = make(chan struct{})
	c.mu.Unlock()
	c.Conn.SetReadDeadline(time.Time{}) // the calls have their own
	go c.readReplies()
}

// Stopped is closed when the reader has stopped: the connection is gone.
func (c *Client) Stopped() <-chan struct{} { return c.stopped }

func (c *Client) readReplies() {
	var err error
	for {
		var r *Reply
		if r, err = c.ReadReply(); err != nil {
			break
		}
		c.mu.Lock()
		call := c.calls[r.Cookie]
		delete(c.calls, r.Cookie)
		c.mu.Unlock()
		call.Reply = r
		close(call.done)
	}
	c.mu.Lock()
	c.err = fmt.Errorf("nbdtest: connection lost: %w", err)
	for cookie, call := range c.calls {
		call.Err = c.err
		close(call.done)
		delete(c.calls, cookie)
	}
	c.mu.Unlock()
	close(c.stopped)
}

// errNotPipelined is Submit's error before Pipeline.
var errNotPipelined = errors.New("nbdtest: Submit before Pipeline")

// Submit sends one request as Send does and returns its call; the request
// is on the socket when Submit returns. A DISC has no reply: its call is
// done at once.
func (c *Client) Submit(flags, typ uint16, off uint64, length uint32, payload []byte) *Call {
	call := &Call{Req: Request{Type: typ, Flags: flags, Offset: off, Length: length}, c: c, done: make(chan struct{})}
	c.wmu.Lock() // requests go out in cookie order
	defer c.wmu.Unlock()
	c.mu.Lock()
	switch {
	case c.calls == nil:
		call.Err = errNotPipelined
	case c.err != nil:
		call.Err = c.err
	}
	if call.Err != nil {
		c.mu.Unlock()
		close(call.done)
		return call
	}
	call.Cookie = c.next
	c.next++
	if typ != CmdDisc {
		c.pending[call.Cookie] = call.Req
		c.calls[call.Cookie] = call
	}
	c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout()))
	if _, err := c.Conn.Write(append(EncodeRequest(flags, typ, call.Cookie, off, length), payload...)); err != nil {
		c.Conn.Close() // the reader fails every call in flight, this one too
	}
	if typ == CmdDisc {
		close(call.done)
	}
	return call
}

// Close ends the connection politely when it still works: DISC, then the
// server's hang-up (waited for up to Timeout), then the socket closes.
// It never fails the test.
func (c *Client) Close() {
	if c.stopped == nil {
		c.send(EncodeRequest(0, CmdDisc, 0, 0, 0))
		c.readDeadline()
		io.Copy(io.Discard, c.R)
		c.Conn.Close()
		return
	}
	c.Submit(0, CmdDisc, 0, 0, nil)
	select {
	case <-c.stopped:
	case <-time.After(c.timeout()):
	}
	c.Abort()
}

// Abort closes the socket without a goodbye; in pipelined mode it waits
// for the reader to stop.
func (c *Client) Abort() {
	c.Conn.Close()
	if c.stopped != nil {
		<-c.stopped
	}
}
