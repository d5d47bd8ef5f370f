// Package task runs long calls in the background and keeps their records:
// status, progress, result or error. Tasks do not survive a restart; what
// an interrupted one built is removed at the next start by the service
// that built it. Waiting on a task waits on its channel, never by polling.
package task

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// Statuses.
const (
	Pending   = "pending"
	Success   = "success"
	Failure   = "failure"
	Cancelled = "cancelled"
)

// Record is a task as callers see it.
type Record struct {
	UUID       string       `json:"uuid"`
	NameLabel  string       `json:"name_label"` // the call, e.g. "VDI.copy"
	Object     string       `json:"object"`     // the UUID it acts on
	Status     string       `json:"status"`     // pending, success, failure, cancelled
	Progress   float64      `json:"progress"`   // 0..1
	Created    time.Time    `json:"created"`
	Finished   *time.Time   `json:"finished"`
	Owner      string       `json:"owner"`
	Result     any          `json:"result"`
	Error      *fault.Error `json:"error"`
	ResidentOn string       `json:"resident_on"` // the node running it
}

// Options configure a Table.
type Options struct {
	Now        func() time.Time
	Logger     *slog.Logger
	ResidentOn string // this node's id, shown on every task
	// MaxFinished bounds the finished tasks kept (default 1000).
	MaxFinished int
	// Failed turns a task's error into the fault its record shows (default:
	// faults pass, anything else is internal).
	Failed func(err error, object, name string) *fault.Error
}

// Table is the set of tasks.
type Table struct {
	opts   Options
	mu     sync.Mutex
	tasks  map[string]*task
	order  []string // creation order
	wg     sync.WaitGroup
	closed bool
}

type task struct {
	rec      Record // guarded by Table.mu
	cancel   context.CancelFunc
	done     chan struct{} // closed when the task has finished
	progress atomic.Uint64 // float64 bits, 0..1
}

// Func does a task's work, reporting progress (0..1) as it goes. It
// returns the result, or an error; when ctx was cancelled the task ends
// cancelled, whatever it returns.
type Func func(ctx context.Context, progress func(float64)) (any, error)

// New makes an empty table.
func New(opts Options) *Table {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxFinished <= 0 {
		opts.MaxFinished = 1000
	}
	if opts.Failed == nil {
		opts.Failed = func(err error, _, _ string) *fault.Error {
			if f, ok := fault.As(err); ok {
				return f
			}
			return fault.Internalf(nil, "%v", err)
		}
	}
	return &Table{opts: opts, tasks: map[string]*task{}}
}

// NewID is a fresh task id; callers take one first to mark what the task
// will work on.
func NewID() string { return uuid.NewString() }

// Start runs fn as task id, named name (the call), acting on object, for
// owner. It fails only when the table is closed.
func (tt *Table) Start(id, name, object, owner string, fn Func) (Record, error) {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{cancel: cancel, done: make(chan struct{}), rec: Record{
		UUID: id, NameLabel: name, Object: object, Status: Pending,
		Created: tt.opts.Now().UTC(), Owner: owner, ResidentOn: tt.opts.ResidentOn,
	}}
	tt.mu.Lock()
	if tt.closed {
		tt.mu.Unlock()
		cancel()
		return Record{}, fault.ShuttingDown()
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
		res, err := fn(ctx, t.setProgress)
		now := tt.opts.Now().UTC()
		tt.mu.Lock()
		defer tt.mu.Unlock()
		defer close(t.done)
		t.rec.Finished = &now
		switch {
		case err == nil:
			// Done, even if a cancel arrived after the work was: what the
			// task made stays, so it must say success.
			t.rec.Status = Success
			t.rec.Result = res
			t.setProgress(1)
		case ctx.Err() != nil:
			t.rec.Status = Cancelled
			t.rec.Error = fault.New(fault.Conflict, fault.CodeTaskCancelled, []string{id}, "task %s was cancelled", id)
		default:
			t.rec.Status = Failure
			t.rec.Error = tt.opts.Failed(err, object, name)
			tt.opts.Logger.Warn("task failed", "task", id, "name", name, "object", object, "err", err)
		}
	}()
	return rec, nil
}

// setProgress records how far the task is, 0..1.
func (t *task) setProgress(p float64) { t.progress.Store(math.Float64bits(min(max(p, 0), 1))) }

// pruneLocked drops the oldest finished tasks past the limit.
func (tt *Table) pruneLocked() {
	finished := 0
	for _, id := range tt.order {
		if tt.tasks[id].rec.Status != Pending {
			finished++
		}
	}
	for i := 0; finished > tt.opts.MaxFinished && i < len(tt.order); {
		id := tt.order[i]
		if tt.tasks[id].rec.Status != Pending {
			delete(tt.tasks, id)
			tt.order = slices.Delete(tt.order, i, i+1)
			finished--
			continue
		}
		i++
	}
}

func (t *task) snapshot() Record {
	r := t.rec
	r.Progress = math.Float64frombits(t.progress.Load())
	return r
}

// Get reads one task.
func (tt *Table) Get(id string) (Record, bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.tasks[id]
	if t == nil {
		return Record{}, false
	}
	return t.snapshot(), true
}

// List reads every task in creation order, those in status only if status
// is not empty.
func (tt *Table) List(status string) []Record {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make([]Record, 0, len(tt.tasks))
	for _, id := range tt.order {
		if r := tt.tasks[id].snapshot(); status == "" || r.Status == status {
			out = append(out, r)
		}
	}
	return out
}

// Wait blocks until task id has finished or ctx ends, and answers its
// record then.
func (tt *Table) Wait(ctx context.Context, id string) (Record, bool) {
	tt.mu.Lock()
	t := tt.tasks[id]
	tt.mu.Unlock()
	if t == nil {
		return Record{}, false
	}
	select {
	case <-t.done:
	case <-ctx.Done():
	}
	return tt.Get(id)
}

// Cancel cancels a pending task: the caller's own, or anyone's when
// mayCancelOthers. It answers once the task has cleaned up (or after 30
// seconds, with the task still pending).
func (tt *Table) Cancel(id, caller string, mayCancelOthers bool, othersRole string) (Record, error) {
	tt.mu.Lock()
	t := tt.tasks[id]
	if t == nil {
		tt.mu.Unlock()
		return Record{}, fault.Missing("task", id)
	}
	if t.rec.Owner != caller && !mayCancelOthers {
		tt.mu.Unlock()
		return Record{}, fault.New(fault.Forbidden, fault.CodePermissionDenied, []string{"task.cancel", othersRole},
			"task %s belongs to %s; cancelling another user's task needs %s", id, t.rec.Owner, othersRole)
	}
	if st := t.rec.Status; st != Pending {
		tt.mu.Unlock()
		return Record{}, fault.Conflicts(fault.CodeOperationNotAllowed, []string{"task " + id + " is " + st},
			"task %s already finished (%s)", id, st)
	}
	t.cancel()
	tt.mu.Unlock()
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	rec, _ := tt.Wait(ctx, id)
	return rec, nil
}

// Forget removes a finished task (XenAPI's task.destroy); a pending one
// must be cancelled first.
func (tt *Table) Forget(id string) error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t := tt.tasks[id]
	if t == nil {
		return fault.Missing("task", id)
	}
	if t.rec.Status == Pending {
		return fault.Conflicts(fault.CodeOperationNotAllowed, []string{"task " + id + " is pending"},
			"task %s is still running: cancel it first", id)
	}
	delete(tt.tasks, id)
	tt.order = slices.DeleteFunc(tt.order, func(x string) bool { return x == id })
	return nil
}

// Close cancels every task and waits for them to clean up.
func (tt *Table) Close() {
	tt.mu.Lock()
	tt.closed = true
	for _, t := range tt.tasks {
		t.cancel()
	}
	tt.mu.Unlock()
	tt.wg.Wait()
}
