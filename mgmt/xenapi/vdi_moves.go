package xenapi

import (
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/mgmt/xenrecord"
)

// The VDI messages that make or move a VDI over time: copy, pool_migrate,
// introduce. Each takes its REST twin's arguments (restArgs) and makes the
// same service call; a synchronous call waits for the work and answers
// the VDI's ref, an Async. one runs as the task it reports progress to.

// onVDIWith declares a message on a VDI whose further parameters are the
// REST declaration's body members (the last optional of them may be left
// out, as older clients do).
func onVDIWith[A any](d *api.Decl[A], optional int, fn func(c *Ctx, id string, a *A) (any, error)) *Message {
	return &Message{Class: "VDI", Name: d.XenAPI[0], Params: append([]string{"self"}, bodyParams(&d.RPC)...),
		Optional: optional, Role: d.Role, Summary: d.Summary,
		Handle: func(c *Ctx, args []any) (any, error) {
			v, err := c.S.vdi(args[0])
			if err != nil {
				return nil, err
			}
			var a A
			if err := c.S.restArgs(&d.RPC, &a, v.Info.ID, args[1:]); err != nil {
				return nil, err
			}
			return fn(c, v.Info.ID, &a)
		}}
}

func init() {
	declare(
		onVDIWith(api.VDICopy, 2, func(c *Ctx, id string, a *api.VDICopyArgs) (any, error) {
			cp, err := c.S.opts.Volumes.StartCopy(volume.CopyRequest{Source: id, Pool: a.SR, Base: a.BaseVDI, Into: a.IntoVDI,
				Task: c.TaskID(), By: c.User})
			if err != nil {
				return nil, err
			}
			return vdiRef(cp.Run(c.Context(), c.Progress))
		}),
		onVDIWith(api.VDIPoolMigrate, 1, func(c *Ctx, id string, a *api.VDIPoolMigrateArgs) (any, error) {
			m, err := c.S.opts.Volumes.StartMigration(id, a.SR, c.TaskID(), c.User)
			if err != nil {
				return nil, err
			}
			if c.Context().Err() != nil {
				m.Abandon()
				return nil, volume.ErrCancelled
			}
			return vdiRef(m.Run())
		}),
		&Message{Class: "VDI", Name: "introduce", Params: bodyParams(&api.VDIIntroduce.RPC), Optional: 7,
			Role: api.VDIIntroduce.Role, Summary: api.VDIIntroduce.Summary,
			Handle: func(c *Ctx, args []any) (any, error) {
				var a api.VDIIntroduceArgs
				if err := c.S.restArgs(&api.VDIIntroduce.RPC, &a, "", args); err != nil {
					return nil, err
				}
				req, err := xenrecord.Introduction(&a)
				if err != nil {
					return nil, err
				}
				return vdiRef(c.S.opts.Volumes.Introduce(req))
			}},
	)
}
