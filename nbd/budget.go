package nbd

import (
	"container/list"
	"sync"
	"time"
)

// budget bounds what a connection holds in flight: requests and bytes.
// The reader waits on it, so a client that floods the server stops being
// read rather than growing memory.
type budget struct {
	mu      sync.Mutex
	cond    sync.Cond
	n, max  int
	b, maxB int64
}

func (b *budget) init(maxN int, maxB int64) {
	b.cond.L = &b.mu
	b.max, b.maxB = maxN, maxB
}

func (b *budget) acquire(cost int64) {
	b.mu.Lock()
	for b.n >= b.max || (b.n > 0 && b.b+cost > b.maxB) {
		b.cond.Wait()
	}
	b.n++
	b.b += cost
	b.mu.Unlock()
}

func (b *budget) release(cost int64) {
	b.mu.Lock()
	b.n--
	b.b -= cost
	b.mu.Unlock()
	b.cond.Signal()
}

// inFlight is how many requests are in flight or have replies unsent.
func (b *budget) inFlight() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// busy reports whether requests are in flight or their replies unsent:
// a client waiting on us is not idle.
func (b *budget) busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n > 0
}

// sharedBudget bounds the bytes every connection together holds in
// flight (Options.MaxTotalInFlightBytes): without it, the per-connection
// bound times the number of connections is the only limit (128 MiB x
// 1024). A reader that would go over waits, first come first served, so
// a 32 MiB write is not starved by a stream of 4 KiB ones. A request
// larger than the whole budget runs alone.
type sharedBudget struct {
	mu        sync.Mutex
	used, max int64
	waiters   list.List // of *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

func (b *sharedBudget) fits(n int64) bool { return b.used+n <= b.max || b.used == 0 }

// acquire takes n bytes, waiting while they do not fit, and reports how
// long it waited (0 when it did not).
func (b *sharedBudget) acquire(n int64) time.Duration {
	n = min(n, b.max)
	b.mu.Lock()
	if b.waiters.Len() == 0 && b.fits(n) {
		b.used += n
		b.mu.Unlock()
		return 0
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters.PushBack(w)
	b.mu.Unlock()
	start := time.Now()
	<-w.ready
	return max(time.Since(start), time.Nanosecond)
}

// release returns n bytes and hands them to waiters in order.
func (b *sharedBudget) release(n int64) {
	n = min(n, b.max)
	b.mu.Lock()
	b.used -= n
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if !b.fits(w.n) {
			break
		}
		b.used += w.n
		b.waiters.Remove(e)
		close(w.ready)
	}
	b.mu.Unlock()
}
