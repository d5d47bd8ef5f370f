package xenapi

import (
	"bytes"
	"context"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/auth"
	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/task"
	"github.com/vdiskd/vdiskd/mgmt/xenapi/wire"
)

// Tasks are the daemon's task table, shared with the REST surface: an
// Async. call is a task there, and REST's tasks are XenAPI's too.

// taskRecord is a task as XenAPI's record. result is the XML-RPC <value>
// text of the call's answer, as xapi gives it (over JSON-RPC too).
func (s *Surface) taskRecord(r task.Record) map[string]any {
	rec := map[string]any{"uuid": r.UUID, "name_label": r.NameLabel, "name_description": "", "status": r.Status,
		"progress": r.Progress, "created": r.Created, "finished": time.Unix(0, 0).UTC(), "result": "",
		"error_info": []any{}, "resident_on": Ref(s.hostUUID()), "allowed_operations": []any{},
		"current_operations": map[string]any{}, "other_config": map[string]any{}, "subtask_of": NullRef,
		"subtasks": []any{}, "type": "<none/>", "backtrace": "()"}
	if r.Status == task.Pending {
		rec["allowed_operations"] = []any{"cancel"}
	}
	if r.Finished != nil {
		rec["finished"] = *r.Finished
	}
	if r.Result != nil {
		var b bytes.Buffer
		if err := wire.EncodeXMLValue(&b, r.Result); err == nil {
			rec["result"] = b.String()
		}
	}
	if r.Error != nil {
		info := []any{r.Error.Code}
		for _, p := range r.Error.Params {
			info = append(info, p)
		}
		rec["error_info"] = info
	}
	return rec
}

// taskOf reads the task a handle names.
func (s *Surface) taskOf(ref any) (task.Record, error) {
	r, _ := ref.(string)
	id, err := uuidOf("task", r)
	if err != nil {
		return task.Record{}, err
	}
	rec, ok := s.opts.Tasks.Get(id)
	if !ok {
		return task.Record{}, xenError(CodeHandleInvalid, "task", r)
	}
	return rec, nil
}

// async runs message m as a task: the answer is the task's ref at once;
// its result, the message's answer, when it ends.
func (s *Surface) async(m *Message, c *Ctx, args []any) (any, error) {
	id := task.NewID()
	object := ""
	if len(args) > 0 {
		if r, ok := args[0].(string); ok {
			object = r
		}
	}
	_, err := s.opts.Tasks.Start(id, "Async."+m.FullName(), object, c.User, func(ctx context.Context, progress func(float64)) (any, error) {
		tc := *c
		tc.task, tc.ctx, tc.progress = id, ctx, progress
		return m.Handle(&tc, args)
	})
	if err != nil {
		return nil, err
	}
	return Ref(id), nil
}

func init() {
	declareClass(&class{name: "task", named: true, fields: []string{"uuid", "name_label", "name_description",
		"status", "progress", "created", "finished", "result", "error_info", "resident_on", "allowed_operations",
		"current_operations", "other_config", "subtask_of", "subtasks", "type", "backtrace"},
		uuids: func(s *Surface) []string {
			var out []string
			for _, r := range s.opts.Tasks.List("") {
				out = append(out, r.UUID)
			}
			return out
		},
		record: func(s *Surface, id string) (map[string]any, bool) {
			r, ok := s.opts.Tasks.Get(id)
			if !ok {
				return nil, false
			}
			return s.taskRecord(r), true
		}})
	declare(
		&Message{Class: "task", Name: "cancel", Params: []string{"task"}, Role: auth.ReadOnly,
			Summary: "Cancel a pending task (another user's needs pool-operator)",
			Handle: func(c *Ctx, args []any) (any, error) {
				r, err := c.S.taskOf(args[0])
				if err != nil {
					return nil, err
				}
				_, err = c.S.opts.Tasks.Cancel(r.UUID, c.User, c.Role.Allows(auth.PoolOperator), auth.PoolOperator.String())
				return "", err
			}},
		&Message{Class: "task", Name: "destroy", Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "Forget a finished task",
			Handle: func(c *Ctx, args []any) (any, error) {
				r, err := c.S.taskOf(args[0])
				if err != nil {
					return nil, err
				}
				if r.Owner != c.User && !c.Role.Allows(auth.PoolOperator) {
					return nil, xenError(fault.CodePermissionDenied, "task.destroy", "the task is another user's")
				}
				return "", c.S.opts.Tasks.Forget(r.UUID)
			}},
	)
}
