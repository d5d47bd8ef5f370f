package metrics

import (
	"sync"
	"time"
)

// Rates turns counter samples into OVS statistics objects: each counter,
// its *_ps rate and a timestamp, computed as OpenvStorage's
// VDisk.calculate_delta does (reference/mgmt.md §1):
//
//   - the rate is the counter's change since the previous sample of the
//     same object over the seconds between them, never negative (a counter
//     reset gives 0);
//   - with no previous sample, or one older than PreviousTTL, it is 0;
//   - a second read at the same instant repeats the previous rates;
//   - the whole object is cached for CacheFor, so reads in quick
//     succession see one answer and rates span at least CacheFor.
//
// The clock is injected; nothing here does I/O.
type Rates struct {
	Now         func() time.Time
	CacheFor    time.Duration // OVS: 4 s
	PreviousTTL time.Duration // OVS: 10 × CacheFor

	mu     sync.Mutex
	last   map[string]stats // per object: the last answer
	pruned time.Time
}

type stats struct {
	at  time.Time
	obj map[string]float64 // counters, rates and timestamp
}

// NewRates returns OVS's timings on the given clock (nil: time.Now).
func NewRates(now func() time.Time) *Rates {
	if now == nil {
		now = time.Now
	}
	return &Rates{Now: now, CacheFor: 4 * time.Second, PreviousTTL: 40 * time.Second, last: map[string]stats{}}
}

// Statistics returns the statistics object of key for counters (read
// only if the cached answer has expired).
func (r *Rates) Statistics(key string, counters func() map[string]float64) map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.Now()
	prev, havePrev := r.last[key]
	if havePrev && now.Sub(prev.at) >= 0 && now.Sub(prev.at) < r.CacheFor {
		return clone(prev.obj)
	}
	if havePrev && now.Sub(prev.at) > r.PreviousTTL {
		havePrev = false
	}
	cur := counters()
	obj := make(map[string]float64, 2*len(cur)+1)
	dt := now.Sub(prev.at).Seconds()
	for k, v := range cur {
		obj[k] = v
		var ps float64
		switch {
		case !havePrev || dt < 0:
		case dt == 0:
			ps = prev.obj[k+"_ps"]
		default:
			ps = max(0, (v-prev.obj[k])/dt)
		}
		obj[k+"_ps"] = ps
	}
	obj["timestamp"] = float64(now.UnixNano()) / 1e9
	r.last[key] = stats{at: now, obj: obj}
	r.pruneLocked(now)
	return clone(obj)
}

// Forget drops an object's history (a destroyed vDisk).
func (r *Rates) Forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, key)
}

// pruneLocked drops histories too old to matter, at most once per TTL.
func (r *Rates) pruneLocked(now time.Time) {
	if now.Sub(r.pruned) < r.PreviousTTL {
		return
	}
	r.pruned = now
	for k, s := range r.last {
		if now.Sub(s.at) > r.PreviousTTL {
			delete(r.last, k)
		}
	}
}

func clone(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
