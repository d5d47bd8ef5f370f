package nbd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// The in-process server harness: a Server on socket pairs over memExports,
// its clients from nbdtest, and the checks every test ends with.

// ---- listener and socket pairs ----

// chanListener hands Serve the server ends of socket pairs made by dial.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.UnixAddr{Name: "pair", Net: "unix"} }

// socketPair returns two connected unix stream sockets; they support
// deadlines and CloseWrite.
func socketPair() (a, b *net.UnixConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	mk := func(fd int) (*net.UnixConn, error) {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	if a, err = mk(fds[0]); err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	if b, err = mk(fds[1]); err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// ---- goroutine leak checks ----

// leakCheck returns a function that fails t if more goroutines run than
// when leakCheck was called, after giving exiting ones a moment.
func leakCheck(t testing.TB) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d running, %d before\n%s", n, before, buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// ---- server harness ----

type testServer struct {
	t        testing.TB
	srv      *Server
	ln       *chanListener
	exp      *memExports
	serveErr chan error
	stopped  bool
}

// testLogger logs to t when NBD_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NBD_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// defaultExports makes the exports most tests use: "disk" (writable,
// 16 MiB, base:allocation and the dirty bitmap), "ro" (read-only 1 MiB),
// "small" (1 MiB + 512: an unaligned size), and "" (the default, 1 MiB).
func defaultExports() *memExports {
	m := newMemExports()
	ctxs := []string{"base:allocation", dirtyContext, "qemu:dirty-bitmap:b1"}
	m.add("disk", 16<<20, ExportInfo{Description: "a test disk", MetaContexts: ctxs})
	m.add("ro", 1<<20, ExportInfo{ReadOnly: true, Description: "read-only", MetaContexts: ctxs[:1]})
	m.add("small", 1<<20+512, ExportInfo{MetaContexts: ctxs[:1]})
	m.add("", 1<<20, ExportInfo{Description: "default"})
	return m
}

// newTestServer serves exp (defaultExports when nil) and shuts the server
// down at the end of the test, checking that Serve returned
// ErrServerClosed, every opened export was closed once and no goroutine
// was left behind.
func newTestServer(t testing.TB, exp *memExports, mod func(*Options)) *testServer {
	t.Helper()
	leaks := leakCheck(t)
	if exp == nil {
		exp = defaultExports()
	}
	o := Options{Exports: exp, Logger: testLogger(t), HandshakeTimeout: 30 * time.Second}
	if mod != nil {
		mod(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, ln: newChanListener(), exp: exp, serveErr: make(chan error, 1)}
	go func() { ts.serveErr <- srv.Serve(ts.ln) }()
	t.Cleanup(func() {
		ts.stop()
		exp.checkClosed(t)
		if n := srv.budget.inUse(); n != 0 {
			t.Errorf("%d bytes of the server-wide budget still held after Shutdown", n)
		}
		leaks()
	})
	return ts
}

// stop shuts the server down (once) and checks Serve's result.
func (ts *testServer) stop() {
	ts.t.Helper()
	if ts.stopped {
		return
	}
	ts.stopped = true
	if err := shutdownWithin(ts.srv, 20*time.Second); err != nil {
		ts.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-ts.serveErr:
		if !errors.Is(err, ErrServerClosed) {
			ts.t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	case <-time.After(testwait.Limit):
		ts.t.Error("Serve did not return after Shutdown")
	}
}

// errShutdownStuck is shutdownWithin's error when Shutdown does not return.
var errShutdownStuck = errors.New("Shutdown did not return: a backend call is still blocked (a gate left shut?)")

// shutdownWithin runs Shutdown with a context that ends after d, and
// gives up on it testwait.Limit later: Shutdown waits for backend calls in
// flight whatever its context says, and a test must not hang on one.
func shutdownWithin(srv *Server, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d + testwait.Limit):
		return errShutdownStuck
	}
}

// rawConn connects a new client socket to the server.
func (ts *testServer) rawConn() *net.UnixConn {
	ts.t.Helper()
	a, b, err := socketPair()
	if err != nil {
		ts.t.Fatal(err)
	}
	testwait.Send(ts.t, ts.ln.conns, net.Conn(b), "the server to accept")
	ts.t.Cleanup(func() { a.Close() })
	return a
}

// dial connects a client and reads the server's greeting.
func (ts *testServer) dial() *nbdtest.Client {
	ts.t.Helper()
	c := nbdtest.NewClient(ts.t, ts.rawConn())
	c.Hello()
	return c
}

// connect negotiates the usual way: flags, STRUCTURED_REPLY (if sr), the
// given contexts, GO asking for BLOCK_SIZE (if blockSize).
func (ts *testServer) connect(name string, sr, blockSize bool, contexts ...string) *nbdtest.Client {
	ts.t.Helper()
	c := ts.dial()
	c.Negotiate(nbdtest.Negotiation{Export: name, Structured: sr, MetaContexts: contexts, BlockSize: blockSize})
	return c
}
