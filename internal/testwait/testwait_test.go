package testwait

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestRecvAndSend(t *testing.T) {
	ch := make(chan int)
	go func() { ch <- 7 }()
	if v := Recv(t, ch, "seven"); v != 7 {
		t.Fatalf("got %d", v)
	}
	go func() { <-ch }()
	Send(t, ch, 8, "a reader")
}

// A wait that never ends fails the test in time, saying what it was.
func TestRecvTimesOut(t *testing.T) {
	var msg string
	ft := &fakeT{TB: t, fatal: func(s string) { msg = s }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RecvWithin(ft, make(chan int), 10*time.Millisecond, "nothing")
	}()
	<-done
	if want := "timed out after 10ms waiting for nothing"; msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
}

func TestGateOpensAtCleanup(t *testing.T) {
	var gate chan struct{}
	t.Run("ends", func(t *testing.T) {
		var open func()
		gate, open = Gate(t)
		open()
		open() // twice: no panic
		gate, _ = Gate(t)
	})
	select {
	case <-gate:
	default:
		t.Fatal("the gate is still shut after its test ended")
	}
}

// fakeT records Fatalf and ends the goroutine as testing.T does.
type fakeT struct {
	testing.TB
	fatal func(string)
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
