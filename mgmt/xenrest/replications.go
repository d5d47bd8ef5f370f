package xenrest

import (
	"strconv"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
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
	var out []api.Replication
	for _, r := range s.opts.Replications.List() {
		out = append(out, s.replicationRecord(r))
	}
	return page(orSlice(out), a.PageArgs, "seq")
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

func (s *Surface) setPaused(c *rpc.Call, a *api.ReplicationRef, paused bool) (any, error) {
	seq, _ := a.Number()
	r, err := s.opts.Replications.SetPaused(seq, paused, c.User)
	if err != nil {
		return nil, err
	}
	return s.replicationRecord(r), nil
}
