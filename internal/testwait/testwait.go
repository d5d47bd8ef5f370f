// Package testwait bounds the waits of tests. A test that waits on a
// channel, a condition or a blocked call with nothing to end the wait
// hangs until go test's -timeout when it fails (minutes, with every
// goroutine's stack instead of the failure); with these helpers it fails
// within Limit, saying what it was waiting for.
//
// Gate is for tests that block a backend call on purpose: its opener also
// runs at the end of the test, so a test that fails while calls are held
// does not leave them holding up the cleanups that wait for them.
package testwait

import (
	"sync"
	"testing"
	"time"
)

// Limit is how long one wait lasts before the test fails.
const Limit = 10 * time.Second

// Recv receives from ch, failing t if nothing comes within Limit.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	return RecvWithin(t, ch, Limit, what)
}

// RecvWithin receives from ch, failing t if nothing comes within d.
func RecvWithin[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable") // Fatalf does not return
	}
}

// Send sends v on ch, failing t if nobody takes it within Limit.
func Send[T any](t testing.TB, ch chan<- T, v T, what string) {
	t.Helper()
	timer := time.NewTimer(Limit)
	defer timer.Stop()
	select {
	case ch <- v:
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", Limit, what)
	}
}

// Until polls cond every millisecond, failing t if it is not true within
// Limit.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Limit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Gate returns a gate for calls a test holds (they receive from it) and
// its opener, which closes it once however often it runs. The opener is
// also registered with t.Cleanup. Cleanups run last first, so make the
// gate after whatever waits at cleanup for the calls it holds (a server
// whose Shutdown waits for its requests, a store whose Close waits for
// its writes): the gate then opens before that cleanup runs.
func Gate(t testing.TB) (chan struct{}, func()) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	return gate, open
}
