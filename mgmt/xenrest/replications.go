package xenrest

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// replicationRecord is a relation with its status now.
func (s *Surface) replicationRecord(r replication.Relation) api.Replication {
	st, p := s.opts.Replicator.Status(r, s.opts.PeerState)
	name := r.VPool
	if pl, err := s.vols.Pool(r.VPool, "vPool"); err == nil {
		name = pl.Name
	}
	return api.Replication{Seq: r.Seq, VPool: r.VPool, VPoolName: name, DstZone: r.DstZone, DstVPool: r.DstVPool,
		Interval: r.Interval, Retention: r.Retention, Paused: r.Paused, Status: st.State, Reason: st.Reason,
		LagS: int64(st.Lag / time.Second), Bytes: p.Bytes, LastError: p.LastError,
		Created: r.Created.UTC().Format(time.RFC3339)}
}

func (s *Surface) replicationList(c *rpc.Call, a *api.ReplicationListArgs) (any, error) {
	return page(s.Relations(), a.PageArgs, "seq")
}

// Relations are this zone's replication relations as GET
// /api/replications answers them, by seq.
func (s *Surface) Relations() []api.Replication {
	out := []api.Replication{}
	for _, r := range s.opts.Replications.List() {
		out = append(out, s.replicationRecord(r))
	}
	return out
}

func (s *Surface) replicationGet(c *rpc.Call, a *api.ReplicationRef) (any, error) {
	seq, _ := a.Number() // validated
	r, err := s.opts.Replications.Get(seq)
	if err != nil {
		return nil, err
	}
	return s.replicationRecord(r), nil
}

func (s *Surface) replicationCreate(c *rpc.Call, a *api.ReplicationCreateArgs) (any, error) {
	r, err := s.opts.Replications.Create(replication.NewRelation{VPool: a.VPool, DstZone: a.DstZone, DstVPool: a.DstVPool,
		Interval: a.IntervalS, Retention: a.Retention, By: c.User})
	if err != nil {
		return nil, err
	}
	return rpc.Created{Location: "/api/replications/" + strconv.Itoa(r.Seq), Body: s.replicationRecord(r)}, nil
}

func (s *Surface) replicationDelete(c *rpc.Call, a *api.ReplicationRef) (any, error) {
	seq, _ := a.Number()
	return nil, s.opts.Replications.Delete(seq, c.User)
}

func (s *Surface) replicationPause(c *rpc.Call, a *api.ReplicationRef) (any, error) {
	return s.setPaused(c, a, true)
}

func (s *Surface) replicationResume(c *rpc.Call, a *api.ReplicationRef) (any, error) {
	return s.setPaused(c, a, false)
}

func (s *Surface) replicationSync(c *rpc.Call, a *api.ReplicationRef) (any, error) {
	seq, _ := a.Number()
	r, err := s.opts.Replications.Get(seq)
	if err != nil {
		return nil, err
	}
	if err := s.opts.Replicator.SyncSoon(r); err != nil {
		return nil, err
	}
	return s.replicationRecord(r), nil
}

func (s *Surface) setPaused(c *rpc.Call, a *api.ReplicationRef, paused bool) (any, error) {
	seq, _ := a.Number()
	r, err := s.opts.Replications.SetPaused(seq, paused, c.User)
	if err != nil {
		return nil, err
	}
	return s.replicationRecord(r), nil
}

func (s *Surface) replicaList(c *rpc.Call, a *api.ReplicaListArgs) (any, error) {
	return page(s.Replicas(*a), a.PageArgs, "created,generation")
}

// Replicas are the replica snapshots held here that pass a's filters (not
// its paging), from the origin tags their sm_config carries.
func (s *Surface) Replicas(a api.ReplicaListArgs) []api.Replica {
	out := []api.Replica{}
	s.vols.Each(func(v *volume.Volume) {
		o, ok := replication.OriginOf(v.Attrs.Xen.SMConfig)
		if !ok || v.Info.Kind != blockstore.KindSnapshot || !matches(&a, o) {
			return
		}
		name := v.Info.Pool
		if pl, err := s.vols.Pool(v.Info.Pool, "vPool"); err == nil {
			name = pl.Name
		}
		out = append(out, api.Replica{Snapshot: v.Info.ID, VDI: v.Info.SnapshotOf, NameLabel: v.Attrs.Xen.NameLabel, VPool: v.Info.Pool, VPoolName: name,
			VirtualSize: int64(v.Info.Size), Created: v.Info.Created.UTC().Format(time.RFC3339Nano), Generation: int64(v.Info.Gen),
			OriginZone: o.Zone, OriginVPool: o.VPool, OriginVPoolName: o.VPoolName, OriginSeq: o.Seq,
			OriginVDI: o.VDI, OriginSnapshot: o.Snapshot})
	})
	slices.SortFunc(out, func(x, y api.Replica) int { return cmp.Compare(x.Generation, y.Generation) })
	return out
}

// matches reports whether a replica of origin o passes a's filters.
func matches(a *api.ReplicaListArgs, o replication.Origin) bool {
	return (a.OriginZone == "" || a.OriginZone == o.Zone) &&
		(a.OriginVPool == "" || a.OriginVPool == o.VPool || a.OriginVPool == o.VPoolName) &&
		(a.OriginVDI == "" || a.OriginVDI == o.VDI) && (a.OriginSnapshot == "" || a.OriginSnapshot == o.Snapshot)
}
