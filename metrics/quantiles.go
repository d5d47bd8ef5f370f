package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// LatencyQuantiles returns a reader of NBD request latency quantiles: at
// each call, for each command in cmds and quantile in qs, the quantile of
// the requests answered since the previous call, named by name, estimated
// within vdiskd_nbd_request_duration_seconds' buckets as Prometheus'
// histogram_quantile does (0 when there were none). It reads the
// histogram alone, not the whole registry.
func (m *NBDMetrics) LatencyQuantiles(cmds []string, qs []float64, name func(cmd string, q float64) string) func() map[string]float64 {
	var mu sync.Mutex
	prev := map[string][]uint64{} // per command: cumulative bucket counts, +Inf last
	return func() map[string]float64 {
		mu.Lock()
		defer mu.Unlock()
		now := m.buckets()
		out := map[string]float64{}
		for i, cmd := range cmds {
			cur, ok := now[cmd]
			if !ok {
				out[name(cmd, qs[i])] = 0
				continue
			}
			delta := make([]uint64, len(cur.counts))
			for j, c := range cur.counts {
				if p := prev[cmd]; j < len(p) && p[j] <= c {
					delta[j] = c - p[j]
				} else {
					delta[j] = c
				}
			}
			out[name(cmd, qs[i])] = quantile(qs[i], cur.bounds, delta)
		}
		for cmd, b := range now {
			prev[cmd] = b.counts
		}
		return out
	}
}

type bucketCounts struct {
	bounds []float64 // upper bounds, without +Inf
	counts []uint64  // cumulative, one per bound, then the total
}

// buckets reads the latency histogram of every command.
func (m *NBDMetrics) buckets() map[string]bucketCounts {
	ch := make(chan prometheus.Metric, 32)
	go func() {
		m.latencyVec.Collect(ch)
		close(ch)
	}()
	out := map[string]bucketCounts{}
	for metric := range ch {
		var d dto.Metric
		if metric.Write(&d) != nil || d.Histogram == nil {
			continue
		}
		cmd := ""
		for _, l := range d.Label {
			if l.GetName() == "command" {
				cmd = l.GetValue()
			}
		}
		var b bucketCounts
		for _, bk := range d.Histogram.Bucket {
			b.bounds = append(b.bounds, bk.GetUpperBound())
			b.counts = append(b.counts, bk.GetCumulativeCount())
		}
		b.counts = append(b.counts, d.Histogram.GetSampleCount())
		out[cmd] = b
	}
	return out
}

// quantile estimates quantile q from cumulative bucket counts (the last
// is the total, the +Inf bucket): linear within the bucket the rank falls
// in, the highest finite bound when it falls past them.
func quantile(q float64, bounds []float64, cum []uint64) float64 {
	total := cum[len(cum)-1]
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, ub := range bounds {
		if float64(cum[i]) >= rank {
			in := cum[i] - below
			if in == 0 {
				return ub
			}
			return lower + (ub-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = ub, cum[i]
	}
	return bounds[len(bounds)-1]
}
