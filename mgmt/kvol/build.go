package kvol

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// namespace is kvol's attribute namespace on the volumes it makes.
const namespace = "kvol"

// made is what a volume kvol made says of itself: which job made it, and
// whether its copy is still filling it (a stop cut it; the job's next run
// fills it again).
type made struct {
	Rowkey      int64  `json:"rowkey"`
	Kind        string `json:"kind"`
	OrgZone     string `json:"org_zone"`
	OrgSnapshot string `json:"org_snapshot,omitempty"`
	OrgVolume   string `json:"org_volume,omitempty"`
	Filling     bool   `json:"filling,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs
	}
	return b
}

// surfaces are the attributes of j's volume: kvol's own, and the Cinder
// fields that make it dst-tenant's volume, bootable or not.
func (s *Service) surfaces(j *job, filling bool) map[string][]byte {
	return map[string][]byte{
		namespace: mustJSON(made{Rowkey: j.Rowkey, Kind: j.Kind, OrgZone: j.OrgZone, OrgSnapshot: j.OrgSnapshot,
			OrgVolume: j.OrgVolume, Filling: filling}),
		cinderapi.Namespace: mustJSON(cinderapi.VolumeAttrs{ProjectID: j.Tenant, UserID: j.By,
			AvailabilityZone: s.opts.Zone, Bootable: j.Bootable}),
	}
}

// madeBy finds the volume job rowkey made, if a run before a stop got
// that far, and whether its copy was still filling it.
func (s *Service) madeBy(rowkey int64) (id string, filling bool) {
	s.vols.Each(func(v *volume.Volume) {
		var m made
		if raw := v.Attrs.Surfaces[namespace]; raw != nil && json.Unmarshal(raw, &m) == nil && m.Rowkey == rowkey {
			id, filling = v.Info.ID, m.Filling
		}
	})
	return id, filling
}

// build makes j's volume: a clone of the replica snapshot when it is
// here, in the vPool asked for (nothing copied); else a new volume filled
// from it, over NBD when another zone holds it.
func (s *Service) build(ctx context.Context, j *job) (string, error) {
	id, filling := s.madeBy(j.Rowkey)
	if id != "" && !filling {
		return id, nil
	}
	j.NewVolume = id // a failure from here removes it
	if id == "" && j.SrcZone == s.opts.Zone && j.SrcVPool == j.DstPool {
		v, err := s.vols.CloneAs(j.SrcSnapshot, volume.Derivation{NameLabel: &j.Name, Surfaces: s.surfaces(j, false), By: j.By})
		if err != nil {
			return "", fmt.Errorf("cloning the replica snapshot %s: %w", j.SrcSnapshot, err)
		}
		return v.Info.ID, nil
	}
	var holder Zone
	for _, z := range s.opts.Zones() {
		if z.Name() == j.SrcZone {
			holder = z
		}
	}
	if holder == nil {
		return "", fmt.Errorf("zone %s, which holds the replica, is no longer a peer", j.SrcZone)
	}
	src, err := holder.Open(ctx, j.SrcSnapshot)
	if err != nil {
		return "", fmt.Errorf("reading the replica snapshot %s in zone %s: %w", j.SrcSnapshot, j.SrcZone, err)
	}
	defer src.Close()
	if id == "" {
		v, err := s.vols.Create(volume.CreateRequest{Pool: j.DstPool, Size: src.Size(),
			Xen: volume.XenAttrs{NameLabel: j.Name}, Surfaces: s.surfaces(j, true), By: j.By})
		if err != nil {
			return "", fmt.Errorf("creating the volume: %w", err)
		}
		id = v.Info.ID
	}
	j.NewVolume = id
	if err := s.save(*j); err != nil {
		return "", err
	}
	n, err := s.fill(ctx, id, src)
	if err != nil {
		return "", fmt.Errorf("copying the replica snapshot %s from zone %s: %w", j.SrcSnapshot, j.SrcZone, err)
	}
	if _, err := s.vols.SetSurface(id, namespace, s.surfaces(j, false)[namespace]); err != nil {
		return "", err
	}
	s.log.Info("kvol copy done", "rowkey", j.Rowkey, "vdi", id, "bytes_written", n)
	return id, nil
}

// blockSize is the unit copied: CBT's 64 KiB block; runs of up to 16 are
// read at once.
const (
	blockSize = 64 << 10
	runBlocks = 16
)

// fill writes every block of src holding data into volume id (which reads
// as zeros: new, or filled before by this same copy), over the zone's
// connections, then flushes; it answers the bytes written.
func (s *Service) fill(ctx context.Context, id string, src Source) (uint64, error) {
	vbd, err := s.vols.Attach(id, "kvol", true)
	if err != nil {
		return 0, err
	}
	defer vbd.Close()
	size := src.Size()
	blocks, err := src.Allocated()
	if err != nil {
		return 0, err
	}
	if blocks == nil { // not known: read every block, write those not zero
		blocks = roaring.New()
		blocks.AddRange(0, (size+blockSize-1)/blockSize)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type run struct{ first, n uint64 }
	work := make(chan run)
	var (
		mu       sync.Mutex
		firstErr error
		written  uint64
		wg       sync.WaitGroup
	)
	failed := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	zeros := make([]byte, blockSize)
	for range max(1, s.opts.Conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, runBlocks*blockSize)
			for r := range work {
				off := r.first * blockSize
				n := min(r.n*blockSize, size-off)
				if err := src.ReadAt(ctx, buf[:n], off); err != nil {
					failed(fmt.Errorf("reading at %d: %w", off, err))
					return
				}
				for o := uint64(0); o < n; o += blockSize {
					p := buf[o:min(o+blockSize, n)]
					if bytes.Equal(p, zeros[:len(p)]) {
						continue
					}
					if err := vbd.Disk.Write(off+o, p, 0); err != nil {
						failed(fmt.Errorf("writing at %d: %w", off+o, err))
						return
					}
					mu.Lock()
					written += uint64(len(p))
					mu.Unlock()
				}
			}
		}()
	}
	// Consecutive blocks go as one run.
	it := blocks.Iterator()
	var cur run
	send := func() bool {
		if cur.n == 0 {
			return true
		}
		select {
		case work <- cur:
			cur = run{}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for it.HasNext() {
		b := uint64(it.Next())
		if b*blockSize >= size {
			break
		}
		if cur.n > 0 && (b != cur.first+cur.n || cur.n == runBlocks) && !send() {
			break
		}
		if cur.n == 0 {
			cur.first = b
		}
		cur.n++
	}
	send()
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil {
		if err := vbd.Disk.Flush(); err != nil {
			firstErr = fmt.Errorf("flushing: %w", err)
		}
	}
	return written, firstErr
}
