package mgmt

import (
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// vdiskStatistics is a vDisk's OVS statistics object.
func (s *Server) vdiskStatistics(id string) api.Statistics {
	return s.rates.Statistics("vdisk:"+id, func() map[string]float64 {
		return s.opts.Counters.Sample(id).OVS()
	})
}

// vpoolStatistics sums the raw counters of every volume in the pool and
// keeps the vPool's own rate history, as OVS does since 2016 (summing the
// vDisks' rates would mix samples taken at different times).
func (s *Server) vpoolStatistics(pool string, vols []blockstore.VolumeInfo) api.Statistics {
	return s.rates.Statistics("vpool:"+pool, func() map[string]float64 {
		var sum metrics.Sample
		for _, v := range vols {
			if v.Pool == pool {
				sum = sum.Add(s.opts.Counters.Sample(v.ID))
			}
		}
		return sum.OVS()
	})
}

// forgetCounters drops a destroyed vDisk's counters and rate history, so
// its series leave the exposition with it.
func (s *Server) forgetCounters(id string) {
	s.opts.Counters.Remove(id)
	s.rates.Forget("vdisk:" + id)
}
