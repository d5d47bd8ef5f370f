package mgmt

import (
	"slices"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
)

func TestVPools(t *testing.T) {
	e := newEnv(t)
	var local api.VPool
	e.must(200, "GET", "/api/vpools/local", e.admin, nil, &local)
	if local.Name != "local" || local.BackendType != api.BackendLocal || local.Status != api.VPoolRunning ||
		local.Size <= 0 || local.Metadata["backend_type"] != api.BackendLocal || len(local.StorageDriversGUIDs) != 1 {
		t.Fatalf("default vPool %+v", local)
	}
	for _, k := range api.StatKeys {
		if v, ok := local.Statistics[k]; !ok || v != 0 {
			t.Fatalf("statistics[%s] = %v, %v; want 0 until counters exist", k, v, ok)
		}
		if _, ok := local.Statistics[k+"_ps"]; !ok {
			t.Fatalf("statistics lacks %s_ps", k)
		}
	}
	if local.Statistics["timestamp"] <= 0 {
		t.Fatal("statistics without timestamp")
	}

	var p api.VPool
	e.must(201, "POST", "/api/vpools", e.admin, map[string]any{"name": "fast", "description": "ssd", "size": 1 << 30,
		"metadata": map[string]string{"rack": "r1"}}, &p)
	if p.Size != 1<<30 || p.Description != "ssd" || p.Metadata["rack"] != "r1" || p.GUID == local.GUID {
		t.Fatalf("created %+v", p)
	}
	e.fails(409, api.CodeNameTaken, "POST", "/api/vpools", e.admin, map[string]any{"name": "fast"})
	e.fails(403, api.CodePermissionDenied, "POST", "/api/vpools", e.userWithRole(api.VMPowerAdmin), map[string]any{"name": "x"})

	var list api.List[api.VPool]
	e.must(200, "GET", "/api/vpools", e.admin, nil, &list)
	if list.Paging.TotalItems != 2 || list.Data[0].Name != "fast" || list.Data[1].Name != "local" {
		t.Fatalf("list sorted by name: %+v", list.Paging)
	}
	v := e.createVDI(map[string]any{"SR": p.GUID})
	if v.SR != p.GUID {
		t.Fatalf("VDI in %s, want %s", v.SR, p.GUID)
	}
	e.write(v.UUID, 0, pattern(1, 4096))
	e.advance(60e9)
	e.must(200, "GET", "/api/vpools/"+p.GUID, e.admin, nil, &p)
	if !slices.Equal(p.VDisksGUIDs, []string{v.UUID}) || p.StoredData != 4096 {
		t.Fatalf("vPool with one VDI: vdisks %v stored %d", p.VDisksGUIDs, p.StoredData)
	}
	e.fails(409, api.CodeSRNotEmpty, "DELETE", "/api/vpools/fast", e.admin, nil)
	e.fails(409, api.CodeOperationNotAllowed, "DELETE", "/api/vpools/local", e.admin, nil)

	var cfg map[string]any
	e.must(200, "GET", "/api/vpools/fast/get_configuration", e.admin, nil, &cfg)
	if cfg["dtl_enabled"] != false || cfg["cluster_size"] != float64(4) {
		t.Fatalf("configuration %v", cfg)
	}
	var routers api.List[api.StorageRouter]
	e.must(200, "GET", "/api/vpools/fast/storagerouters", e.admin, nil, &routers)
	if len(routers.Data) != 1 || routers.Data[0].Name != "test-node" || routers.Data[0].IP != "127.0.0.1" ||
		!slices.Contains(routers.Data[0].VPoolsGUIDs, p.GUID) {
		t.Fatalf("storagerouters %+v", routers.Data)
	}
	var task api.Task
	e.must(202, "POST", "/api/vpools/fast/sync_vmachines", e.admin, nil, &task)
	if done := e.waitTask(task.UUID); done.Status != api.TaskSuccess {
		t.Fatalf("sync_vmachines %+v", done)
	}
	e.must(202, "POST", "/api/vpools/fast/update_storagedrivers", e.admin,
		map[string]any{"storagerouter_guids": []string{routers.Data[0].GUID}, "storagedriver_guid": p.StorageDriversGUIDs[0]}, &task)
	if done := e.waitTask(task.UUID); done.Status != api.TaskSuccess {
		t.Fatalf("update_storagedrivers %+v", done)
	}
	e.fails(404, api.CodeUUIDInvalid, "POST", "/api/vpools/fast/update_storagedrivers", e.admin,
		map[string]any{"storagerouter_guids": []string{"elsewhere"}})
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vpools/fast/update_storagedrivers", e.admin,
		map[string]any{"storagedriver_guids": p.StorageDriversGUIDs})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vpools/fast/update_storagedrivers", e.admin,
		map[string]any{"storagedriver_guid": "other"})

	e.must(204, "DELETE", "/api/vdis/"+v.UUID, e.admin, nil, nil)
	e.must(204, "DELETE", "/api/vpools/"+p.GUID, e.admin, nil, nil)
	e.fails(404, api.CodeUUIDInvalid, "GET", "/api/vpools/fast", e.admin, nil)
	// vPools survive a restart.
	e.must(201, "POST", "/api/vpools", e.admin, map[string]any{"name": "kept"}, nil)
	e.restart()
	e.must(200, "GET", "/api/vpools/kept", e.admin, nil, &p)
}

// vPool statistics (which sum the pool's VDIs under the rates' lock) and
// destroys (which drop a VDI's rates) run together without deadlock. A
// deadlock would also hang the server's cleanup, so it crashes the test
// binary instead, with every goroutine's stack.
func TestPoolStatisticsBesideDestroys(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for range 100 {
		ids = append(ids, e.createVDI(map[string]any{"name_label": "d"}).UUID)
	}
	destroyed, read := make(chan struct{}), make(chan int)
	go func() {
		defer close(destroyed)
		for _, id := range ids {
			e.request("DELETE", "/api/vdis/"+id, e.admin, nil)
		}
	}()
	go func() {
		n := 0
		for ; ; n++ {
			select {
			case <-destroyed:
				read <- n
				return
			default:
			}
			e.advance(5 * time.Second) // past the rates' cache: every read samples
			e.request("GET", "/api/vpools/local", e.admin, nil)
		}
	}()
	select {
	case n := <-read:
		t.Logf("%d vPool reads beside 100 destroys", n)
	case <-time.After(30 * time.Second):
		// Not t.Fatal: the cleanup would wait for the stuck requests. A
		// panic off the test's goroutine ends the process at once.
		go panic("vPool reads and VDI destroys deadlocked")
		select {}
	}
}
