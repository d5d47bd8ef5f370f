package mgmt

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// maxFinishedTasks bounds the finished tasks kept for GET /api/tasks.
const maxFinishedTasks = 1000

// taskTable runs long calls in the background. Tasks do not survive a
// restart; what an interrupted one built is removed at the next start
// (Server.cleanUpInterrupted).
type taskTable struct {
	s      *Server
	mu     sync.Mutex
	tasks  map[string]*task
	order  []string // creation order
	wg     sync.WaitGroup
	closed bool
}

type task struct {
	rec      api.Task // guarded by taskTable.mu
	cancel   context.CancelFunc
	progress atomic.Uint64 // float64 bits, 0..1
}

// setProgress records how far the task is, 0..1.
func (t *task) setProgress(p float64) { t.progress.Store(math.Float64bits(min(max(p, 0), 1))) }

func newTaskTable(s *Server) *taskTable { return &taskTable{s: s, tasks: map[string]*task{}} }

// taskFunc does a task's work. It returns the result, or an error; when
// ctx was cancelled the task ends cancelled, whatever it returns.
type taskFunc func(ctx context.Context, t *task) (any, error)

// start runs fn as task id (from newTaskID) acting on object. ops are the
// VDI operations the caller registered for it (Server.addOpsLocked); they
// are released when the task ends.
func (tt *taskTable) start(id, name, object, owner string, fn taskFunc) (*api.Task, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{cancel: cancel, rec: api.Task{
		UUID: id, NameLabel: name, Object: object, Status: api.TaskPending,
		Created: tt.s.opts.Now().UTC(), Owner: owner, ResidentOn: tt.s.NodeGUID(),
	}}
	tt.mu.Lock()
	if tt.closed {
		tt.mu.Unlock()
		cancel()
		tt.s.releaseOps(id)
		return nil, api.Errorf(http.StatusServiceUnavailable, api.CodeServerShutdown, nil, "vdiskd is shutting down")
	}
	tt.tasks[id] = t
	tt.order = append(tt.order, id)
	tt.pruneLocked()
	rec := t.rec
	tt.wg.Add(1)
	tt.mu.Unlock()

	go func() {
		defer tt.wg.Done()
		defer cancel()
		res, err := fn(ctx, t)
		tt.s.releaseOps(id)
		now := tt.s.opts.Now().UTC()
		tt.mu.Lock()
		defer tt.mu.Unlock()
		t.rec.Finished = &now
		switch {
		case err == nil:
			// Done, even if a cancel arrived after the work was: what the
			// task made stays, so it must say success.
			t.rec.Status = api.TaskSuccess
			t.rec.Result = res
			t.setProgress(1)
		case ctx.Err() != nil:
			t.rec.Status = api.TaskCancelled
			t.rec.Error = api.Errorf(http.StatusConflict, api.CodeTaskCancelled, []string{id}, "task %s was cancelled", id)
		default:
			t.rec.Status = api.TaskFailure
			t.rec.Error = storeError(err, object, name)
			if t.rec.Error == nil {
				t.rec.Error = api.Errorf(500, api.CodeInternal, nil, "%v", err)
			}
			tt.s.log.Warn("task failed", "task", id, "name", name, "object", object, "err", err)
		}
	}()
	return &rec, nil
}

func newTaskID() string { return uuid.NewString() }

// pruneLocked drops the oldest finished tasks past the limit.
func (tt *taskTable) pruneLocked() {
	finished := 0
	for _, id := range tt.order {
		if tt.tasks[id].rec.Status != api.TaskPending {
			finished++
		}
	}
	for i := 0; finished > maxFinishedTasks && i < len(tt.order); {
		id := tt.order[i]
		if tt.tasks[id].rec.Status != api.TaskPending {
			delete(tt.tasks, id)
			tt.order = slices.Delete(tt.order, i, i+1)
			finished--
			continue
		}
		i++
	}
}

func (tt *taskTable) snapshot(t *task) api.Task {
	r := t.rec
	r.Progress = math.Float64frombits(t.progress.Load())
	return r
}

func (tt *taskTable) get(id string) (api.Task, bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.tasks[id]
	if t == nil {
		return api.Task{}, false
	}
	return tt.snapshot(t), true
}

// wait blocks until task id has finished or timeout passes (tests, and
// calls that run a task but answer synchronously).
func (tt *taskTable) wait(id string, timeout time.Duration) (api.Task, bool) {
	deadline := time.Now().Add(timeout)
	for {
		rec, ok := tt.get(id)
		if !ok || rec.Status != api.TaskPending || time.Now().After(deadline) {
			return rec, ok
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closeAll cancels every task and waits for them to clean up.
func (tt *taskTable) closeAll() {
	tt.mu.Lock()
	tt.closed = true
	for _, t := range tt.tasks {
		t.cancel()
	}
	tt.mu.Unlock()
	tt.wg.Wait()
}

func (s *Server) taskList(c *call, a *api.TaskListArgs) (any, error) {
	tt := s.tasks
	tt.mu.Lock()
	out := make([]api.Task, 0, len(tt.tasks))
	for _, id := range tt.order {
		if r := tt.snapshot(tt.tasks[id]); a.Status == "" || r.Status == a.Status {
			out = append(out, r)
		}
	}
	tt.mu.Unlock()
	return page(out, a.PageArgs, "-created")
}

func (s *Server) taskGet(c *call, a *api.TaskRef) (any, error) {
	rec, ok := s.tasks.get(a.UUID)
	if !ok {
		return nil, api.NotFound("task", a.UUID)
	}
	return rec, nil
}

// taskCancel cancels a pending task: the caller's own, or anyone's with
// pool-operator. It answers once the task has cleaned up.
func (s *Server) taskCancel(c *call, a *api.TaskRef) (any, error) {
	tt := s.tasks
	tt.mu.Lock()
	t := tt.tasks[a.UUID]
	if t == nil {
		tt.mu.Unlock()
		return nil, api.NotFound("task", a.UUID)
	}
	if t.rec.Owner != c.user && !c.role.Allows(api.PoolOperator) {
		tt.mu.Unlock()
		return nil, api.Errorf(http.StatusForbidden, api.CodePermissionDenied, []string{"task.cancel", api.PoolOperator.String()},
			"task %s belongs to %s; cancelling another user's task needs pool-operator", a.UUID, t.rec.Owner)
	}
	if t.rec.Status != api.TaskPending {
		st := t.rec.Status
		tt.mu.Unlock()
		return nil, api.Conflict(api.CodeOperationNotAllowed, []string{"task " + a.UUID + " is " + st},
			"task %s already finished (%s)", a.UUID, st)
	}
	t.cancel()
	tt.mu.Unlock()
	rec, _ := tt.wait(a.UUID, 30*time.Second)
	return rec, nil
}

// errCancelled is what task bodies return when they notice cancellation.
var errCancelled = errors.New("cancelled")
