package mgmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

func TestVDILifecycle(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "vm1", "name_description": "disk", "virtual_size": 3 << 20,
		"other_config": map[string]string{"a": "1"}, "tags": []string{"x", "x", "y"}})
	if v.VirtualSize != 4<<20 {
		t.Fatalf("virtual_size %d: want 3 MiB rounded up to 4 MiB", v.VirtualSize)
	}
	if v.Type != "user" || v.OnBoot != "persist" || v.IsASnapshot || v.CBTEnabled || v.SnapshotOf != api.NullRef ||
		v.Parent != api.NullRef || !slices.Equal(v.Tags, []string{"x", "y"}) || v.OtherConfig["a"] != "1" ||
		v.Location != v.UUID || !v.Managed || v.ReadOnly {
		t.Fatalf("new record: %+v", v)
	}
	var local api.VPool
	e.must(200, "GET", "/api/vpools/local", e.admin, nil, &local)
	if v.SR != local.GUID {
		t.Fatalf("SR %s, want the default vPool %s", v.SR, local.GUID)
	}
	if !slices.Contains(v.AllowedOperations, "snapshot") || slices.Contains(v.AllowedOperations, "data_destroy") {
		t.Fatalf("allowed_operations %v", v.AllowedOperations)
	}

	// CBT and the XenAPI test vector: blocks 0 and 33 of a 4 MiB VDI.
	v = e.post(v.UUID, "enable_cbt", nil)
	if !v.CBTEnabled {
		t.Fatal("enable_cbt did not enable")
	}
	e.post(v.UUID, "enable_cbt", nil) // idempotent
	s1 := e.post(v.UUID, "snapshot", map[string]any{"driver_params": map[string]string{"type": "single"}})
	if !s1.IsASnapshot || s1.SnapshotOf != v.UUID || !s1.CBTEnabled || !s1.ReadOnly || s1.NameLabel != "vm1" ||
		s1.SMConfig["type"] != "single" || s1.SR != v.SR || s1.SnapshotTime.IsZero() {
		t.Fatalf("snapshot record: %+v", s1)
	}
	e.write(v.UUID, 0, pattern(1, 4096))
	e.write(v.UUID, 33*65536+512, pattern(2, 512))
	s2 := e.post(v.UUID, "snapshot", nil)
	var cb api.ChangedBlocks
	e.must(200, "GET", "/api/vdis/"+s2.UUID+"/list_changed_blocks?vdi_from="+s1.UUID, e.admin, nil, &cb)
	if cb.Bitmap != "gAAAAEAAAAA=" || cb.Granularity != 65536 || cb.ChangedBlocks != 2 || cb.VirtualSize != 4<<20 {
		t.Fatalf("list_changed_blocks %+v, want gAAAAEAAAAA=", cb)
	}
	// POST with the argument in the body answers the same.
	var cb2 api.ChangedBlocks
	e.must(200, "POST", "/api/vdis/"+s2.UUID+"/list_changed_blocks", e.admin, map[string]string{"vdi_from": s1.UUID}, &cb2)
	if cb2 != cb {
		t.Fatalf("POST list_changed_blocks %+v", cb2)
	}
	e.fails(409, api.CodeChangedBlocks, "GET", "/api/vdis/"+s1.UUID+"/list_changed_blocks?vdi_from="+s2.UUID, e.admin, nil)
	e.fails(409, api.CodeChangedBlocks, "GET", "/api/vdis/"+s1.UUID+"/list_changed_blocks?vdi_from="+s1.UUID, e.admin, nil)
	e.fails(404, api.CodeUUIDInvalid, "GET", "/api/vdis/"+s1.UUID+"/list_changed_blocks?vdi_from=nope", e.admin, nil)
	e.fails(400, api.CodeInvalidValue, "GET", "/api/vdis/"+s1.UUID+"/list_changed_blocks", e.admin, nil)
	if got := e.vdi(v.UUID).Snapshots; !slices.Equal(got, sortedIDs(s1.UUID, s2.UUID)) {
		t.Fatalf("snapshots %v", got)
	}

	// Clone: shares blocks, CBT off, fields carried.
	c := e.post(s2.UUID, "clone", nil)
	if c.CBTEnabled || c.IsASnapshot || c.ReadOnly || c.NameLabel != "vm1" || c.VirtualSize != v.VirtualSize {
		t.Fatalf("clone record %+v", c)
	}
	if !bytes.Equal(e.read(c.UUID, 0, 4096), pattern(1, 4096)) {
		t.Fatal("clone does not read its source's data")
	}

	// Resize: grow, refuse shrink, refuse on snapshots.
	v = e.post(v.UUID, "resize", map[string]any{"size": 10 << 20})
	if v.VirtualSize != 10<<20 {
		t.Fatalf("after resize: %d", v.VirtualSize)
	}
	e.fails(409, api.CodeShrinkRefused, "POST", "/api/vdis/"+v.UUID+"/resize", e.admin, map[string]any{"size": 2 << 20})
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vdis/"+s1.UUID+"/resize", e.admin, map[string]any{"size": 20 << 20})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/"+v.UUID+"/resize", e.admin, map[string]any{"size": -1})
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/"+v.UUID+"/resize", e.admin, map[string]any{"size": int64(1) << 50})
	v = e.post(v.UUID, "resize_online", map[string]any{"size": 12 << 20})
	if v.VirtualSize != 12<<20 {
		t.Fatalf("after resize_online: %d", v.VirtualSize)
	}
	// A bitmap to a grown VDI spans its new size.
	e.must(200, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+s2.UUID, e.admin, nil, &cb)
	if cb.VirtualSize != 12<<20 || cb.ChangedBlocks != 0 {
		t.Fatalf("changed blocks to the grown VDI: %+v", cb)
	}

	// Disable CBT breaks the chain for good.
	e.post(v.UUID, "disable_cbt", nil)
	e.fails(409, api.CodeChangedBlocks, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+s2.UUID, e.admin, nil)
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vdis/"+s1.UUID+"/enable_cbt", e.admin, nil)

	// Destroy, and its effects.
	before := e.volumes()
	e.must(204, "DELETE", "/api/vdis/"+c.UUID, e.admin, nil, nil)
	e.fails(404, api.CodeUUIDInvalid, "GET", "/api/vdis/"+c.UUID, e.admin, nil)
	e.fails(404, api.CodeUUIDInvalid, "DELETE", "/api/vdis/"+c.UUID, e.admin, nil)
	if e.volumes() != before-1 {
		t.Fatalf("volumes %d after destroy, want %d", e.volumes(), before-1)
	}
	// Records survive a restart.
	e.restart()
	if got := e.vdi(s1.UUID); got.NameLabel != "vm1" || got.SnapshotOf != v.UUID || !got.IsASnapshot {
		t.Fatalf("snapshot after restart %+v", got)
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func TestDataDestroy(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "d"})
	plain := e.post(v.UUID, "snapshot", nil)
	e.fails(409, api.CodeVDINoCBTMetadata, "POST", "/api/vdis/"+plain.UUID+"/data_destroy", e.admin, nil)
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vdis/"+v.UUID+"/data_destroy", e.admin, nil)
	e.post(v.UUID, "enable_cbt", nil)
	s1 := e.post(v.UUID, "snapshot", nil)
	e.write(v.UUID, 65536, pattern(3, 4096))
	s2 := e.post(v.UUID, "snapshot", nil)

	m := e.post(s1.UUID, "data_destroy", nil)
	if m.Type != "cbt_metadata" || !m.CBTEnabled || m.OtherConfig["content_id"] != volume.CBTMetadataContentID {
		t.Fatalf("after data_destroy: %+v", m)
	}
	m = e.post(s1.UUID, "data_destroy", nil) // idempotent
	for _, op := range []string{"clone", "snapshot", "enable_cbt", "disable_cbt"} {
		e.fails(409, api.CodeVDIIncompatible, "POST", "/api/vdis/"+s1.UUID+"/"+op, e.admin, nil)
	}
	e.fails(409, api.CodeVDIIncompatible, "POST", "/api/vdis/"+s1.UUID+"/resize", e.admin, map[string]any{"size": 8 << 20})
	e.fails(409, api.CodeVDIIncompatible, "POST", "/api/vdis/"+s1.UUID+"/set_on_boot", e.admin, map[string]any{"value": "reset"})
	e.fails(409, api.CodeVDIIncompatible, "POST", "/api/vdis/"+s1.UUID+"/copy", e.admin, nil)
	e.fails(409, api.CodeVDIIncompatible, "GET", "/api/vdis/"+s1.UUID+"/nbd_info", e.admin, nil)
	e.fails(409, api.CodeVDIIncompatible, "POST", "/api/vdis", e.admin, map[string]any{"virtual_size": 1 << 20, "type": "cbt_metadata"})
	// It is still a base for changed blocks.
	var cb api.ChangedBlocks
	e.must(200, "GET", "/api/vdis/"+s2.UUID+"/list_changed_blocks?vdi_from="+s1.UUID, e.admin, nil, &cb)
	if cb.ChangedBlocks != 1 || cb.Bitmap != "QAAAAAAAAAA=" {
		t.Fatalf("changed blocks from cbt_metadata: %+v", cb)
	}
	if !slices.Equal(m.AllowedOperations, []string{"destroy", "forget", "update", "data_destroy", "list_changed_blocks"}) {
		t.Fatalf("allowed_operations of cbt_metadata: %v", m.AllowedOperations)
	}
	e.must(204, "DELETE", "/api/vdis/"+s1.UUID, e.admin, nil, nil)
}

func TestSettersAndGetters(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "f"})
	id := v.UUID
	e.post(id, "set_name_label", map[string]any{"value": "new"})
	e.post(id, "set_name_description", map[string]any{"value": "desc"})
	e.post(id, "set_sharable", map[string]any{"value": true})
	e.post(id, "set_allow_caching", map[string]any{"value": true})
	e.post(id, "set_other_config", map[string]any{"value": map[string]string{"k": "v"}})
	e.post(id, "set_sm_config", map[string]any{"value": map[string]string{"s": "1"}})
	e.post(id, "set_xenstore_data", map[string]any{"value": map[string]string{"x": "2"}})
	e.post(id, "set_tags", map[string]any{"value": []string{"a", "b", "a"}})
	e.post(id, "add_tags", map[string]any{"value": "b"}) // already there: no-op
	e.post(id, "add_tags", map[string]any{"value": "c"})
	e.post(id, "remove_tags", map[string]any{"value": "a"})
	e.post(id, "remove_tags", map[string]any{"value": "zzz"}) // absent: no-op
	for _, f := range []string{"other_config", "sm_config", "xenstore_data"} {
		e.post(id, "add_to_"+f, map[string]any{"key": "new", "value": "1"})
		e.fails(409, api.CodeMapDuplicateKey, "POST", "/api/vdis/"+id+"/add_to_"+f, e.admin, map[string]any{"key": "new", "value": "2"})
		e.post(id, "remove_from_"+f, map[string]any{"key": "absent"})
	}
	e.post(id, "remove_from_other_config", map[string]any{"key": "k"})
	v = e.post(id, "set_read_only", map[string]any{"value": true})
	if !v.ReadOnly || v.NameLabel != "new" || v.NameDescription != "desc" || !v.Sharable || !v.AllowCaching ||
		!reflect.DeepEqual(v.OtherConfig, map[string]string{"new": "1"}) || v.SMConfig["s"] != "1" || v.XenstoreData["x"] != "2" ||
		!slices.Equal(v.Tags, []string{"b", "c"}) {
		t.Fatalf("record after setters: %+v", v)
	}
	// A sharable VDI refuses snapshots (xapi).
	e.fails(409, api.CodeVDIIsSharable, "POST", "/api/vdis/"+id+"/snapshot", e.admin, nil)
	e.post(id, "set_sharable", map[string]any{"value": false})
	s := e.post(id, "snapshot", nil)
	e.fails(409, api.CodeOperationNotAllowed, "POST", "/api/vdis/"+s.UUID+"/set_read_only", e.admin, map[string]any{"value": false})

	// Every getter answers the record's field.
	v = e.vdi(id)
	var rec map[string]any
	buf, _ := json.Marshal(v)
	_ = json.Unmarshal(buf, &rec)
	for _, g := range api.VDIGetters {
		var val api.Value
		e.must(200, "GET", "/api/vdis/"+id+"/"+g.Call, e.admin, nil, &val)
		if g.Field == "physical_utilisation" || g.Field == "allowed_operations" {
			continue
		}
		if fmt.Sprint(val.Value) != fmt.Sprint(rec[g.Field]) {
			t.Errorf("%s = %v, record has %v", g.Call, val.Value, rec[g.Field])
		}
	}
	var val api.Value
	e.must(200, "POST", "/api/vdis/"+id+"/get_virtual_size", e.admin, nil, &val)
	if val.Value.(float64) != float64(v.VirtualSize) {
		t.Fatalf("POST get_virtual_size %v", val.Value)
	}
}

func TestForgetAndIntroduce(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "keep", "tags": []string{"t"}})
	e.write(v.UUID, 0, pattern(9, 4096))
	e.must(204, "POST", "/api/vdis/"+v.UUID+"/forget", e.admin, nil, nil)
	e.fails(404, api.CodeUUIDInvalid, "GET", "/api/vdis/"+v.UUID, e.admin, nil)
	var list api.List[api.VDI]
	e.must(200, "GET", "/api/vdis", e.admin, nil, &list)
	if list.Paging.TotalItems != 0 {
		t.Fatalf("forgotten VDI listed: %+v", list.Data)
	}
	e.fails(400, api.CodeUUIDInvalid, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": "not-a-uuid"})
	e.fails(404, api.CodeVDIMissing, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": "11111111-2222-3333-4444-555555555555"})
	e.fails(404, api.CodeVDIMissing, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": v.UUID, "location": "elsewhere"})
	var back api.VDI
	e.must(201, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": v.UUID, "name_label": "back", "SR": "local"}, &back)
	if back.NameLabel != "back" || !slices.Equal(back.Tags, []string{"t"}) || back.VirtualSize != v.VirtualSize {
		t.Fatalf("introduced %+v", back)
	}
	if !bytes.Equal(e.read(v.UUID, 0, 4096), pattern(9, 4096)) {
		t.Fatal("data lost over forget/introduce")
	}
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": v.UUID, "snapshot_time": "9999-12-31T23:59:59-23:00"})
	// What introduce leaves out keeps its value from before the forget.
	e.post(v.UUID, "set_read_only", map[string]any{"value": true})
	e.post(v.UUID, "set_sharable", map[string]any{"value": true})
	e.post(v.UUID, "add_to_other_config", map[string]any{"key": "k", "value": "v"})
	e.must(204, "POST", "/api/vdis/"+v.UUID+"/forget", e.admin, nil, nil)
	e.must(201, "POST", "/api/vdis/introduce", e.admin, map[string]any{"uuid": v.UUID}, &back)
	if back.NameLabel != "back" || back.OtherConfig["k"] != "v" || !back.ReadOnly || !back.Sharable {
		t.Fatalf("introduce without fields lost them: %+v", back)
	}
}

// An NBD client's VBD goes a moment after the client hangs up. Calls that
// need the VDI detached, and the reset of the next writable attach, wait
// Options.DetachGrace for it; without the grace they get it wrong.
func TestCallsWaitForDetachingClients(t *testing.T) {
	e := newEnv(t)
	id := e.createVDI(map[string]any{"name_label": "golden"}).UUID
	e.write(id, 0, pattern(1, 4096))
	e.post(id, "set_on_boot", map[string]any{"value": "reset"})
	attachDirty := func() *volume.VBD {
		t.Helper()
		b, err := e.s.vols.Attach(id, "admin", true)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Disk.Write(0, pattern(2, 4096), 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	closeSoon := func(b *volume.VBD) chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(150 * time.Millisecond)
			b.Close()
		}()
		return done
	}

	// No grace: the second attach finds the first still there and does
	// not reset, and destroy is refused.
	e.s.vols.SetDetachGrace(-1)
	a := attachDirty()
	b, err := e.s.vols.Attach(id, "admin", true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.read(id, 0, 4096), pattern(2, 4096)) {
		t.Fatal("a second attach alongside the first reset the VDI")
	}
	e.fails(409, api.CodeVDIInUse, "DELETE", "/api/vdis/"+id, e.admin, nil)
	a.Close()
	b.Close()

	// With it, both wait for the attachment that is going.
	e.s.vols.SetDetachGrace(5 * time.Second)
	a = attachDirty()
	done := closeSoon(a)
	b, err = e.s.vols.Attach(id, "admin", true)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Recv(t, done, "the first client's detach")
	if !bytes.Equal(e.read(id, 0, 4096), pattern(1, 4096)) {
		t.Fatal("an attach right after a client hung up skipped the reset")
	}
	done = closeSoon(b)
	e.post(id, "set_on_boot", map[string]any{"value": "persist"})
	testwait.Recv(t, done, "the second client's detach")
	a = attachDirty()
	done = closeSoon(a)
	if code, body := e.request("DELETE", "/api/vdis/"+id, e.admin, nil); code >= 300 {
		t.Fatalf("destroy right after a client hung up: %d %s", code, body)
	}
	testwait.Recv(t, done, "the third client's detach")
}

// on_boot=reset: each writable attach starts from the content at the time
// reset was set; the XenAPI refusals around it hold.
func TestOnBootReset(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "golden"})
	id := v.UUID
	e.write(id, 0, pattern(1, 4096))
	v = e.post(id, "set_on_boot", map[string]any{"value": "reset"})
	if v.OnBoot != "reset" || slices.Contains(v.AllowedOperations, "snapshot") || slices.Contains(v.AllowedOperations, "enable_cbt") {
		t.Fatalf("after set_on_boot reset: %+v", v)
	}
	e.fails(409, api.CodeVDIOnBootMode, "POST", "/api/vdis/"+id+"/snapshot", e.admin, nil)
	e.fails(409, api.CodeVDIOnBootMode, "POST", "/api/vdis/"+id+"/enable_cbt", e.admin, nil)
	e.fails(409, api.CodeVDIOnBootMode, "POST", "/api/vdis/"+id+"/copy", e.admin, nil)
	e.fails(400, api.CodeInvalidValue, "POST", "/api/vdis/"+id+"/set_on_boot", e.admin, map[string]any{"value": "sometimes"})

	for round := 0; round < 2; round++ {
		b, err := e.s.vols.Attach(id, "admin", true)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.read(id, 0, 4096), pattern(1, 4096)) {
			t.Fatalf("round %d: attach did not reset the content", round)
		}
		if err := b.Disk.Write(0, pattern(2, 4096), 0); err != nil {
			t.Fatal(err)
		}
		got := e.vdi(id)
		if len(got.VBDs) != 1 {
			t.Fatalf("VBDs %v while attached", got.VBDs)
		}
		e.fails(409, api.CodeVDIInUse, "POST", "/api/vdis/"+id+"/set_on_boot", e.admin, map[string]any{"value": "persist"})
		e.fails(409, api.CodeVDIInUse, "DELETE", "/api/vdis/"+id, e.admin, nil)
		b.Close()
		if !bytes.Equal(e.read(id, 0, 4096), pattern(2, 4096)) {
			t.Fatalf("round %d: the write is not there until the next attach", round)
		}
	}
	// A clone of a reset VDI resets too, to its own start.
	c := e.post(id, "clone", nil)
	if c.OnBoot != "reset" {
		t.Fatalf("clone on_boot %s", c.OnBoot)
	}
	hidden := e.volumes()
	e.post(id, "set_on_boot", map[string]any{"value": "persist"})
	if e.volumes() != hidden-1 {
		t.Fatalf("persist did not drop the hidden base: %d volumes, want %d", e.volumes(), hidden-1)
	}
	b, err := e.s.vols.Attach(id, "admin", true)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if !bytes.Equal(e.read(id, 0, 4096), pattern(2, 4096)) {
		t.Fatal("persist VDI was reset on attach")
	}
	// CBT on refuses set_on_boot.
	e.post(id, "enable_cbt", nil)
	e.fails(409, api.CodeVDICBTEnabled, "POST", "/api/vdis/"+id+"/set_on_boot", e.admin, map[string]any{"value": "reset"})
	// Destroying a reset VDI takes its hidden base along.
	n := e.volumes()
	e.must(204, "DELETE", "/api/vdis/"+c.UUID, e.admin, nil, nil)
	if e.volumes() != n-2 {
		t.Fatalf("%d volumes after destroying a reset clone, want %d", e.volumes(), n-2)
	}
}

// A writable attachment blocks what XenAPI blocks while a VBD is plugged.
func TestAttachedVDI(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{})
	e.post(v.UUID, "enable_cbt", nil)
	s := e.post(v.UUID, "snapshot", nil)
	b, err := e.s.vols.Attach(v.UUID, "admin", true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e.fails(409, api.CodeVDIInUse, "POST", "/api/vdis/"+v.UUID+"/resize", e.admin, map[string]any{"size": 8 << 20})
	e.post(v.UUID, "resize_online", map[string]any{"size": 8 << 20})
	e.fails(409, api.CodeVDIInUse, "GET", "/api/vdis/"+v.UUID+"/list_changed_blocks?vdi_from="+s.UUID, e.admin, nil)
	e.post(v.UUID, "snapshot", nil)
	if _, err := e.s.vols.Attach(s.UUID, "admin", true); err == nil {
		t.Fatal("writable attach of a snapshot accepted")
	}
	ro, err := e.s.vols.Attach(s.UUID, "admin", false)
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	if got := e.vdi(v.UUID); slices.Contains(got.AllowedOperations, "destroy") || !slices.Contains(got.AllowedOperations, "snapshot") {
		t.Fatalf("allowed_operations while attached: %v", got.AllowedOperations)
	}
	_ = http.StatusOK
}

// data_destroy waits for attachments to go, and meanwhile the VDI is busy:
// no other change slips in to be overwritten.
func TestDataDestroyWaitsForDetach(t *testing.T) {
	e := newEnv(t)
	v := e.createVDI(map[string]any{"name_label": "w"})
	e.post(v.UUID, "enable_cbt", nil)
	s := e.post(v.UUID, "snapshot", nil)
	b, err := e.s.vols.Attach(s.UUID, "backup", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() }) // a failure below must not leave data_destroy waiting
	done := make(chan api.VDI, 1)
	go func() {
		var out api.VDI
		code, buf := e.request("POST", "/api/vdis/"+s.UUID+"/data_destroy", e.admin, nil)
		if code == 200 {
			_ = json.Unmarshal(buf, &out)
		}
		done <- out
	}()
	testwait.Until(t, "data_destroy to mark the snapshot busy", func() bool { return len(e.vdi(s.UUID).CurrentOperations) > 0 })
	e.fails(409, api.CodeOtherOperation, "POST", "/api/vdis/"+s.UUID+"/set_name_label", e.admin, map[string]any{"value": "x"})
	e.fails(409, api.CodeOtherOperation, "POST", "/api/vdis/"+s.UUID+"/forget", e.admin, nil)
	b.Close()
	got := testwait.Recv(t, done, "data_destroy to answer")
	if got.Type != "cbt_metadata" || got.NameLabel != "w" {
		t.Fatalf("data_destroy after detach: %+v", got)
	}
}
