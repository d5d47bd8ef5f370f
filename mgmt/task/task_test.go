package task

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/mgmt/fault"
)

// waitDone waits for a task to finish, giving up with a clear message.
func waitDone(t *testing.T, tt *Table, id string) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, ok := tt.Wait(ctx, id)
	if !ok || rec.Status == Pending {
		t.Fatalf("task %s still pending after 10 s (%+v)", id, rec)
	}
	return rec
}

// A task ends success with its result, failure with its error as a
// fault, or cancelled when cancelled while running; the times come from
// the injected clock.
func TestTaskOutcomes(t *testing.T) {
	clock := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tt := New(Options{Now: func() time.Time { return clock }, ResidentOn: "node-1"})
	t.Cleanup(tt.Close)

	ok, err := tt.Start(NewID(), "VDI.copy", "obj", "alice", func(ctx context.Context, progress func(float64)) (any, error) {
		progress(0.5)
		return "done", nil
	})
	if err != nil || ok.Status != Pending || ok.ResidentOn != "node-1" || !ok.Created.Equal(clock) {
		t.Fatalf("start: %+v %v", ok, err)
	}
	if rec := waitDone(t, tt, ok.UUID); rec.Status != Success || rec.Result != "done" || rec.Progress != 1 || !rec.Finished.Equal(clock) {
		t.Fatalf("success: %+v", rec)
	}

	bad, _ := tt.Start(NewID(), "VDI.copy", "obj", "alice", func(context.Context, func(float64)) (any, error) {
		return nil, errors.New("disk on fire")
	})
	if rec := waitDone(t, tt, bad.UUID); rec.Status != Failure || rec.Error == nil || rec.Error.Kind != fault.Internal {
		t.Fatalf("failure: %+v", rec)
	}

	running := make(chan struct{})
	slow, _ := tt.Start(NewID(), "VDI.copy", "obj", "alice", func(ctx context.Context, _ func(float64)) (any, error) {
		close(running)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	testwait.Recv(t, running, "the slow task to start")
	if _, err := tt.Cancel(slow.UUID, "bob", false, "pool-operator"); err == nil {
		t.Fatal("bob cancelled alice's task without pool-operator")
	} else if f, _ := fault.As(err); f.Kind != fault.Forbidden {
		t.Fatalf("bob's cancel: %v", err)
	}
	rec, err := tt.Cancel(slow.UUID, "alice", false, "pool-operator")
	if err != nil || rec.Status != Cancelled || rec.Error.Code != fault.CodeTaskCancelled {
		t.Fatalf("cancel: %+v %v", rec, err)
	}
	if _, err := tt.Cancel(slow.UUID, "alice", false, "pool-operator"); err == nil {
		t.Fatal("a finished task was cancelled again")
	}
	if got := tt.List(Cancelled); len(got) != 1 || got[0].UUID != slow.UUID {
		t.Fatalf("List(cancelled) = %+v", got)
	}
	if _, ok := tt.Get("no-such-task"); ok {
		t.Fatal("Get found an unknown task")
	}
}

// Close cancels what runs and waits for it; Start then refuses.
func TestCloseCancelsAndRefuses(t *testing.T) {
	tt := New(Options{})
	stopped := make(chan struct{})
	rec, _ := tt.Start(NewID(), "x", "", "", func(ctx context.Context, _ func(float64)) (any, error) {
		<-ctx.Done()
		close(stopped)
		return nil, ctx.Err()
	})
	closed := make(chan struct{})
	go func() { tt.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Close returned before the task stopped")
	}
	if got, _ := tt.Get(rec.UUID); got.Status != Cancelled {
		t.Fatalf("after Close: %+v", got)
	}
	if _, err := tt.Start(NewID(), "x", "", "", nil); err == nil {
		t.Fatal("Start after Close was accepted")
	} else if f, _ := fault.As(err); f.Kind != fault.Unavailable {
		t.Fatalf("Start after Close: %v", err)
	}
}

// Finished tasks beyond MaxFinished go, oldest first; pending ones stay.
func TestFinishedTasksAreBounded(t *testing.T) {
	tt := New(Options{MaxFinished: 3})
	t.Cleanup(tt.Close)
	var ids []string
	for range 6 {
		rec, _ := tt.Start(NewID(), "x", "", "", func(context.Context, func(float64)) (any, error) { return nil, nil })
		waitDone(t, tt, rec.UUID)
		ids = append(ids, rec.UUID)
	}
	tt.Start(NewID(), "x", "", "", func(context.Context, func(float64)) (any, error) { return nil, nil }) // prunes
	if _, ok := tt.Get(ids[0]); ok {
		t.Fatal("the oldest finished task was kept")
	}
	if _, ok := tt.Get(ids[5]); !ok {
		t.Fatal("the newest finished task was dropped")
	}
}
