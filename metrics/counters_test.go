package metrics

import (
	"sync"
	"testing"
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
