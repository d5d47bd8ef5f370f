package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// server runs a real NBD server for the test on a free loopback port:
// nbdkit's memory plugin, or qemu-nbd on a raw file.
func server(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var cmd *exec.Cmd
	switch name {
	case "nbdkit":
		vdiskdtest.RequireTool(t, "nbdkit")
		cmd = exec.Command("nbdkit", "-f", "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-e", "disk", "memory", "64M")
	case "qemu-nbd":
		vdiskdtest.RequireTool(t, "qemu-nbd", "qemu-img")
		img := t.TempDir() + "/disk.raw"
		if out, err := exec.Command("qemu-img", "create", "-f", "raw", img, "64M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		cmd = exec.Command("qemu-nbd", "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-x", "disk", "-f", "raw", "--shared=8", "--persistent", img)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testwait.Until(t, name+" listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func dial(t *testing.T, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, "disk", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The client against real servers: size, pipelined writes from many
// goroutines, FUA, flush, reads, an error reply, and a closed connection.
func TestAgainstRealServers(t *testing.T) {
	for _, name := range []string{"nbdkit", "qemu-nbd"} {
		t.Run(name, func(t *testing.T) {
			addr := server(t, name)
			c := dial(t, addr)
			if c.Size() != 64<<20 || c.ReadOnly() {
				t.Fatalf("size %d, read-only %v", c.Size(), c.ReadOnly())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			block := func(i int) []byte { return bytes.Repeat([]byte{byte(i%251 + 1)}, 64<<10) }
			var wg sync.WaitGroup
			errs := make(chan error, 256)
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < 256; i += 8 {
						errs <- c.WriteAt(ctx, block(i), uint64(i)<<16, i%16 == 0)
					}
				}(w)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// A second connection sees every acknowledged write.
			c2 := dial(t, addr)
			buf := make([]byte, 64<<10)
			for i := 0; i < 256; i += 37 {
				if err := c2.ReadAt(ctx, buf, uint64(i)<<16); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, block(i)) {
					t.Fatalf("block %d reads back other data", i)
				}
			}
			// Past the end: the server's error, typed; the connection lives on.
			var e *Error
			if err := c2.ReadAt(ctx, buf, c2.Size()); !errors.As(err, &e) || e.Errno == 0 {
				t.Fatalf("read past the end: %v", err)
			}
			if err := c2.ReadAt(ctx, buf[:512], 0); err != nil {
				t.Fatalf("after an error reply: %v", err)
			}
			c2.Close()
			if err := c2.ReadAt(ctx, buf, 0); !errors.Is(err, ErrClosed) {
				t.Fatalf("after Close: %v", err)
			}
		})
	}
}

// A server that goes away fails every waiting request at once, never
// leaving one hanging.
func TestServerGoneFailsWaiters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		// A minimal server: the handshake, then it reads requests and
		// hangs up without replying.
		hs := append([]byte("NBDMAGIC"), []byte("IHAVEOPT")...)
		hs = append(hs, 0, 3)
		conn.Write(hs)
		readN(conn, 4)            // client flags
		readN(conn, 16)           // option header
		n := readN(conn, 4)       // option length
		readN(conn, int(be32(n))) // option data
		rep := func(typ uint32, data []byte) {
			b := append([]byte{0, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9}, 0, 0, 0, 7)
			b = append(b, byte(typ>>24), byte(typ>>16), byte(typ>>8), byte(typ))
			l := len(data)
			b = append(b, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
			conn.Write(append(b, data...))
		}
		// NBD_INFO_EXPORT: 1 MiB, flags HAS_FLAGS|SEND_FLUSH.
		rep(3, []byte{0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 5})
		rep(1, nil)
		readN(conn, 28*3)
		conn.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, ln.Addr().String(), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- c.Flush(ctx) }()
	}
	for i := 0; i < 3; i++ {
		if err := testwait.Recv(t, errs, "a flush's answer"); err == nil {
			t.Fatal("a flush the server never answered succeeded")
		}
	}
}

func readN(c net.Conn, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(c, b)
	return b
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
