package mgmt

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// One sampler tick when a spec's ALL predicate matches every vDisk: its
// cost grows with the vDisks matched (each read once, every point of the
// tick one batch), not with anything else.
//
//	go test -run '^$' -bench BenchmarkStatsTick -benchtime 20x ./mgmt
func BenchmarkStatsTick(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("vdis=%d", n), func(b *testing.B) {
			e := newEnv(b)
			seedVDIs(e, n)
			sid := e.session("admin", adminPassword)
			e.vsphereOK(http.StatusCreated, "POST", "/api/stats/acq-specs", sid, map[string]any{
				"counters":  map[string]any{"set_id": "vdisk-io"},
				"resources": []any{map[string]any{"type": "VDISK", "predicate": "ALL", "id_value": "*"}}, "interval": 1}, nil)
			for b.Loop() {
				e.advance(time.Second)
				if err := e.s.stats.Tick(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/vdisk")
		})
	}
}
