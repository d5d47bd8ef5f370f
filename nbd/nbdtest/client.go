package nbdtest

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// DefaultTimeout is how long a Client waits for one message from the
// server, or to hand one to the socket, unless Client.Timeout says
// otherwise.
const DefaultTimeout = 30 * time.Second

// Client is a raw NBD client bound to one test. Its methods fail the test
// when the connection fails or the server breaks the protocol; the ones
// that return an error (ReadReply, and everything pipelined) leave that to
// the caller.
type Client struct {
	// Conn is the socket (a *tls.Conn after StartTLS). Tests may write to
	// it, set its deadlines or half-close it behind the client's back.
	Conn net.Conn
	// R reads from Conn; what it has buffered is the client's.
	R *bufio.Reader
	// Timeout bounds each wait for a message and each write; 0 is
	// DefaultTimeout.
	Timeout time.Duration

	HandshakeFlags uint16 // from the greeting
	Structured     bool   // structured replies negotiated
	Size           uint64 // from GO
	TFlags         uint16 // transmission flags, from GO

	t   testing.TB
	wmu sync.Mutex // one message on the socket at a time

	mu      sync.Mutex
	pending map[uint64]Request // requests awaiting their replies
	partial map[uint64]*Reply  // structured replies begun
	next    uint64             // the next cookie Send uses
	// Pipelined mode (Pipeline): the reader's calls, its end and why.
	calls   map[uint64]*Call
	stopped chan struct{}
	err     error
}

// NewClient makes a client on a connected socket; the greeting is still
// to be read (Hello). The socket is closed when the test ends.
func NewClient(t testing.TB, nc net.Conn) *Client {
	c := &Client{Conn: nc, R: bufio.NewReader(nc), t: t, pending: map[uint64]Request{},
		partial: map[uint64]*Reply{}, next: 1}
	t.Cleanup(func() { c.Conn.Close() })
	return c
}

// Dial connects to addr ("tcp" or "unix").
func Dial(t testing.TB, network, addr string) *Client {
	t.Helper()
	nc, err := net.DialTimeout(network, addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("nbdtest: dial %s %s: %v", network, addr, err)
	}
	return NewClient(t, nc)
}

// Negotiation is how Connect and Negotiate reach transmission: fixed
// newstyle without zeroes, then STARTTLS (with TLS), STRUCTURED_REPLY and
// SET_META_CONTEXT (when asked), and GO on Export, asking for the block
// size constraints with BlockSize.
type Negotiation struct {
	Export       string
	TLS          *tls.Config
	Structured   bool
	MetaContexts []string // needs Structured
	BlockSize    bool
}

// Connect dials addr, reads the greeting and negotiates.
func Connect(t testing.TB, network, addr string, n Negotiation) *Client {
	t.Helper()
	c := Dial(t, network, addr)
	c.Hello()
	c.Negotiate(n)
	return c
}

// Negotiate sends the client flags and the options of n after the
// greeting; every option must succeed.
func (c *Client) Negotiate(n Negotiation) ExportInfo {
	c.t.Helper()
	c.Start()
	if n.TLS != nil {
		c.StartTLS(n.TLS)
	}
	if n.Structured {
		c.StructuredReplies()
		if len(n.MetaContexts) > 0 {
			if got := c.SetMeta(n.Export, n.MetaContexts...); len(got) != len(n.MetaContexts) {
				c.Fatalf("SET_META_CONTEXT selected %v, want %v", got, n.MetaContexts)
			}
		}
	}
	var infos []uint16
	if n.BlockSize {
		infos = append(infos, InfoBlockSize)
	}
	return c.Go(n.Export, infos...)
}

// Fatalf fails the test with the client's prefix.
func (c *Client) Fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("nbdtest: "+format, args...)
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// readDeadline starts the wait for one message.
func (c *Client) readDeadline() { c.Conn.SetReadDeadline(time.Now().Add(c.timeout())) }

// send writes b whole, or returns why not.
func (c *Client) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(c.timeout()))
	_, err := c.Conn.Write(b)
	return err
}

// SendRaw writes any bytes.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	if err := c.send(b); err != nil {
		c.Fatalf("write: %v", err)
	}
}

// Hello reads the greeting and checks its magic numbers.
func (c *Client) Hello() uint16 {
	c.t.Helper()
	c.readDeadline()
	f, err := ReadGreeting(c.R)
	if err != nil {
		c.Fatalf("greeting: %v", err)
	}
	c.HandshakeFlags = f
	return f
}

// SendFlags sends the client flags.
func (c *Client) SendFlags(f uint32) {
	c.t.Helper()
	c.SendRaw(binary.BigEndian.AppendUint32(nil, f))
}

// Start sends the usual client flags: fixed newstyle, no zeroes.
func (c *Client) Start() *Client {
	c.t.Helper()
	c.SendFlags(FlagFixedNewstyle | FlagNoZeroes)
	return c
}

// SendOption sends one option request.
func (c *Client) SendOption(code uint32, data []byte) {
	c.t.Helper()
	c.SendRaw(EncodeOption(code, data))
}

// Opt sends an option and reads its replies up to the final one.
func (c *Client) Opt(code uint32, data []byte) []OptReply {
	c.t.Helper()
	c.SendOption(code, data)
	return c.OptReplies(code)
}

// OptReplies reads the replies to option code up to the final one (an
// ACK or an error), checking each.
func (c *Client) OptReplies(code uint32) []OptReply {
	c.t.Helper()
	var out []OptReply
	for {
		c.readDeadline()
		r, err := ReadOptReply(c.R)
		if err != nil {
			c.Fatalf("option %d: reading reply: %v (after %d replies)", code, err, len(out))
		}
		if err := CheckOptReply(code, r); err != nil {
			c.Fatalf("option %d: %v", code, err)
		}
		out = append(out, r)
		if r.Type == RepAck || r.IsErr() {
			return out
		}
	}
}

// OptErr sends an option and expects exactly one error reply of type
// want; it returns the message.
func (c *Client) OptErr(code uint32, data []byte, want uint32) string {
	c.t.Helper()
	rs := c.Opt(code, data)
	if len(rs) != 1 || rs[0].Type != want {
		c.Fatalf("option %d: replies %s, want one %s", code, FmtReplies(rs), RepName(want))
	}
	return string(rs[0].Data)
}

// StructuredReplies negotiates structured replies.
func (c *Client) StructuredReplies() {
	c.t.Helper()
	rs := c.Opt(OptStructuredReply, nil)
	if len(rs) != 1 || rs[0].Type != RepAck {
		c.Fatalf("STRUCTURED_REPLY: %s", FmtReplies(rs))
	}
	c.Structured = true
}

// SetMeta selects meta contexts and returns the server's answer.
func (c *Client) SetMeta(name string, queries ...string) []MetaContext {
	c.t.Helper()
	rs := c.Opt(OptSetMetaContext, MetaOptionData(name, queries...))
	if last := rs[len(rs)-1]; last.Type != RepAck {
		c.Fatalf("SET_META_CONTEXT: %s", FmtReplies(rs))
	}
	return ParseMeta(rs)
}

// Go sends GO and expects success; the client enters transmission.
func (c *Client) Go(name string, infos ...uint16) ExportInfo {
	c.t.Helper()
	rs := c.Opt(OptGo, InfoOptionData(name, infos...))
	if last := rs[len(rs)-1]; last.Type != RepAck {
		c.Fatalf("GO %q: %s", name, FmtReplies(rs))
	}
	e := ParseInfo(rs)
	c.Size, c.TFlags = e.Size, e.TFlags
	return e
}

// AbortNegotiation sends ABORT and expects its ACK, then the hang-up.
func (c *Client) AbortNegotiation() {
	c.t.Helper()
	if rs := c.Opt(OptAbort, nil); len(rs) != 1 || rs[0].Type != RepAck {
		c.Fatalf("ABORT: %s", FmtReplies(rs))
	}
	c.ExpectClosed()
}

// StartTLS upgrades the connection after an ACK to STARTTLS. Structured
// replies negotiated before it are forgotten, as proto.md says.
func (c *Client) StartTLS(cfg *tls.Config) {
	c.t.Helper()
	rs := c.Opt(OptStartTLS, nil)
	if len(rs) != 1 || rs[0].Type != RepAck {
		c.Fatalf("STARTTLS: %s", FmtReplies(rs))
	}
	if c.R.Buffered() != 0 {
		c.Fatalf("bytes after the STARTTLS ACK")
	}
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(c.timeout()))
	if err := tc.Handshake(); err != nil {
		c.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.Conn = tc
	c.R = bufio.NewReader(tc)
	c.Structured = false
}

// ExpectClosed checks that the server hangs up without sending more.
func (c *Client) ExpectClosed() {
	c.t.Helper()
	c.readDeadline()
	b, err := io.ReadAll(c.R)
	if len(b) != 0 {
		c.Fatalf("expected a hang-up, got %d more bytes %x", len(b), b[:min(len(b), 64)])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.Fatalf("expected a hang-up; the connection is still open after %v", c.timeout())
	}
}

// ---- transmission ----

// Send writes a request (with its payload for WRITE) and returns its
// cookie. length is the request's length field whatever the payload.
func (c *Client) Send(flags, typ uint16, off uint64, length uint32, payload []byte) uint64 {
	c.t.Helper()
	cookie := c.NextCookie()
	c.SendCookie(cookie, flags, typ, off, length, payload)
	return cookie
}

// SendCookie is Send with a cookie of the test's choosing.
func (c *Client) SendCookie(cookie uint64, flags, typ uint16, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	c.SendRaw(append(EncodeRequest(flags, typ, cookie, off, length), payload...))
	if typ != CmdDisc {
		c.Expect(cookie, Request{Type: typ, Flags: flags, Offset: off, Length: length})
	}
}

// NextCookie takes a cookie, for a request the test writes itself.
func (c *Client) NextCookie() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.next
	c.next++
	return n
}

// Expect makes the client await a reply to a request the test wrote
// itself.
func (c *Client) Expect(cookie uint64, r Request) {
	c.mu.Lock()
	c.pending[cookie] = r
	c.mu.Unlock()
}

// Pending is how many replies the client awaits.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// ClearPending forgets the replies the client awaits.
func (c *Client) ClearPending() {
	c.mu.Lock()
	clear(c.pending)
	clear(c.partial)
	c.mu.Unlock()
}

// ReadReply reads messages until one request's reply is complete, and
// checks it: every message is for a request in flight, of the kind the
// negotiation allows, and a READ's chunks cover it exactly. Messages of
// other replies read meanwhile are kept for later calls.
func (c *Client) ReadReply() (*Reply, error) {
	for {
		if c.stopped == nil {
			c.readDeadline()
		}
		m, err := ReadMsg(c.R, func(cookie uint64) (int, bool) {
			c.mu.Lock()
			defer c.mu.Unlock()
			s, ok := c.pending[cookie]
			if !ok {
				return 0, false
			}
			if s.Type == CmdRead {
				return int(s.Length), true
			}
			return 0, true
		})
		if err != nil {
			return nil, err
		}
		r, err := c.add(m)
		if r != nil || err != nil {
			return r, err
		}
	}
}

// add files one message; it returns the reply it completed.
func (c *Client) add(m Msg) (*Reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.pending[m.Cookie]
	switch {
	case !ok:
		return nil, fmt.Errorf("reply for cookie %d, which is not pending", m.Cookie)
	case m.Simple && c.Structured && s.Type == CmdRead:
		return nil, fmt.Errorf("simple reply to READ %d with structured replies on", m.Cookie)
	case !m.Simple && !c.Structured:
		return nil, fmt.Errorf("structured chunk without structured replies")
	}
	r := c.partial[m.Cookie]
	if r == nil {
		r = &Reply{Cookie: m.Cookie, Req: s}
		c.partial[m.Cookie] = r
	}
	r.Msgs = append(r.Msgs, m)
	if m.Simple {
		r.Errno = m.Errno
	} else if m.Type == ChunkError || m.Type == ChunkErrorOffset {
		if r.Errno != 0 {
			return nil, fmt.Errorf("cookie %d: two error chunks", m.Cookie)
		}
		r.Errno = binary.BigEndian.Uint32(m.Payload)
	}
	if !m.Done() {
		return nil, nil
	}
	delete(c.pending, m.Cookie)
	delete(c.partial, m.Cookie)
	return r, r.finish(c.Structured)
}

// Recv reads one complete reply.
func (c *Client) Recv() *Reply {
	c.t.Helper()
	r, err := c.ReadReply()
	if err != nil {
		c.Fatalf("reply: %v", err)
	}
	return r
}

// RecvAll reads replies until nothing is pending; it returns them in the
// order they completed.
func (c *Client) RecvAll() []*Reply {
	c.t.Helper()
	var out []*Reply
	for c.Pending() > 0 {
		out = append(out, c.Recv())
	}
	return out
}

// Do sends one request and waits for its reply, which must come next.
func (c *Client) Do(flags, typ uint16, off uint64, length uint32, payload []byte) *Reply {
	c.t.Helper()
	cookie := c.Send(flags, typ, off, length, payload)
	r := c.Recv()
	if r.Cookie != cookie {
		c.Fatalf("reply to %d, want %d", r.Cookie, cookie)
	}
	return r
}

// Read reads n bytes at off, which must succeed.
func (c *Client) Read(off uint64, n uint32) []byte {
	c.t.Helper()
	r := c.Do(0, CmdRead, off, n, nil)
	if r.Errno != 0 {
		c.Fatalf("read %d+%d: errno %d", off, n, r.Errno)
	}
	return r.Data
}

// Write writes p at off, which must succeed.
func (c *Client) Write(off uint64, p []byte) {
	c.t.Helper()
	c.WriteFlags(0, off, p)
}

// WriteFlags writes p at off with command flags (CmdFlagFUA), which must
// succeed.
func (c *Client) WriteFlags(flags uint16, off uint64, p []byte) {
	c.t.Helper()
	if r := c.Do(flags, CmdWrite, off, uint32(len(p)), p); r.Errno != 0 {
		c.Fatalf("write %d+%d: errno %d", off, len(p), r.Errno)
	}
}

// MaxRequest is the most ReadAll asks for in one READ, and what
// ReadAt and WriteAt split larger transfers into.
const MaxRequest = 32 << 20

// ReadAt fills p from off, with as many READs as it takes, all in flight at
// once; every one must succeed.
func (c *Client) ReadAt(p []byte, off uint64) {
	c.t.Helper()
	at := map[uint64][]byte{}
	for len(p) > 0 {
		n := min(len(p), MaxRequest)
		at[c.Send(0, CmdRead, off, uint32(n), nil)] = p[:n]
		p, off = p[n:], off+uint64(n)
	}
	for range len(at) {
		r := c.Recv()
		if r.Errno != 0 {
			c.Fatalf("read %d+%d: errno %d", r.Req.Offset, r.Req.Length, r.Errno)
		}
		copy(at[r.Cookie], r.Data)
	}
}

// WriteAt writes p at off with command flags, with as many WRITEs as it
// takes, all in flight at once; every one must succeed.
func (c *Client) WriteAt(flags uint16, p []byte, off uint64) {
	c.t.Helper()
	sent := 0
	for len(p) > 0 {
		n := min(len(p), MaxRequest)
		c.Send(flags, CmdWrite, off, uint32(n), p[:n])
		p, off, sent = p[n:], off+uint64(n), sent+1
	}
	for range sent {
		if r := c.Recv(); r.Errno != 0 {
			c.Fatalf("write %d+%d: errno %d", r.Req.Offset, r.Req.Length, r.Errno)
		}
	}
}

// ReadAll reads the whole export (Size bytes from GO).
func (c *Client) ReadAll() []byte {
	c.t.Helper()
	p := make([]byte, c.Size)
	c.ReadAt(p, 0)
	return p
}

// Disconnect sends DISC and expects the server to hang up.
func (c *Client) Disconnect() {
	c.t.Helper()
	c.Send(0, CmdDisc, 0, 0, nil)
	c.ExpectClosed()
}
