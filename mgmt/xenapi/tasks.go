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
		tc.Task, tc.Context, tc.Progress = id, ctx, progress
		return m.Handle(&tc, args)
	})
	if err != nil {
		return nil, err
	}
	return Ref(id), nil
}

func init() {
	field := func(name string, get func(s *Surface, r task.Record) any) *Message {
		return &Message{Class: "task", Name: "get_" + name, Params: []string{"self"}, Role: auth.ReadOnly,
			Summary: "A task's " + name,
			Handle: func(c *Ctx, args []any) (any, error) {
				r, err := c.S.taskOf(args[0])
				if err != nil {
					return nil, err
				}
				return get(c.S, r), nil
			}}
	}
	fromRecord := func(k string) func(*Surface, task.Record) any {
		return func(s *Surface, r task.Record) any { return s.taskRecord(r)[k] }
	}
	declare(
		field("record", func(s *Surface, r task.Record) any { return s.taskRecord(r) }),
		field("status", fromRecord("status")), field("progress", fromRecord("progress")),
		field("result", fromRecord("result")), field("error_info", fromRecord("error_info")),
		field("name_label", fromRecord("name_label")), field("uuid", fromRecord("uuid")),
		&Message{Class: "task", Name: "get_all", Role: auth.ReadOnly, Summary: "Every task's ref",
			Handle: func(c *Ctx, _ []any) (any, error) {
				out := []any{}
				for _, r := range c.S.opts.Tasks.List("") {
					out = append(out, Ref(r.UUID))
				}
				return out, nil
			}},
		&Message{Class: "task", Name: "get_all_records", Role: auth.ReadOnly, Summary: "Every task's record, by ref",
			Handle: allRecords("task")},
		&Message{Class: "task", Name: "get_by_uuid", Params: []string{"uuid"}, Role: auth.ReadOnly, Summary: "The task with a uuid",
			Handle: func(c *Ctx, args []any) (any, error) {
				id, err := str(args, 0, "uuid")
				if err != nil {
					return nil, err
				}
				if _, ok := c.S.opts.Tasks.Get(id); !ok {
					return nil, xenError(fault.CodeUUIDInvalid, "task", id)
				}
				return Ref(id), nil
			}},
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
