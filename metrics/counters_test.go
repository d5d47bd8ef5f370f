package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/nbd"
)

// Concurrent adds from many goroutines lose nothing.
func TestCountersConcurrent(t *testing.T) {
	var c Counters
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Read(4096)
				c.Write(512)
			}
		}()
	}
	wg.Wait()
	want := Sample{ReadOps: 8000, ReadBytes: 8000 * 4096, WriteOps: 8000, WriteBytes: 8000 * 512}
	if got := c.Sample(); got != want {
		t.Fatalf("sample %+v, want %+v", got, want)
	}
	ovs := want.Add(want).OVS()
	if ovs["operations"] != 32000 || ovs["data_transferred"] != 2*8000*(4096+512) || ovs["cache_hits"] != 0 {
		t.Fatalf("derived sums: %v", ovs)
	}
}

// BenchmarkCountersRead is the cost the I/O path pays per request: no
// allocation, a couple of atomic adds (run with -cpu 1,2 to see the
// contended case).
func BenchmarkCountersRead(b *testing.B) {
	var c Counters
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Read(4096)
		}
	})
}

// Keys documents exactly the keys Sample.OVS answers.
func TestKeysAreTheOVSKeys(t *testing.T) {
	ovs := Sample{}.OVS()
	if len(Keys) != len(ovs) {
		t.Fatalf("%d documented keys, %d OVS keys", len(Keys), len(ovs))
	}
	for _, k := range Keys {
		if _, ok := ovs[k.Name]; !ok || k.Doc == "" || (k.Unit != "NUMBER" && k.Unit != "BYTE") {
			t.Errorf("key %+v: not an OVS key, or undocumented", k)
		}
	}
}

// Latency quantiles cover the requests since the previous reading, and
// fall in the bucket the rank is in.
func TestLatencyQuantiles(t *testing.T) {
	e := NewExposition(Sources{})
	read := e.NBD.LatencyQuantiles([]string{"read", "read", "write"}, []float64{0.5, 0.99, 0.5},
		func(cmd string, q float64) string { return fmt.Sprintf("%s_%v", cmd, q) })
	for range 98 {
		e.NBD.RequestDone(nbd.Commands[0], 15*time.Microsecond, 0) // read: bucket (10 µs, 20 µs]
	}
	for range 2 {
		e.NBD.RequestDone(nbd.Commands[0], 900*time.Millisecond, 0) // read: bucket (655 ms, 1.3 s]
	}
	got := read()
	if p50 := got["read_0.5"]; p50 <= 10e-6 || p50 > 20e-6 {
		t.Errorf("read p50 %v, want within (10 µs, 20 µs]", p50)
	}
	if p99 := got["read_0.99"]; p99 <= 0.655 || p99 > 1.311 {
		t.Errorf("read p99 %v, want within (655 ms, 1.31 s]", p99)
	}
	if w := got["write_0.5"]; w != 0 {
		t.Errorf("write p50 %v with no writes", w)
	}
	// The next reading sees only what came after.
	e.NBD.RequestDone(nbd.Commands[0], 900*time.Millisecond, 0)
	if p50 := read()["read_0.5"]; p50 <= 0.655 {
		t.Errorf("read p50 of the one later request %v", p50)
	}
}
