package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// storeCollector reads the vDisks, vPools and pebble at scrape time, so a
// destroyed vDisk's series vanish with it and nothing is kept per series.
type storeCollector struct{ src Sources }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	diskLabels = []string{"vpool", "vdisk"}

	descDiskInfo   = desc("vdiskd_vdisk_info", "A vDisk's name (always 1).", "vpool", "vdisk", "name")
	descReadOps    = desc("vdiskd_vdisk_read_operations_total", "NBD READ requests served.", diskLabels...)
	descReadBytes  = desc("vdiskd_vdisk_read_bytes_total", "Bytes NBD clients read.", diskLabels...)
	descWriteOps   = desc("vdiskd_vdisk_write_operations_total", "NBD WRITE requests served.", diskLabels...)
	descWriteBytes = desc("vdiskd_vdisk_write_bytes_total", "Bytes NBD clients wrote.", diskLabels...)
	descVirtual    = desc("vdiskd_vdisk_virtual_size_bytes", "A vDisk's virtual size.", diskLabels...)
	descPhysical   = desc("vdiskd_vdisk_physical_utilisation_bytes", "Bytes of data only this vDisk holds.", diskLabels...)

	descBackendReads      = desc("vdiskd_vdisk_backend_read_operations_total", "Pebble iterators opened for the vDisk's I/O.", diskLabels...)
	descBackendReadBytes  = desc("vdiskd_vdisk_backend_read_bytes_total", "Value bytes pebble returned for the vDisk.", diskLabels...)
	descBackendWrites     = desc("vdiskd_vdisk_backend_write_operations_total", "Pebble batches committed for the vDisk.", diskLabels...)
	descBackendWriteBytes = desc("vdiskd_vdisk_backend_write_bytes_total", "Bytes of pebble batches committed for the vDisk.", diskLabels...)
	descIndexHits         = desc("vdiskd_vdisk_metadata_store_hits_total", "4 KiB blocks reads found in the block index.", diskLabels...)
	descIndexMisses       = desc("vdiskd_vdisk_metadata_store_misses_total", "4 KiB blocks reads found in no layer (never written).", diskLabels...)
	descCacheHits2        = desc("vdiskd_vdisk_cluster_cache_hits_total", "Reads that loaded no sstable block from disk.", diskLabels...)
	descCacheMisses2      = desc("vdiskd_vdisk_cluster_cache_misses_total", "Reads that loaded an sstable block from disk.", diskLabels...)

	descPoolInfo   = desc("vdiskd_vpool_info", "A vPool's name (always 1).", "vpool", "name")
	descPoolSize   = desc("vdiskd_vpool_size_bytes", "A vPool's configured size (the filesystem's when unset).", "vpool")
	descPoolStored = desc("vdiskd_vpool_stored_data_bytes", "Bytes of data stored for a vPool's volumes.", "vpool")

	descCompactions  = desc("vdiskd_pebble_compactions_total", "Pebble compactions.")
	descFlushes      = desc("vdiskd_pebble_flushes_total", "Pebble memtable flushes.")
	descWriteAmp     = desc("vdiskd_pebble_write_amplification", "Pebble's write amplification over all levels.")
	descReadAmp      = desc("vdiskd_pebble_read_amplification", "Pebble's read amplification (sublevels and levels a read may visit).")
	descL0Files      = desc("vdiskd_pebble_l0_files", "Sstables in pebble's level 0.")
	descL0Sublevels  = desc("vdiskd_pebble_l0_sublevels", "Sublevels of pebble's level 0.")
	descCacheHits    = desc("vdiskd_pebble_block_cache_hits_total", "Pebble block cache hits.")
	descCacheMisses  = desc("vdiskd_pebble_block_cache_misses_total", "Pebble block cache misses.")
	descCacheSize    = desc("vdiskd_pebble_block_cache_bytes", "Bytes in pebble's block cache.")
	descWALWritten   = desc("vdiskd_pebble_wal_written_bytes_total", "Bytes pebble wrote to its WAL.")
	descDiskUsage    = desc("vdiskd_pebble_disk_usage_bytes", "Bytes pebble's files take on disk.")
	descMemtableSize = desc("vdiskd_pebble_memtable_bytes", "Bytes in pebble's memtables.")

	descSegFiles     = desc("vdiskd_segment_files", "Segment files holding block data.")
	descSegBytes     = desc("vdiskd_segment_bytes", "Bytes of block data written to segment files, live or not yet reclaimed.")
	descSegReclaimed = desc("vdiskd_segment_reclaimed_total", "Segment files reclaimed (live blocks moved, file removed).")
	descSegMoved     = desc("vdiskd_segment_moved_blocks_total", "Live 4 KiB blocks segment reclaim copied forward.")
	descSegDirect    = desc("vdiskd_segment_direct_bytes_total", "Bytes of segment data written or read past the page cache (O_DIRECT, --direct-io-min).", "op")

	descReplInfo    = desc("vdiskd_replication_info", "A replication relation (always 1): its vPool, backup zone and state.", "seq", "vpool", "dst_zone", "state")
	descReplLag     = desc("vdiskd_replication_lag_seconds", "Seconds since the relation's last completed round (0 before the first).", "seq")
	descReplShipped = desc("vdiskd_replication_shipped_bytes_total", "Bytes the relation shipped to its replicas.", "seq")
	descReplBroken  = desc("vdiskd_replication_broken", "1 while the relation is broken (its backup zone does not answer or a round failed).", "seq")
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskInfo, descReadOps, descReadBytes, descWriteOps, descWriteBytes,
		descVirtual, descPhysical, descBackendReads, descBackendReadBytes, descBackendWrites, descBackendWriteBytes,
		descIndexHits, descIndexMisses, descCacheHits2, descCacheMisses2, descPoolInfo, descPoolSize, descPoolStored, descCompactions, descFlushes,
		descWriteAmp, descReadAmp, descL0Files, descL0Sublevels, descCacheHits, descCacheMisses, descCacheSize,
		descWALWritten, descDiskUsage, descMemtableSize, descSegFiles, descSegBytes, descSegReclaimed, descSegMoved, descSegDirect,
		descReplInfo, descReplLag, descReplShipped, descReplBroken} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if c.src.Disks != nil {
		for _, d := range c.src.Disks() {
			s := d.Sample
			gauge(descDiskInfo, 1, d.Pool, d.ID, d.Name)
			counter(descReadOps, float64(s.ReadOps), d.Pool, d.ID)
			counter(descReadBytes, float64(s.ReadBytes), d.Pool, d.ID)
			counter(descWriteOps, float64(s.WriteOps), d.Pool, d.ID)
			counter(descWriteBytes, float64(s.WriteBytes), d.Pool, d.ID)
			gauge(descVirtual, float64(d.VirtualSize), d.Pool, d.ID)
			gauge(descPhysical, float64(d.PhysicalUtilisation), d.Pool, d.ID)
			counter(descBackendReads, float64(s.BackendReads), d.Pool, d.ID)
			counter(descBackendReadBytes, float64(s.BackendReadBytes), d.Pool, d.ID)
			counter(descBackendWrites, float64(s.BackendWrites), d.Pool, d.ID)
			counter(descBackendWriteBytes, float64(s.BackendWriteBytes), d.Pool, d.ID)
			counter(descIndexHits, float64(s.IndexHits), d.Pool, d.ID)
			counter(descIndexMisses, float64(s.IndexMisses), d.Pool, d.ID)
			counter(descCacheHits2, float64(s.CacheHits), d.Pool, d.ID)
			counter(descCacheMisses2, float64(s.CacheMisses), d.Pool, d.ID)
		}
	}
	if c.src.Pools != nil {
		for _, p := range c.src.Pools() {
			gauge(descPoolInfo, 1, p.GUID, p.Name)
			gauge(descPoolSize, float64(p.Size), p.GUID)
			gauge(descPoolStored, float64(p.StoredData), p.GUID)
		}
	}
	if c.src.Segments != nil {
		sg := c.src.Segments()
		gauge(descSegFiles, float64(sg.Files))
		gauge(descSegBytes, float64(sg.Bytes))
		counter(descSegReclaimed, float64(sg.Reclaimed))
		counter(descSegMoved, float64(sg.Moved))
		counter(descSegDirect, float64(sg.DirectWritten), "write")
		counter(descSegDirect, float64(sg.DirectRead), "read")
	}
	if c.src.Replications != nil {
		for _, r := range c.src.Replications() {
			seq := strconv.Itoa(r.Seq)
			gauge(descReplInfo, 1, seq, r.VPool, r.DstZone, r.State)
			gauge(descReplLag, r.LagSeconds, seq)
			counter(descReplShipped, float64(r.ShippedBytes), seq)
			broken := 0.0
			if r.State == "broken" {
				broken = 1
			}
			gauge(descReplBroken, broken, seq)
		}
	}
	if c.src.Pebble == nil {
		return
	}
	m := c.src.Pebble()
	if m == nil {
		return
	}
	counter(descCompactions, float64(m.Compact.Count))
	counter(descFlushes, float64(m.Flush.Count))
	total := m.Total()
	gauge(descWriteAmp, total.WriteAmp())
	gauge(descReadAmp, float64(m.ReadAmp()))
	gauge(descL0Files, float64(m.Levels[0].TablesCount))
	gauge(descL0Sublevels, float64(m.Levels[0].Sublevels))
	counter(descCacheHits, float64(m.BlockCache.Hits))
	counter(descCacheMisses, float64(m.BlockCache.Misses))
	gauge(descCacheSize, float64(m.BlockCache.Size))
	counter(descWALWritten, float64(m.WAL.BytesWritten))
	gauge(descDiskUsage, float64(m.DiskSpaceUsage()))
	gauge(descMemtableSize, float64(m.MemTable.Size))
}
