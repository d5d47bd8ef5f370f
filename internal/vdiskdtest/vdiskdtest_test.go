package vdiskdtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// (The daemon itself is exercised by cmd/vdiskd/systest and
// cmd/vdiskctl's end-to-end tests.)

func TestTail(t *testing.T) {
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if got, want := Tail(b.String(), 3), "(7 lines before)\nline 7\nline 8\nline 9"; got != want {
		t.Errorf("Tail(3) = %q, want %q", got, want)
	}
	if got := Tail("a\nb\n", 5); got != "a\nb" {
		t.Errorf("Tail(5) of two lines = %q", got)
	}
}

func TestBufferWaitFor(t *testing.T) {
	var b Buffer
	go func() {
		time.Sleep(20 * time.Millisecond)
		fmt.Fprintf(&b, "vdiskd ready\n")
	}()
	b.WaitFor(t, "ready", 10*time.Second)
}

func TestReadyLine(t *testing.T) {
	line := `time=2026-01-01T00:00:00Z level=INFO msg="vdiskd ready" api=http://127.0.0.1:41234/api nbd=nbd://127.0.0.1:10809 data=/x`
	m := readyLine.FindStringSubmatch(line)
	if m == nil || m[1] != "http://127.0.0.1:41234/api" || m[2] != "nbd://127.0.0.1:10809" {
		t.Fatalf("ready line: %q", m)
	}
}
