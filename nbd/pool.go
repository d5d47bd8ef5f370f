package nbd

import (
	"math/bits"
	"sync"
)

// Buffers for payloads and read data come from size-class pools (powers of
// two from 4 KiB), so a connection streaming requests allocates nothing per
// request once warm.
const (
	minClassShift = 12
	numClasses    = 26 - minClassShift + 1 // up to 64 MiB
)

var bufPools [numClasses]sync.Pool

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// getBuf returns a buffer of length n. Sizes past the largest class are
// allocated and never pooled.
func getBuf(n int) *[]byte {
	c := classOf(n)
	if c >= numClasses {
		b := make([]byte, n)
		return &b
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	c := classOf(cap(*p))
	if c >= numClasses || cap(*p) != 1<<(c+minClassShift) {
		return
	}
	bufPools[c].Put(p)
}
