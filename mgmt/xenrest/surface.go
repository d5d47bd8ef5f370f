// Package xenrest is the XenAPI-style REST surface (SPEC §5.1): VDIs as
// XenAPI's records and calls under /api/vdis, OVS's vPools, users, tokens
// and tasks, as package api declares them. It is a thin frontend: every
// handler decodes nothing itself (package rpc does, from the declaration)
// and calls the services.
package xenrest

import (
	"log/slog"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
	"github.com/vdiskd/vdiskd/mgmt/zone"
)

// Options are what the surface serves from.
type Options struct {
	Volumes *volume.Service
	Tasks   *task.Table
	Auth    *auth.Service
	Store   *blockstore.Store // measured for vPools' stored_data
	Logger  *slog.Logger
	Now     func() time.Time

	DataDir  string // the vPools' filesystem
	NodeGUID string // this daemon's StorageRouter
	NodeName string
	Zone     string
	Address  string // where clients reach this daemon

	// NBDInfo answers get_nbd_info for an export name (nil: no NBD
	// server); TokenExports says export names carry the caller's token.
	NBDInfo      func(exportName string) []api.NBDInfo
	TokenExports bool
	// Sample reads a vDisk's counters.
	Sample func(id string) metrics.Sample
	// Zones is the registry of peer zones.
	Zones *zone.Service
	// Replications are the replication relations, Replicator their
	// rounds; PeerState says whether a zone answers.
	Replications *replication.Registry
	Replicator   *replication.Replicator
	PeerState    replication.PeerState
}

// Surface serves the calls of api.Table.
type Surface struct {
	opts  Options
	vols  *volume.Service
	tasks *task.Table
	auth  *auth.Service
	store *blockstore.Store
	log   *slog.Logger
	rates *metrics.Rates // OVS *_ps history per vDisk and vPool
}

// New makes the surface.
func New(opts Options) *Surface {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Surface{opts: opts, vols: opts.Volumes, tasks: opts.Tasks, auth: opts.Auth, store: opts.Store,
		log: opts.Logger, rates: metrics.NewRates(opts.Now)}
}

// Forget drops a destroyed vDisk's rate history.
func (s *Surface) Forget(id string) { s.rates.Forget("vdisk:" + id) }

// VDiskStatistics is a vDisk's OVS statistics object, as GET
// /api/vdis/{uuid}/statistics answers it (vStats reads the same).
func (s *Surface) VDiskStatistics(id string) api.Statistics {
	return s.rates.Statistics("vdisk:"+id, func() map[string]float64 {
		return s.opts.Sample(id).OVS()
	})
}

// VPoolStatistics sums the raw counters of every volume in the pool and
// keeps the vPool's own rate history, as OVS does since 2016 (summing the
// vDisks' rates would mix samples taken at different times).
func (s *Surface) VPoolStatistics(pool string) api.Statistics {
	// The members are read first: the rates' lock is a leaf, taken with
	// no VDI's lock inside it.
	members := s.vols.PoolMembers(pool)
	return s.rates.Statistics("vpool:"+pool, func() map[string]float64 {
		var sum metrics.Sample
		for _, id := range members {
			sum = sum.Add(s.opts.Sample(id))
		}
		return sum.OVS()
	})
}

func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func orSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// record is the XenAPI VDI record of a VDI's state.
func record(v volume.VDI) api.VDI { return xenrecord.VDI(v) }

// answer turns a service call's VDI into the record it answers with.
func answer(v volume.VDI, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return record(v), nil
}
