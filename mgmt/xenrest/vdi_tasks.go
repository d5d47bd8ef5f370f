package xenrest

import (
	"context"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// vdiCopy is VDI.copy, run as a task; a failed or cancelled copy destroys
// the VDI it created.
func (s *Surface) vdiCopy(c *rpc.Call, a *api.VDICopyArgs) (any, error) {
	id := task.NewID()
	cp, err := s.vols.StartCopy(volume.CopyRequest{Source: a.UUID, Pool: a.SR, Base: a.BaseVDI, Into: a.IntoVDI,
		Task: id, By: c.User})
	if err != nil {
		return nil, err
	}
	rec, err := s.tasks.Start(id, "VDI.copy", a.UUID, c.User, func(ctx context.Context, progress func(float64)) (any, error) {
		return answer(cp.Run(ctx, progress))
	})
	if err != nil {
		cp.Abandon()
		return nil, err
	}
	return rpc.Started{TaskID: rec.UUID, Body: rec}, nil
}

// vdiPoolMigrate moves a VDI and its snapshots to another vPool, as a task.
func (s *Surface) vdiPoolMigrate(c *rpc.Call, a *api.VDIPoolMigrateArgs) (any, error) {
	id := task.NewID()
	m, err := s.vols.StartMigration(a.UUID, a.SR, id, c.User)
	if err != nil {
		return nil, err
	}
	rec, err := s.tasks.Start(id, "VDI.pool_migrate", a.UUID, c.User, func(ctx context.Context, _ func(float64)) (any, error) {
		if ctx.Err() != nil {
			m.Abandon()
			return nil, volume.ErrCancelled
		}
		return answer(m.Run())
	})
	if err != nil {
		m.Abandon()
		return nil, err
	}
	return rpc.Started{TaskID: rec.UUID, Body: rec}, nil
}
