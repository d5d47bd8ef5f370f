package xenrest

import (
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/rpc"
)

func (s *Surface) taskList(c *rpc.Call, a *api.TaskListArgs) (any, error) {
	return page(s.tasks.List(a.Status), a.PageArgs, "-created")
}

func (s *Surface) taskGet(c *rpc.Call, a *api.TaskRef) (any, error) {
	rec, ok := s.tasks.Get(a.UUID)
	if !ok {
		return nil, api.NotFound("task", a.UUID)
	}
	return rec, nil
}

// taskCancel cancels a pending task: the caller's own, or anyone's with
// pool-operator. It answers once the task has cleaned up.
func (s *Surface) taskCancel(c *rpc.Call, a *api.TaskRef) (any, error) {
	return s.tasks.Cancel(a.UUID, c.User, c.Role.Allows(api.PoolOperator), api.PoolOperator.String())
}
