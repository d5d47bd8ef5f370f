package mgmt

import (
	"maps"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/datadir"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// sampleOf reads a vDisk's counters: the client's, counted by the NBD
// exports, and the block store's.
func (s *Server) sampleOf(id string) metrics.Sample {
	sm := s.opts.Counters.Sample(id)
	if io, err := s.store.IOStats(id); err == nil {
		sm.BackendReads, sm.BackendReadBytes = io.BackendReads, io.BackendReadBytes
		sm.BackendWrites, sm.BackendWriteBytes = io.BackendWrites, io.BackendWriteBytes
		sm.IndexHits, sm.IndexMisses = io.IndexHits, io.IndexMisses
		sm.CacheHits, sm.CacheMisses = io.CacheHits, io.CacheMisses
	}
	return sm
}

// forgetCounters drops a destroyed vDisk's counters and rate history, so
// its series leave the exposition with it.
func (s *Server) forgetCounters(id string) {
	s.opts.Counters.Remove(id)
	if s.rest != nil {
		s.rest.Forget(id)
	}
}

// MetricSources are the vDisk and vPool lists the Prometheus exposition
// reads at each scrape.
func (s *Server) MetricSources() (disks func() []metrics.DiskInfo, pools func() []metrics.PoolInfo) {
	disks = func() []metrics.DiskInfo {
		var out []metrics.DiskInfo
		s.vols.Each(func(v *volume.Volume) {
			if v.Info.Kind == blockstore.KindCBTMetadata {
				return
			}
			out = append(out, metrics.DiskInfo{ID: v.Info.ID, Pool: v.Info.Pool, Name: v.Attrs.Xen.NameLabel,
				VirtualSize: v.Info.Size})
		})
		for i := range out {
			out[i].PhysicalUtilisation, _ = s.store.PhysicalUtilisation(out[i].ID)
			out[i].Sample = s.sampleOf(out[i].ID)
		}
		return out
	}
	pools = func() []metrics.PoolInfo {
		// Not the REST surface's vPool record: that samples the vPool's
		// statistics, and a scrape must not move the REST rates' history.
		var out []metrics.PoolInfo
		for _, p := range s.vols.Pools() {
			out = append(out, metrics.PoolInfo{GUID: p.GUID, Name: p.Name, Size: uint64(p.Size)})
		}
		for i := range out {
			if out[i].Size == 0 {
				out[i].Size = uint64(datadir.FilesystemSize(s.opts.DataDir))
			}
			out[i].StoredData, _ = s.store.PoolUsage(out[i].GUID)
		}
		return out
	}
	return disks, pools
}

// ReplicationMetrics are the replication relations the exposition reads
// at each scrape.
func (s *Server) ReplicationMetrics() func() []metrics.ReplicationInfo {
	return func() []metrics.ReplicationInfo {
		var out []metrics.ReplicationInfo
		for _, rel := range s.replications.List() {
			st, p := s.replicator.Status(rel, s.peerState)
			out = append(out, metrics.ReplicationInfo{Seq: rel.Seq, VPool: rel.VPool, DstZone: rel.DstZone,
				State: st.State, LagSeconds: st.Lag.Seconds(), ShippedBytes: p.Bytes})
		}
		return out
	}
}

// statsMetrics are the OVS counters vStats offers on vDisks and vPools.
func statsMetrics() []stats.Metric {
	out := make([]stats.Metric, len(metrics.Keys))
	for i, k := range metrics.Keys {
		out[i] = stats.Metric{Name: k.Name, Unit: k.Unit, Doc: k.Doc}
	}
	return out
}

// statsResources lists vStats' resources of a type: the vDisks (not the
// CBT-metadata-only ones, as the exposition), the vPools, this daemon.
func (s *Server) statsResources(rtype string) []string {
	var out []string
	switch rtype {
	case stats.TypeVDisk:
		s.vols.Each(func(v *volume.Volume) {
			if v.Info.Kind != blockstore.KindCBTMetadata {
				out = append(out, v.Info.ID)
			}
		})
	case stats.TypeVPool:
		for _, p := range s.vols.Pools() {
			out = append(out, p.GUID)
		}
	case stats.TypeNode:
		out = []string{s.node.GUID}
	}
	return out
}

// statsRead is a resource's counters for vStats: the statistics objects
// the REST surface answers (their *_ps rates, one rate history), with the
// counters read now rather than from the object's 4 s cache, so a sample
// holds what was counted at its second; or the node's NBD latencies.
func (s *Server) statsRead(rtype, id string, rates bool) (map[string]float64, bool) {
	switch rtype {
	case stats.TypeVDisk:
		v, err := s.vols.Lookup(id)
		if err != nil || v.Info.Kind == blockstore.KindCBTMetadata {
			return nil, false
		}
		if !rates {
			return s.sampleOf(id).OVS(), true
		}
		return fresh(s.rest.VDiskStatistics(id), s.sampleOf(id)), true
	case stats.TypeVPool:
		p, err := s.vols.Pool(id, "vPool")
		if err != nil || p.GUID != id {
			return nil, false
		}
		var sum metrics.Sample
		for _, m := range s.vols.PoolMembers(id) {
			sum = sum.Add(s.sampleOf(m))
		}
		if !rates {
			return sum.OVS(), true
		}
		return fresh(s.rest.VPoolStatistics(id), sum), true
	case stats.TypeNode:
		if id != s.node.GUID {
			return nil, false
		}
		out := map[string]float64{}
		if s.opts.NodeCounters != nil {
			maps.Copy(out, s.opts.NodeCounters())
		}
		// Every counter answers: 0 when nothing was measured.
		cmds, qs := stats.NBDQuantiles()
		for i := range cmds {
			if m := stats.NBDQuantileMetric(cmds[i], qs[i]); !hasKey(out, m) {
				out[m] = 0
			}
		}
		return out, true
	}
	return nil, false
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

// fresh is a statistics object with its counters replaced by sample's.
func fresh(obj map[string]float64, sample metrics.Sample) map[string]float64 {
	out := maps.Clone(obj)
	maps.Copy(out, sample.OVS())
	return out
}
