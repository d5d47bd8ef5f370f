package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/mgmt/volume"
)

// kvolGet sends one kvol call with Basic admin:token, as the seed's
// clients do, and decodes a 200's body into out.
func (e *env) kvolGet(want int, call string, params url.Values, out any) {
	e.t.Helper()
	code, body := e.request("GET", "/api/kvol/"+call+"?"+params.Encode(), "basic:admin:"+e.admin, nil)
	if code != want {
		e.t.Fatalf("kvol %s?%s: %d %s, want %d", call, params.Encode(), code, body, want)
	}
	if want == http.StatusNoContent && len(body) != 0 {
		e.t.Fatalf("kvol %s: 204 with a body %q", call, body)
	}
	if out != nil && want == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			e.t.Fatalf("kvol %s: %v in %s", call, err, body)
		}
	}
}

// waitJob polls a job row until it ends, and fails the test if it does
// not within 30 s or does not succeed.
func (e *env) waitJob(list string, rowkey int64) kvolapi.Job {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var jobs kvolapi.Jobs
		e.kvolGet(http.StatusOK, list, url.Values{"rowkey": {fmt.Sprint(rowkey)}}, &jobs)
		if len(jobs.Clist) != 1 || jobs.Clist[0].Rowkey != rowkey {
			e.t.Fatalf("%s rowkey=%d: %+v", list, rowkey, jobs)
		}
		j := jobs.Clist[0]
		switch j.Status {
		case kvolapi.StatusSuccess:
			return j
		case kvolapi.StatusFailed:
			e.t.Fatalf("job %d failed: %s", rowkey, j.ResultMsg)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %d still %s after 30 s", rowkey, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three zones: a replicates its vPool to b; c (a peer of a and b) and b
// answer kvol for a, make volumes from a's snapshots (a clone in b, where
// the replica lives; a copy over NBD in c), and b recovers a's volume
// from its newest replica without asking a.
func TestKvolAcrossZones(t *testing.T) {
	a, b, c := withNBD(t, "a"), withNBD(t, "b"), withNBD(t, "c")
	register := func(at *env, name string, peer *env) {
		at.must(http.StatusCreated, "POST", "/api/zones", at.admin,
			map[string]any{"name": name, "url": peer.srv.URL, "username": "admin", "password": adminPassword}, nil)
	}
	register(a, "b", b)
	register(c, "a", a)
	register(c, "b", b)
	guid, ferr := a.s.vols.Pool("local", "vPool")
	if ferr != nil {
		t.Fatal(ferr)
	}
	blk := uint64(replication.BlockSize)
	v := a.createVDI(map[string]any{"name_label": "web", "virtual_size": 64 << 20})
	a.write(v.UUID, 0, pattern(1, int(blk)))
	a.write(v.UUID, 7*blk+100, pattern(2, 5000))
	s1 := a.post(v.UUID, "snapshot", nil).UUID
	a.write(v.UUID, 0, pattern(3, 4096))
	a.write(v.UUID, 40*blk, pattern(4, int(blk)))
	var r api.Replication
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "local", "interval_s": 60}, &r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.s.replicator.Round(ctx, r.Seq); err != nil {
		t.Fatal(err)
	}

	// b's catalogue: the replicas of s1 and of the frozen point, tagged
	// with their origin.
	var reps api.List[api.Replica]
	b.must(http.StatusOK, "GET", "/api/replicas?origin_zone=a&origin_vdi="+v.UUID, b.admin, nil, &reps)
	if len(reps.Data) != 2 || reps.Data[0].OriginSnapshot != s1 || reps.Data[0].OriginVPool != guid.GUID ||
		reps.Data[0].OriginVPoolName != "local" || reps.Data[0].OriginSeq != r.Seq || reps.Data[0].NameLabel != "web" {
		t.Fatalf("b's replicas %+v", reps.Data)
	}
	frozen := reps.Data[1]

	// list and show, asked of a (its own relations) and of c (which asks
	// a); by guid or name.
	for _, at := range []*env{a, c} {
		var bl kvolapi.Backups
		at.kvolGet(http.StatusOK, "list", url.Values{"zone": {"a"}, "volume-type-id": {guid.GUID}}, &bl)
		want := kvolapi.Backup{ClusterIP: "127.0.0.1", Name: "local", Seq: r.Seq, SVMIP: "127.0.0.1", SVMName: "node-b", ZoneID: "b"}
		if len(bl.Backup) != 1 || bl.Backup[0] != want {
			t.Fatalf("list at %s: %+v", at.s.opts.Zone, bl)
		}
		var sh kvolapi.BackupDetails
		at.kvolGet(http.StatusOK, "show", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"}}, &sh)
		if len(sh.BackupDetail) != 1 {
			t.Fatalf("show at %s: %+v", at.s.opts.Zone, sh)
		}
		d := sh.BackupDetail[0]
		if d.Status != "active" || d.SrcSVMName != "node-a" || d.DstSVMName != "node-b" || d.DstZone != "b" ||
			!strings.HasPrefix(d.SrcPath, "nbd://127.0.0.1:") || !strings.HasPrefix(d.DstPath, "nbd://127.0.0.1:") || d.SrcPath == d.DstPath {
			t.Fatalf("show at %s: %+v", at.s.opts.Zone, d)
		}
		at.kvolGet(http.StatusNoContent, "show", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"}, "dst-zone": {"c"}}, nil)
		at.kvolGet(http.StatusNoContent, "list", url.Values{"zone": {"a"}, "volume-type-id": {"other"}}, nil)
	}
	// b does not know a as a peer: it answers from the replicas it holds.
	var sh kvolapi.BackupDetails
	b.kvolGet(http.StatusOK, "show", url.Values{"src-zone": {"a"}, "src-volume-type-id": {guid.GUID}}, &sh)
	if len(sh.BackupDetail) != 1 || sh.BackupDetail[0].DstZone != "b" || sh.BackupDetail[0].Status != "broken" ||
		sh.BackupDetail[0].Seq != r.Seq {
		t.Fatalf("show at b: %+v", sh)
	}

	// create in c: a copy of s1's replica over NBD from b; bootable and
	// the tenant are Cinder's fields of the new volume.
	var q kvolapi.Queued
	c.kvolGet(http.StatusOK, "create", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"},
		"src-snapshot-id": {s1}, "bootable": {"yes"}, "dst-zone": {"c"}, "dst-tenant-id": {"t1"},
		"dst-volume-type-id": {"local"}}, &q)
	if q.Message != "snapshot volume creating ..." || q.Rowkey != 1 {
		t.Fatalf("create: %+v", q)
	}
	j := c.waitJob("createlist", q.Rowkey)
	if j.OrgZoneID != "a" || j.OrgSnapshotID != s1 || j.SrcZoneID != "b" || j.SrcSVMName != "node-b" ||
		j.DstZoneID != "c" || j.DstSVMName != "node-c" || j.ResultMsg != "OK" || j.CreateStart == "" || j.CreateEnd == "" {
		t.Fatalf("job %+v", j)
	}
	sameBytes(t, a, s1, c, j.NewVolumeID, 64<<20)
	cv := c.cinderOK(http.StatusOK, "GET", "/v3/t1/volumes/"+j.NewVolumeID, nil)["volume"].(map[string]any)
	if cv["bootable"] != "true" || cv["name"] != "web" || cv["os-vol-tenant-attr:tenant_id"] != "t1" {
		t.Fatalf("the new volume as Cinder shows it: %v", cv)
	}

	// create in b, where the replica lives: a clone, nothing copied.
	b.kvolGet(http.StatusOK, "create", url.Values{"src-zone": {"a"}, "src-volume-type-id": {guid.GUID},
		"src-snapshot-id": {s1}, "dst-zone": {"b"}, "dst-tenant-id": {"t2"}, "dst-volume-type-id": {"local"}}, &q)
	j = b.waitJob("createlist", q.Rowkey)
	if got := b.vdi(j.NewVolumeID); got.IsASnapshot || j.SrcZoneID != "b" {
		t.Fatalf("the clone %+v, job %+v", got, j)
	}
	if info, err := b.store.Volume(j.NewVolumeID); err != nil || info.CloneOf != reps.Data[0].Snapshot {
		t.Fatalf("b's volume is not a clone of the replica snapshot: %+v %v", info, err)
	}
	sameBytes(t, a, s1, b, j.NewVolumeID, 64<<20)

	// a fails: b recovers its volume from the newest replica, the frozen
	// point, without a.
	a.stop()
	b.kvolGet(http.StatusOK, "recovery", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"},
		"src-volume-id": {v.UUID}, "dst-zone": {"b"}, "dst-tenant-id": {"t1"}, "dst-volume-type-id": {"local"}}, &q)
	if q.Message != "recovery volume creating ..." {
		t.Fatalf("recovery: %+v", q)
	}
	j = b.waitJob("recoverylist", q.Rowkey)
	if j.OrgVolumeID != v.UUID || j.OrgSnapshotID != "" || j.SrcZoneID != "b" {
		t.Fatalf("recovery job %+v", j)
	}
	sameBytes(t, b, frozen.Snapshot, b, j.NewVolumeID, 64<<20)
	if got := b.read(j.NewVolumeID, 40*blk, int(blk)); !bytes.Equal(got, pattern(4, int(blk))) {
		t.Fatal("the recovered volume lacks the write before the last cycle")
	}
	// c recovers it too, over NBD from b, asking only b.
	c.kvolGet(http.StatusOK, "recovery", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"},
		"src-volume-id": {v.UUID}, "dst-zone": {"c"}, "dst-tenant-id": {"t1"}, "dst-volume-type-id": {"local"}}, &q)
	j = c.waitJob("recoverylist", q.Rowkey)
	sameBytes(t, b, frozen.Snapshot, c, j.NewVolumeID, 64<<20)

	// The rows outlive a restart; the latest come first.
	c.restart()
	var jobs kvolapi.Jobs
	c.kvolGet(http.StatusOK, "createlist", url.Values{}, &jobs)
	if len(jobs.Clist) != 1 || jobs.Clist[0].Rowkey != 1 || jobs.Clist[0].Status != kvolapi.StatusSuccess {
		t.Fatalf("createlist after a restart: %+v", jobs)
	}
	c.kvolGet(http.StatusOK, "recoverylist", url.Values{"limit": {"1"}}, &jobs)
	if len(jobs.Clist) != 1 || jobs.Clist[0].Rowkey != 2 {
		t.Fatalf("recoverylist: %+v", jobs)
	}
	c.kvolGet(http.StatusNoContent, "recoverylist", url.Values{"rowkey": {"1"}}, nil) // a create's rowkey
}

// sameBytes compares n bytes of VDI x in zone ex with VDI y in zone ey.
func sameBytes(t *testing.T, ex *env, x string, ey *env, y string, n int) {
	t.Helper()
	const chunk = 4 << 20
	for off := 0; off < n; off += chunk {
		if !bytes.Equal(ex.read(x, uint64(off), chunk), ey.read(y, uint64(off), chunk)) {
			t.Fatalf("%s and %s differ in [%d, %d)", x, y, off, off+chunk)
		}
	}
}

// Every kvol parameter error is a 400 naming the parameter, that changes
// nothing; a bad or missing credential is 401, a read-only user's create
// 403; no data is 204.
func TestKvolRefusals(t *testing.T) {
	e := withNBD(t, "z1")
	snap := "6f1c2a4e-1b7d-4e0b-9a51-3c1d2e3f4a5b"
	create := url.Values{"src-zone": {"z0"}, "src-volume-type-id": {"local"}, "src-snapshot-id": {snap},
		"dst-zone": {"z1"}, "dst-tenant-id": {"t"}, "dst-volume-type-id": {"local"}}
	recovery := url.Values{"src-zone": {"z0"}, "src-volume-type-id": {"local"}, "src-volume-id": {snap},
		"dst-zone": {"z1"}, "dst-tenant-id": {"t"}, "dst-volume-type-id": {"local"}}
	with := func(v url.Values, k, val string) url.Values {
		out := url.Values{}
		for kk, vv := range v {
			out[kk] = vv
		}
		if val == "<absent>" {
			out.Del(k)
		} else {
			out.Set(k, val)
		}
		return out
	}
	type refusal struct {
		call   string
		params url.Values
		param  string // the parameter the error names
	}
	var cases []refusal
	for _, k := range []string{"src-zone", "src-volume-type-id", "src-snapshot-id", "dst-zone", "dst-tenant-id", "dst-volume-type-id"} {
		cases = append(cases, refusal{"create", with(create, k, "<absent>"), k}, refusal{"create", with(create, k, ""), k})
	}
	for _, k := range []string{"src-zone", "src-volume-type-id", "src-volume-id", "dst-zone", "dst-tenant-id", "dst-volume-type-id"} {
		cases = append(cases, refusal{"recovery", with(recovery, k, "<absent>"), k})
	}
	cases = append(cases,
		refusal{"create", with(create, "src-snapshot-id", "not-a-uuid"), "src-snapshot-id"},
		refusal{"create", with(create, "bootable", "true"), "bootable"},
		refusal{"create", with(create, "src-zone", "a zone"), "src-zone"},
		refusal{"create", with(create, "dst-zone", "z2"), "dst-zone"},                       // not this daemon's
		refusal{"create", with(create, "dst-volume-type-id", "nope"), "dst-volume-type-id"}, // no such vPool
		refusal{"create", with(create, "dst-tenant-id", strings.Repeat("x", 256)), "dst-tenant-id"},
		refusal{"create", with(create, "src_zone", "z0"), "src_zone"}, // an unknown parameter
		refusal{"recovery", with(recovery, "src-volume-id", "x"), "src-volume-id"},
		refusal{"recovery", with(recovery, "dst-zone", "z0"), "dst-zone"}, // its own failed zone
		refusal{"recovery", with(recovery, "src-zone", "z1"), "dst-zone"},
		refusal{"list", url.Values{"zone": {"z0"}}, "volume-type-id"},
		refusal{"list", url.Values{"volume-type-id": {"local"}}, "zone"},
		refusal{"list", url.Values{"zone": {"z0"}, "volume-type-id": {"local"}, "volume_type_id": {"x"}}, "volume_type_id"},
		refusal{"show", url.Values{"src-zone": {"z0"}}, "src-volume-type-id"},
		refusal{"show", url.Values{"src-zone": {"z0"}, "src-volume-type-id": {"local"}, "dst-zone": {"a/b"}}, "dst-zone"},
		refusal{"createlist", url.Values{"rowkey": {"-1"}}, "rowkey"},
		refusal{"createlist", url.Values{"rowkey": {"abc"}}, "rowkey"},
		refusal{"recoverylist", url.Values{"limit": {"1001"}}, "limit"},
		refusal{"recoverylist", url.Values{"limit": {"-2"}}, "limit"},
	)
	for _, c := range cases {
		code, body := e.request("GET", "/api/kvol/"+c.call+"?"+c.params.Encode(), "basic:admin:"+e.admin, nil)
		var eb struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if code != http.StatusBadRequest || json.Unmarshal(body, &eb) != nil || eb.Code != 400 || !strings.Contains(eb.Message, c.param) {
			t.Errorf("%s?%s: %d %s, want 400 naming %s", c.call, c.params.Encode(), code, body, c.param)
		}
	}
	// No job was queued by any of them.
	e.kvolGet(http.StatusNoContent, "createlist", url.Values{}, nil)
	e.kvolGet(http.StatusNoContent, "recoverylist", url.Values{}, nil)

	// No replica anywhere: no data, and no job.
	e.kvolGet(http.StatusNoContent, "create", create, nil)
	e.kvolGet(http.StatusNoContent, "recovery", recovery, nil)
	e.kvolGet(http.StatusNoContent, "list", url.Values{"zone": {"z1"}, "volume-type-id": {"local"}}, nil)
	e.kvolGet(http.StatusNoContent, "show", url.Values{"src-zone": {"z0"}, "src-volume-type-id": {"local"}}, nil)
	e.kvolGet(http.StatusNoContent, "createlist", url.Values{"rowkey": {"7"}}, nil)

	// 401: none, a wrong token, another user's token, an expired one.
	list := "/api/kvol/list?zone=z1&volume-type-id=local"
	ro := e.userWithRole(api.ReadOnly)
	for _, cred := range []string{"", "basic:admin:not-a-token", "basic:someone:" + e.admin, "basic:admin:" + ro} {
		code, body := e.request("GET", list, cred, nil)
		if code != http.StatusUnauthorized || !strings.Contains(string(body), `"code":401`) {
			t.Errorf("credential %q: %d %s", cred, code, body)
		}
	}
	e.kvolGet(http.StatusNoContent, "list", url.Values{"zone": {"z1"}, "volume-type-id": {"local"}}, nil)
	if code, _ := e.request("GET", list, "basic:u-read-only:"+ro, nil); code != http.StatusNoContent {
		t.Errorf("a read-only user's list: %d", code)
	}
	if code, body := e.request("GET", "/api/kvol/create?"+create.Encode(), "basic:u-read-only:"+ro, nil); code != http.StatusForbidden {
		t.Errorf("a read-only user's create: %d %s", code, body)
	}
	e.advance(25 * time.Hour) // past the tokens' lifetime
	if code, body := e.request("GET", list, "basic:admin:"+e.admin, nil); code != http.StatusUnauthorized || !strings.Contains(string(body), "expired") {
		t.Errorf("an expired token: %d %s", code, body)
	}
	if code, _ := e.request("GET", "/api/kvol/nothing", "", nil); code != http.StatusNotFound {
		t.Errorf("an unknown kvol path: %d", code)
	}
}

// A job a stop cut runs again at the next start: a copy fills the volume
// it had begun (found by its kvol attributes), and a job whose replica is
// gone fails, saying why, without leaving a volume behind. Here the copy
// is local: the replica is in b, the volume is made in another vPool.
func TestKvolJobsResume(t *testing.T) {
	a, b := withNBD(t, "a"), withNBD(t, "b")
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}, nil)
	b.must(http.StatusCreated, "POST", "/api/vpools", b.admin, map[string]any{"name": "other"}, nil)
	other, ferr := b.s.vols.Pool("other", "vPool")
	if ferr != nil {
		t.Fatal(ferr)
	}
	blk := uint64(replication.BlockSize)
	v := a.createVDI(map[string]any{"name_label": "db", "virtual_size": 16 << 20})
	a.write(v.UUID, 0, pattern(1, int(3*blk)))
	a.write(v.UUID, 200*blk, pattern(2, 4096))
	s1 := a.post(v.UUID, "snapshot", nil).UUID
	var r api.Replication
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "local"}, &r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.s.replicator.Round(ctx, r.Seq); err != nil {
		t.Fatal(err)
	}
	var reps api.List[api.Replica]
	b.must(http.StatusOK, "GET", "/api/replicas?origin_snapshot="+s1, b.admin, nil, &reps)
	if len(reps.Data) != 1 {
		t.Fatalf("b's replicas of %s: %+v", s1, reps.Data)
	}
	rep := reps.Data[0]

	// Two rows as a stop leaves them: one copy under way into a volume
	// that holds its first block so far, one whose replica is gone.
	half, err := b.s.vols.Create(volume.CreateRequest{Pool: other.GUID, Size: 16 << 20, Xen: volume.XenAttrs{NameLabel: "db"},
		Surfaces: map[string][]byte{"kvol": []byte(`{"rowkey":7,"kind":"create","org_zone":"a","filling":true}`)}})
	if err != nil {
		t.Fatal(err)
	}
	b.write(half.Info.ID, 0, pattern(1, int(blk)))
	doomed, err := b.s.vols.Create(volume.CreateRequest{Pool: other.GUID, Size: 16 << 20,
		Surfaces: map[string][]byte{"kvol": []byte(`{"rowkey":8,"kind":"create","org_zone":"a","filling":true}`)}})
	if err != nil {
		t.Fatal(err)
	}
	row := func(rowkey int, snapshot string) map[string]any {
		return map[string]any{"rowkey": rowkey, "kind": "create", "status": "RUNNING", "queued": b.clock(), "start": b.clock(),
			"by": "admin", "org_zone": "a", "org_vpool": "local", "org_snapshot": s1, "dst_zone": "b", "dst_pool": other.GUID,
			"tenant": "t1", "src_zone": "b", "src_snapshot": snapshot, "src_vpool": rep.VPool, "name": "db"}
	}
	batch := b.s.db.NewBatch()
	batch.Put(fmt.Sprintf("kvol/job/%016d", 7), row(7, rep.Snapshot))
	batch.Put(fmt.Sprintf("kvol/job/%016d", 8), row(8, "0b0b0b0b-0000-4000-8000-000000000000"))
	batch.Put("kvol-next-rowkey", 9)
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	before := b.volumes()
	b.restart()
	b.admin = b.login("admin", adminPassword)

	j := b.waitJob("createlist", 7)
	if j.NewVolumeID != half.Info.ID {
		t.Fatalf("the resumed job made %s, not the volume it had begun (%s)", j.NewVolumeID, half.Info.ID)
	}
	sameBytes(t, a, s1, b, j.NewVolumeID, 16<<20)
	var failed kvolapi.Jobs
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.kvolGet(http.StatusOK, "createlist", url.Values{"rowkey": {"8"}}, &failed)
		if failed.Clist[0].Status == kvolapi.StatusFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job 8 is %s after 30 s", failed.Clist[0].Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if f := failed.Clist[0]; !strings.Contains(f.ResultMsg, "0b0b0b0b") || f.NewVolumeID != "" || f.CreateEnd == "" {
		t.Fatalf("the failed job %+v", f)
	}
	if got := b.volumes(); got != before-1 {
		t.Fatalf("%d volumes after the jobs, %d before: the failed job left its volume behind", got, before)
	}
	if code, _ := b.request("GET", "/api/vdis/"+doomed.Info.ID, b.admin, nil); code != http.StatusNotFound {
		t.Fatalf("the failed job's volume answers %d", code)
	}
	// The next job gets the next rowkey.
	var q kvolapi.Queued
	b.kvolGet(http.StatusOK, "create", url.Values{"src-zone": {"a"}, "src-volume-type-id": {"local"},
		"src-snapshot-id": {s1}, "dst-zone": {"b"}, "dst-tenant-id": {"t1"}, "dst-volume-type-id": {"other"}}, &q)
	if q.Rowkey != 9 {
		t.Fatalf("the next job's rowkey %d", q.Rowkey)
	}
	j = b.waitJob("createlist", 9)
	sameBytes(t, a, s1, b, j.NewVolumeID, 16<<20)
}
