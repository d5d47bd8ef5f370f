package mgmt

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// startCopy posts VDI.copy and returns the task.
func (e *env) startCopy(id string, body map[string]any) api.Task {
	e.t.Helper()
	var t api.Task
	e.must(http.StatusAccepted, "POST", "/api/vdis/"+id+"/copy", e.admin, body, &t)
	if t.Status != api.TaskPending || t.NameLabel != "VDI.copy" || t.Object != id {
		e.t.Fatalf("copy task %+v", t)
	}
	return t
}

func (e *env) copyResult(t api.Task) api.VDI {
	e.t.Helper()
	done := e.waitTask(t.UUID)
	if done.Status != api.TaskSuccess || done.Progress != 1 {
		e.t.Fatalf("copy task ended %+v", done)
	}
	rec, ok := done.Result.(map[string]any)
	if !ok {
		e.t.Fatalf("copy result %T", done.Result)
	}
	if ops := rec["current_operations"].(map[string]any); len(ops) != 0 {
		e.t.Fatalf("the result record still shows the copy running: %v", ops)
	}
	return e.vdi(rec["uuid"].(string))
}

func TestCopy(t *testing.T) {
	e := newEnv(t)
	src := e.createVDI(map[string]any{"name_label": "src", "virtual_size": 8 << 20, "tags": []string{"t"},
		"other_config": map[string]string{"o": "1"}, "sm_config": map[string]string{"s": "1"}})
	e.post(src.UUID, "enable_cbt", nil)
	e.write(src.UUID, 0, pattern(1, 8192))
	e.write(src.UUID, 5<<20, pattern(2, 65536))
	s1 := e.post(src.UUID, "snapshot", nil)

	// Full copy into a fresh VDI: xapi's fields, CBT off, same content.
	full := e.copyResult(e.startCopy(s1.UUID, nil))
	if full.NameLabel != "src" || full.VirtualSize != src.VirtualSize || full.CBTEnabled || full.ReadOnly ||
		full.IsASnapshot || len(full.SMConfig) != 0 || full.OtherConfig["o"] != "1" || !slices.Equal(full.Tags, s1.Tags) {
		t.Fatalf("fresh copy %+v", full)
	}
	for _, off := range []uint64{0, 5 << 20, 7 << 20} {
		if !bytes.Equal(e.read(full.UUID, off, 65536), e.read(s1.UUID, off, 65536)) {
			t.Fatalf("full copy differs at %d", off)
		}
	}

	// Delta copies: only blocks changed since the base land in into_vdi.
	e.write(src.UUID, 64<<10, pattern(3, 4096))   // a new block
	e.write(src.UUID, 5<<20, make([]byte, 65536)) // data turned to zeros
	s2 := e.post(src.UUID, "snapshot", nil)
	before := e.volumes()
	into := e.copyResult(e.startCopy(s2.UUID, map[string]any{"base_vdi": s1.UUID, "into_vdi": full.UUID}))
	if into.UUID != full.UUID || e.volumes() != before {
		t.Fatalf("into_vdi copy made a new VDI: %s", into.UUID)
	}
	for _, off := range []uint64{0, 64 << 10, 5 << 20} {
		if !bytes.Equal(e.read(full.UUID, off, 65536), e.read(s2.UUID, off, 65536)) {
			t.Fatalf("CBT delta copy differs at %d", off)
		}
	}
	// The same by comparing contents, when base and source share no chain.
	e.post(src.UUID, "disable_cbt", nil)
	e.write(src.UUID, 3<<20, pattern(4, 4096))
	cmp := e.copyResult(e.startCopy(src.UUID, map[string]any{"base_vdi": s2.UUID, "into_vdi": full.UUID}))
	for _, off := range []uint64{0, 64 << 10, 3 << 20, 5 << 20} {
		if !bytes.Equal(e.read(cmp.UUID, off, 65536), e.read(src.UUID, off, 65536)) {
			t.Fatalf("compare delta copy differs at %d", off)
		}
	}

	// A huge sparse VDI copies in time proportional to its data.
	huge := e.createVDI(map[string]any{"virtual_size": int64(api.MaxVirtualSize)})
	e.write(huge.UUID, 1<<40, pattern(6, 4096))
	hc := e.copyResult(e.startCopy(huge.UUID, nil))
	if !bytes.Equal(e.read(hc.UUID, 1<<40, 4096), pattern(6, 4096)) {
		t.Fatal("huge sparse copy lost its block")
	}

	// xapi's refusals, synchronous, changing nothing.
	n := e.volumes()
	small := e.createVDI(map[string]any{"virtual_size": 2 << 20})
	e.fails(409, api.CodeVDITooSmall, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"into_vdi": small.UUID})
	e.fails(409, api.CodeVDIReadOnly, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"into_vdi": s1.UUID})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"into_vdi": src.UUID})
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"into_vdi": "nope"})
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"sr": "nope"})
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/vdis/"+src.UUID+"/copy", e.admin, map[string]any{"base_vdi": "nope"})
	if e.volumes() != n+1 {
		t.Fatalf("refused copies changed the store: %d volumes, want %d", e.volumes(), n+1)
	}
}

// A cancelled copy removes the VDI it was making; a crash mid-copy leaves
// one that the next start removes.
func TestCopyCancelAndCrashLeaveNothing(t *testing.T) {
	e := newEnv(t)
	src := e.createVDI(map[string]any{"virtual_size": 64 << 20})
	for off := uint64(0); off < 64<<20; off += 1 << 20 {
		e.write(src.UUID, off, pattern(byte(off>>20), 4096))
	}
	n := e.volumes()
	started := make(chan struct{})
	var once sync.Once
	hook := func(ctx context.Context) { once.Do(func() { close(started) }); <-ctx.Done() }
	e.s.vols.SetCopyHook(hook)
	task := e.startCopy(src.UUID, nil)
	testwait.Recv(t, started, "the copy to start moving data")
	var during api.VDI
	for _, v := range e.store.Volumes() {
		if v.ID != src.UUID {
			during = e.vdi(v.ID)
		}
	}
	if !slices.Contains(slices.Collect(mapValues(during.CurrentOperations)), "copy") {
		t.Fatalf("current_operations of the copy target: %v", during.CurrentOperations)
	}
	if got := e.vdi(src.UUID); got.CurrentOperations[task.UUID] != "copy" {
		t.Fatalf("current_operations of the source: %v", got.CurrentOperations)
	}
	// While it runs: the source may be read, not written; the destination
	// takes nothing.
	if _, err := e.s.vols.Attach(src.UUID, "admin", true); err == nil {
		t.Fatal("writable attach of a copy's source accepted")
	}
	ro, err := e.s.vols.Attach(src.UUID, "admin", false)
	if err != nil {
		t.Fatalf("read-only attach of a copy's source: %v", err)
	}
	ro.Close()
	if _, err := e.s.vols.Attach(during.UUID, "admin", false); err == nil {
		t.Fatal("attach of a copy's destination accepted")
	}
	e.fails(409, api.CodeOtherOperation, "POST", "/api/vdis/"+during.UUID+"/resize", e.admin, map[string]any{"size": 128 << 20})
	e.fails(409, api.CodeOtherOperation, "DELETE", "/api/vdis/"+src.UUID, e.admin, nil)
	if len(during.AllowedOperations) != 0 {
		t.Fatalf("a copy's destination allows %v", during.AllowedOperations)
	}
	var cancelled api.Task
	e.must(200, "POST", "/api/tasks/"+task.UUID+"/cancel", e.admin, nil, &cancelled)
	if cancelled.Status != api.TaskCancelled || cancelled.Error == nil || cancelled.Error.Code != api.CodeTaskCancelled {
		t.Fatalf("cancelled task %+v", cancelled)
	}
	if e.volumes() != n {
		t.Fatalf("%d volumes after a cancelled copy, want %d", e.volumes(), n)
	}
	if got := e.vdi(src.UUID); len(got.CurrentOperations) != 0 {
		t.Fatalf("source still busy: %v", got.CurrentOperations)
	}
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/tasks/"+task.UUID+"/cancel", e.admin, nil)
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/tasks/nope/cancel", e.admin, nil)

	// Someone else's task needs pool-operator to cancel.
	block := func(ctx context.Context) { <-ctx.Done() }
	e.s.vols.SetCopyHook(block)
	task = e.startCopy(src.UUID, nil)
	vmAdmin := e.userWithRole(api.VMAdmin)
	e.fails(403, api.CodePermissionDenied, "POST", "/api/tasks/"+task.UUID+"/cancel", vmAdmin, nil)

	// A "crash": the server stops with the copy half done; the VDI it was
	// filling is marked, and the next start removes it.
	e.restart()
	if e.volumes() != n {
		t.Fatalf("%d volumes after restart, want %d (the interrupted copy's VDI removed)", e.volumes(), n)
	}
	// And a marked VDI left by a real crash (no Close) is removed too,
	// whether its attributes are in the flat form of earlier versions or
	// namespaced.
	legacy := []byte(`{"name_label":"half","building":"some-task"}`)
	if _, err := e.store.Create(blockstore.CreateRequest{ID: "half-made", Pool: "x", Size: 1 << 20, Attrs: legacy}); err != nil {
		t.Fatal(err)
	}
	base := volume.Attrs{Lifecycle: volume.Lifecycle{BaseOf: src.UUID}}
	if _, err := e.store.Snapshot(blockstore.SnapshotRequest{Source: src.UUID, ID: "orphan-base", Attrs: base.Encode()}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	for _, id := range []string{"half-made", "orphan-base"} {
		if _, err := e.store.Volume(id); err == nil {
			t.Errorf("%s survived the restart", id)
		}
	}
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func TestPoolMigrateKeepsTheCBTChain(t *testing.T) {
	e := newEnv(t)
	var p2 api.VPool
	e.must(201, "POST", "/api/vpools", e.admin, map[string]any{"name": "fast", "description": "second"}, &p2)
	v := e.createVDI(map[string]any{"name_label": "m"})
	e.post(v.UUID, "enable_cbt", nil)
	s1 := e.post(v.UUID, "snapshot", nil)
	e.write(v.UUID, 0, pattern(5, 4096))
	s2 := e.post(s1.UUID, "snapshot", nil) // a snapshot of a snapshot moves too

	var task api.Task
	e.must(202, "POST", "/api/vdis/"+v.UUID+"/pool_migrate", e.admin, map[string]any{"sr": "fast"}, &task)
	done := e.waitTask(task.UUID)
	if done.Status != api.TaskSuccess {
		t.Fatalf("migrate task %+v", done)
	}
	for _, id := range []string{v.UUID, s1.UUID, s2.UUID} {
		if got := e.vdi(id); got.SR != p2.GUID {
			t.Fatalf("%s in %s after migrate, want %s", id, got.SR, p2.GUID)
		}
	}
	var cb api.ChangedBlocks
	e.must(200, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+s1.UUID, e.admin, nil, &cb)
	if cb.ChangedBlocks != 1 {
		t.Fatalf("changed blocks after migrate: %+v", cb)
	}
	e.advance(time.Minute) // past the store's usage cache
	e.must(200, "GET", "/api/vpools/fast", e.admin, nil, &p2)
	if len(p2.VDisksGUIDs) != 3 || p2.StoredData < 4096 {
		t.Fatalf("vPool after migrate: %+v", p2)
	}
	e.fails(409, api.CodeSRNotEmpty, "DELETE", "/api/vpools/fast", e.admin, nil)
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/vdis/"+v.UUID+"/pool_migrate", e.admin, map[string]any{"sr": "nope"})
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vdis/"+s1.UUID+"/pool_migrate", e.admin, map[string]any{"sr": "local"})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/"+v.UUID+"/pool_migrate", e.admin, map[string]any{})
	// Vdi-power-admin is the minimum (seed 003).
	e.fails(403, api.CodePermissionDenied, "POST", "/api/vdis/"+v.UUID+"/pool_migrate", e.userWithRole(api.VMAdmin), map[string]any{"sr": "local"})

	var list api.List[api.Task]
	e.must(200, "GET", "/api/tasks?status=success", e.admin, nil, &list)
	if list.Paging.TotalItems != 1 || list.Data[0].UUID != task.UUID {
		t.Fatalf("task list %+v", list)
	}
	_ = time.Second
}
