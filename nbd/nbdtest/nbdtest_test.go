package nbdtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// fake is the server end of a net.Pipe, scripted by a test.
type fake struct {
	t  *testing.T
	nc net.Conn
}

// serve runs script against a new client's connection. The client has
// read the greeting when serve returns.
func serve(t *testing.T, script func(f *fake)) *Client {
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.Close()
		b.SetDeadline(time.Now().Add(10 * time.Second))
		f := &fake{t: t, nc: b}
		greeting := binary.BigEndian.AppendUint64(nil, MagicNBD)
		greeting = binary.BigEndian.AppendUint64(greeting, MagicIHaveOpt)
		f.write(binary.BigEndian.AppendUint16(greeting, FlagFixedNewstyle|FlagNoZeroes))
		script(f)
	}()
	t.Cleanup(func() { a.Close(); <-done })
	c := NewClient(t, a)
	c.Hello()
	return c
}

func (f *fake) write(b []byte) {
	if _, err := f.nc.Write(b); err != nil {
		f.t.Errorf("fake server: write: %v", err)
	}
}

func (f *fake) read(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(f.nc, b); err != nil {
		f.t.Errorf("fake server: read: %v", err)
	}
	return b
}

// option reads one option request and returns its code.
func (f *fake) option() uint32 {
	h := f.read(16)
	f.read(int(binary.BigEndian.Uint32(h[12:])))
	return binary.BigEndian.Uint32(h[8:])
}

func (f *fake) optReply(opt, typ uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, MagicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	f.write(append(b, data...))
}

// negotiate answers STRUCTURED_REPLY (if it comes) and GO for a 1 MiB
// export.
func (f *fake) negotiate(structured bool) {
	f.read(4) // client flags
	if structured {
		f.optReply(f.option(), RepAck, nil)
	}
	opt := f.option()
	info := binary.BigEndian.AppendUint16(nil, InfoExport)
	info = binary.BigEndian.AppendUint64(info, 1<<20)
	info = binary.BigEndian.AppendUint16(info, TFlagHasFlags|TFlagSendFlush)
	f.optReply(opt, RepInfo, info)
	f.optReply(opt, RepAck, nil)
}

// request reads one request header: type and cookie.
func (f *fake) request() (uint16, uint64, uint32) {
	h := f.read(RequestHeaderLen)
	typ, n := binary.BigEndian.Uint16(h[6:]), binary.BigEndian.Uint32(h[24:])
	if typ == CmdWrite {
		f.read(int(n))
	}
	return typ, binary.BigEndian.Uint64(h[8:]), n
}

func (f *fake) simple(cookie uint64, errno uint32, data []byte) {
	b := binary.BigEndian.AppendUint32(nil, MagicSimple)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint64(b, cookie)
	f.write(append(b, data...))
}

func (f *fake) chunk(cookie uint64, flags, typ uint16, payload []byte) {
	b := binary.BigEndian.AppendUint32(nil, MagicStructured)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	f.write(append(b, payload...))
}

// A structured READ comes back as data and a hole, assembled; a simple
// error reply carries its errno.
func TestNegotiateAndStructuredRead(t *testing.T) {
	c := serve(t, func(f *fake) {
		f.negotiate(true)
		_, cookie, _ := f.request()
		f.chunk(cookie, 0, ChunkOffsetData, append(binary.BigEndian.AppendUint64(nil, 0), "abcd"...))
		f.chunk(cookie, ReplyFlagDone, ChunkOffsetHole, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, 4), 4))
		_, cookie, _ = f.request()
		msg := "no"
		p := binary.BigEndian.AppendUint32(nil, EIO)
		p = append(binary.BigEndian.AppendUint16(p, uint16(len(msg))), msg...)
		f.chunk(cookie, ReplyFlagDone, ChunkError, p)
		if typ, _, _ := f.request(); typ != CmdDisc {
			t.Errorf("request %d, want DISC", typ)
		}
	})
	info := c.Negotiate(Negotiation{Export: "x", Structured: true})
	if info.Size != 1<<20 || c.Size != 1<<20 || !c.Structured {
		t.Fatalf("GO: %+v", info)
	}
	if got := c.Read(0, 8); !bytes.Equal(got, []byte("abcd\x00\x00\x00\x00")) {
		t.Fatalf("read %q", got)
	}
	r := c.Do(0, CmdFlush, 0, 0, nil)
	if r.Errno != EIO || r.Msgs[0].ErrorMessage() != "no" {
		t.Fatalf("flush: %v", r)
	}
	c.Disconnect()
}

// READ replies that break proto.md's rules are errors.
func TestAssembleReadRules(t *testing.T) {
	data := func(at uint64, s string) Msg {
		return Msg{Type: ChunkOffsetData, Payload: append(binary.BigEndian.AppendUint64(nil, at), s...)}
	}
	for _, tc := range []struct {
		msgs []Msg
		want string
	}{
		{[]Msg{data(0, "abcd"), data(2, "cdef")}, "overlap"},
		{[]Msg{data(0, "abcdefghi")}, "outside"},
		{[]Msg{data(0, "abc")}, "cover 3 of 8"},
		{[]Msg{data(0, "abcdefgh"), {Type: ChunkError, Payload: []byte{0, 0, 0, 5, 0, 0}}}, "also carries"},
	} {
		if _, err := assembleRead(0, 8, tc.msgs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.msgs, err, tc.want)
		}
	}
	if err := CheckChunk(Msg{Type: ChunkOffsetHole, Payload: make([]byte, 12)}); err == nil {
		t.Error("a hole of length 0 passed")
	}
}

// Pipelined: the answered call succeeds, an error reply is an Errno, and
// the call in flight when the connection dies fails with its error.
func TestPipelinedCallsAndHangUp(t *testing.T) {
	c := serve(t, func(f *fake) {
		f.negotiate(false)
		_, c1, _ := f.request()
		_, c2, _ := f.request()
		f.request()
		f.simple(c2, ENOSPC, nil)
		f.simple(c1, 0, []byte("wxyz"))
	})
	c.Negotiate(Negotiation{Export: "x"})
	c.Pipeline()
	read := c.Submit(0, CmdRead, 0, 4, nil)
	write := c.Submit(0, CmdWrite, 0, 4, []byte("1234"))
	flush := c.Submit(0, CmdFlush, 0, 0, nil)
	if err := read.Wait(); err != nil || string(read.Data()) != "wxyz" {
		t.Fatalf("read: %v %q", err, read.Data())
	}
	var errno Errno
	if err := write.Wait(); !errors.As(err, &errno) || errno != ENOSPC {
		t.Fatalf("write: %v, want ENOSPC", err)
	}
	if err := flush.Wait(); err == nil || flush.Reply != nil {
		t.Fatalf("flush on a connection the server closed: %v", err)
	}
	select {
	case <-c.Stopped():
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not stop")
	}
	if late := c.Submit(0, CmdFlush, 0, 0, nil); late.Wait() == nil {
		t.Fatal("a call after the connection died succeeded")
	}
}

// A call that gets no answer gives up after the client's Timeout.
func TestWaitGivesUp(t *testing.T) {
	hold := make(chan struct{})
	c := serve(t, func(f *fake) {
		f.negotiate(false)
		f.request()
		<-hold
	})
	defer close(hold)
	c.Negotiate(Negotiation{Export: "x"})
	c.Timeout = 50 * time.Millisecond
	c.Pipeline()
	start := time.Now()
	if err := c.Submit(0, CmdFlush, 0, 0, nil).Wait(); err == nil || !strings.Contains(err.Error(), "no reply within") {
		t.Fatalf("Wait: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Wait took %v", d)
	}
}
