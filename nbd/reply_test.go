package nbd

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"github.com/vdiskd/vdiskd/internal/testwait"
)

// writeLog records each Write it gets.
type writeLog struct{ writes [][]byte }

func (l *writeLog) Write(p []byte) (int, error) {
	l.writes = append(l.writes, append([]byte(nil), p...))
	return len(p), nil
}

// A reply whose payload does not fit the buffer goes out after whatever
// replies are buffered before it, header first, whole and in order; one
// that fits stays in the buffer.
func TestReplyWriteOrder(t *testing.T) {
	var log writeLog
	w := bufio.NewWriterSize(&log, 64<<10)

	small := newReply(0)
	small.simple(0, 1)
	if err := small.writeTo(w, &log); err != nil {
		t.Fatal(err)
	}
	if len(log.writes) != 0 {
		t.Fatalf("a 16-byte reply was written at once (%d writes), want it buffered", len(log.writes))
	}

	big := newReply(0)
	big.data = getBuf(1 << 20)
	for i := range *big.data {
		(*big.data)[i] = byte(i / 4096)
	}
	big.chunk(replyFlagDone, chunkOffsetData, 2, uint32(8+1<<20), 0)
	big.addData(0, 1<<20)
	if err := big.writeTo(w, &log); err != nil {
		t.Fatal(err)
	}
	if w.Buffered() != 0 {
		t.Fatalf("%d bytes left in the buffer", w.Buffered())
	}

	var want bytes.Buffer
	want.Write(small.head)
	want.Write(big.head)
	want.Write(*big.data)
	if got := bytes.Join(log.writes, nil); !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the connection got %d bytes in %d writes, not the two replies in order", len(got), len(log.writes))
	}
	if len(log.writes[0]) != len(small.head) {
		t.Fatalf("first write %d bytes, want the buffered reply (%d) alone", len(log.writes[0]), len(small.head))
	}
	small.free()
	big.free()
}

// Over a real TCP connection, where net.Buffers writes with writev, a
// large reply arrives whole and in order.
func TestReplyWritevOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var all bytes.Buffer
		all.ReadFrom(c)
		got <- all.Bytes()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rep := newReply(0)
	rep.data = getBuf(512 << 10)
	for i := range *rep.data {
		(*rep.data)[i] = byte(i * 7)
	}
	rep.simple(0, 9)
	rep.addData(0, 512<<10)
	w := bufio.NewWriterSize(c, 256<<10)
	if err := rep.writeTo(w, c); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), rep.head...), *rep.data...)
	rep.free()
	c.Close()
	if b := testwait.Recv(t, got, "the peer to read the reply"); !bytes.Equal(b, want) {
		t.Fatalf("the peer read %d bytes, want the %d of the reply", len(b), len(want))
	}
}
