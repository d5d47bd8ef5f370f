package mgmt

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/replication"
	"github.com/vdiskd/vdiskd/nbd"
)

// withNBD gives a daemon a real NBD server on loopback, as vdiskd runs
// one: get_nbd_info answers its address.
func withNBD(t testing.TB, zone string) *env {
	t.Helper()
	return withNBDTweak(t, zone, nil)
}

// withNBDTweak is withNBD with the server's options changed by tweak.
func withNBDTweak(t testing.TB, zone string, tweak func(*Options)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	e := newEnvWith(t, func(o *Options) {
		inZone(zone, nil)(o)
		o.NodeName = "node-" + zone
		o.NBDInfo = func(name string) []api.NBDInfo {
			// The URI as vdiskd's: the export name escaped as one path.
			return []api.NBDInfo{{ExportName: name, Address: "127.0.0.1", Port: port,
				URI: "nbd://127.0.0.1:" + strconv.Itoa(port) + "/" + url.PathEscape(name)}}
		}
		if tweak != nil {
			tweak(o)
		}
	})
	e.nbdAddr = ln.Addr().String()
	srv, err := nbd.NewServer(nbd.Options{Exports: e.s.NBDExports(NBDAuthToken)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return e
}

// fromA is what the cycles of these tests ship from: relation 1 of zone
// a's default vPool.
var fromA = replication.Origin{Zone: "a", VPoolName: "local", Seq: 1}

// One VDI's cycles from zone a to zone b: the first sync ships only the
// blocks holding data, each later cycle only the blocks written since, and
// every replica snapshot holds what its source snapshot held.
func TestReplicationCycles(t *testing.T) {
	a := newEnvWith(t, inZone("a", nil))
	b := withNBD(t, "b")
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}, nil)
	v := a.createVDI(map[string]any{"name_label": "web", "virtual_size": 1 << 30}) // 1 GiB, sparse
	blk := uint64(replication.BlockSize)
	a.write(v.UUID, 0, pattern(1, 4096))
	a.write(v.UUID, 100*blk+512, pattern(2, 8192))
	a.write(v.UUID, 16383*blk, pattern(3, int(blk))) // the last block

	dst, err := a.s.newPeerTarget("b", "local")
	if err != nil {
		t.Fatal(err)
	}
	src := localSource{a.s.vols}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := replication.ReplicaState{Seq: 1, VDI: v.UUID}
	check := func(what string) {
		t.Helper()
		last := st.Snapshots[len(st.Snapshots)-1]
		for _, off := range []uint64{0, 100 * blk, 200 * blk, 16383 * blk} {
			want, got := a.read(st.Base, off, int(blk)), b.read(last.Replica, off, int(blk))
			if !bytes.Equal(want, got) {
				t.Fatalf("%s: the replica snapshot differs from the source's at %d", what, off)
			}
		}
	}

	st, stats, err := replication.Cycle(ctx, st, fromA, "web", src, dst, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !stats.Full || stats.Blocks != 3 || stats.Bytes != 3*blk || st.Replica == "" {
		t.Fatalf("first sync %+v, state %+v", stats, st)
	}
	check("first sync")

	// The replica is read-only to everyone but the replicator (user admin
	// there): no writable attach, no destroy or resize; reading and
	// snapshotting it are fine.
	other := b.userWithRole(api.VMAdmin)
	if _, err := b.s.vols.Attach(st.Replica, "u-vm-admin", true); err == nil {
		t.Fatal("another user attached the replica writable")
	}
	b.fails(http.StatusConflict, api.CodeVDIReadOnly, "DELETE", "/api/vdis/"+st.Replica, other, nil)
	b.fails(http.StatusConflict, api.CodeVDIReadOnly, "POST", "/api/vdis/"+st.Replica+"/resize", other, map[string]any{"size": 2 << 30})
	b.fails(http.StatusConflict, api.CodeVDIReadOnly, "POST", "/api/vdis/"+st.Replica+"/set_on_boot", other, map[string]any{"value": "reset"})
	vbd, err := b.s.vols.Attach(st.Replica, "u-vm-admin", false)
	if err != nil {
		t.Fatalf("reading the replica: %v", err)
	}
	vbd.Close()
	b.fails(http.StatusBadRequest, api.CodeInvalidValue, "POST", "/api/vdis", b.admin,
		map[string]any{"virtual_size": 1 << 20, "replica_of": "no-slash"})

	a.write(v.UUID, 200*blk, pattern(4, 4096))
	a.write(v.UUID, 0, pattern(5, 512))
	first := st
	st, stats, err = replication.Cycle(ctx, st, fromA, "web", src, dst, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Stored: the first base is no longer needed on the source.
	if err := src.Sweep(1, v.UUID, st.Base); err != nil {
		t.Fatal(err)
	}
	if code, _ := a.request("GET", "/api/vdis/"+first.Base, a.admin, nil); code != http.StatusNotFound {
		t.Fatalf("the released base answers %d", code)
	}
	if stats.Full || stats.Blocks != 2 || stats.Bytes != 2*blk || len(st.Snapshots) != 2 || st.Shipped != 5*blk {
		t.Fatalf("second cycle %+v, state %+v", stats, st)
	}
	check("second cycle")

	// Nothing written: nothing shipped, and still a replica snapshot.
	st, stats, err = replication.Cycle(ctx, st, fromA, "web", src, dst, 4)
	if err != nil || stats.Blocks != 0 || len(st.Snapshots) != 3 {
		t.Fatalf("an idle cycle: %v %+v", err, stats)
	}
	check("idle cycle")

	// A cycle whose state was never stored (a crash) is repeated from the
	// stored state: the replica converges, without a full resync.
	stale := st
	a.write(v.UUID, 300*blk, pattern(6, 4096))
	if _, _, err = replication.Cycle(ctx, stale, fromA, "web", src, dst, 2); err != nil {
		t.Fatal(err)
	}
	a.write(v.UUID, 301*blk, pattern(7, 4096))
	st, stats, err = replication.Cycle(ctx, stale, fromA, "web", src, dst, 2)
	if err != nil || stats.Full || stats.Blocks != 2 {
		t.Fatalf("repeated cycle: %v %+v", err, stats)
	}
	check("repeated cycle")
	if err := src.Sweep(1, v.UUID, st.Base); err != nil {
		t.Fatal(err)
	}
	if n := len(a.vdi(v.UUID).Snapshots); n != 1 {
		t.Fatalf("after a sweep %d snapshots remain on the source, want the base alone", n)
	}
	for _, off := range []uint64{300 * blk, 301 * blk} {
		last := st.Snapshots[len(st.Snapshots)-1]
		if !bytes.Equal(a.read(st.Base, off, int(blk)), b.read(last.Replica, off, int(blk))) {
			t.Fatalf("after the repeated cycle block %d differs", off/blk)
		}
	}
}

// A relation's rounds: every live VDI of the vPool gets its replica, new
// VDIs follow, the status and bytes shipped show through the API, and
// after a restart the rounds go on from the stored states.
func TestReplicatorRounds(t *testing.T) {
	a := newEnvWith(t, inZone("a", nil))
	b := withNBD(t, "b")
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}, nil)
	blk := uint64(replication.BlockSize)
	v1 := a.createVDI(map[string]any{"name_label": "one", "virtual_size": 64 << 20})
	v2 := a.createVDI(map[string]any{"name_label": "two", "virtual_size": 64 << 20})
	a.write(v1.UUID, 0, pattern(1, int(blk)))
	a.write(v2.UUID, 5*blk, pattern(2, int(blk)))
	var r api.Replication
	a.must(http.StatusCreated, "POST", "/api/replications", a.admin,
		map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "local", "interval_s": 60, "retention": 1}, &r)
	if r.Status != "initializing" {
		t.Fatalf("before any round: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	round := func() {
		t.Helper()
		if err := a.s.replicator.Round(ctx, r.Seq); err != nil {
			t.Fatal(err)
		}
		a.must(http.StatusOK, "GET", "/api/replications/1", a.admin, nil, &r)
	}
	round()
	if r.Status != "active" || r.Bytes != 2*blk || r.LastError != "" {
		t.Fatalf("after the first round: %+v", r)
	}
	if m := a.s.ReplicationMetrics()(); len(m) != 1 || m[0].State != "active" || m[0].ShippedBytes != 2*blk || m[0].DstZone != "b" {
		t.Fatalf("metrics %+v", m)
	}
	// A new VDI follows; only what changed is shipped.
	v3 := a.createVDI(map[string]any{"name_label": "three", "virtual_size": 64 << 20})
	a.write(v3.UUID, 0, pattern(3, 4096))
	a.write(v1.UUID, 9*blk, pattern(4, 4096))
	round()
	if r.Bytes != 4*blk {
		t.Fatalf("after the second round %d bytes shipped, want %d", r.Bytes, 4*blk)
	}
	replicas, err := a.s.replicator.Replicas(r.Seq)
	if err != nil || len(replicas) != 3 {
		t.Fatalf("replicas %v %v", replicas, err)
	}
	for _, id := range []string{v1.UUID, v2.UUID, v3.UUID} {
		st := replicas[id]
		last := st.Snapshots[len(st.Snapshots)-1]
		for _, off := range []uint64{0, 5 * blk, 9 * blk} {
			if !bytes.Equal(a.read(st.Base, off, int(blk)), b.read(last.Replica, off, int(blk))) {
				t.Fatalf("%s's replica differs at block %d", id, off/blk)
			}
		}
	}
	// A restart: the relation is still active (from the stored states),
	// and the next round ships only the new block.
	a.restart()
	a.admin = a.login("admin", adminPassword)
	a.s.zones.ProbeAll()
	a.must(http.StatusOK, "GET", "/api/replications/1", a.admin, nil, &r)
	if r.Status != "active" || r.Bytes != 4*blk {
		t.Fatalf("after a restart, before a round: %+v", r)
	}
	a.write(v2.UUID, 0, pattern(5, 512))
	round()
	if r.Bytes != 5*blk {
		t.Fatalf("after a restart %d bytes shipped, want %d", r.Bytes, 5*blk)
	}
	// Retention 1: the newest frozen replica snapshot and one before it
	// stay; older ones are gone from the backup zone.
	replicas, err = a.s.replicator.Replicas(r.Seq)
	if err != nil {
		t.Fatal(err)
	}
	st1 := replicas[v1.UUID]
	if len(st1.Snapshots) != 2 {
		t.Fatalf("%d replica snapshots kept of %s, want 2", len(st1.Snapshots), v1.UUID)
	}
	if n := len(b.vdi(st1.Replica).Snapshots); n != 2 {
		t.Fatalf("the backup zone keeps %d snapshots of the replica, want 2", n)
	}
	// A VDI destroyed here: its replica goes there; its last replica
	// snapshots stay, to recover from.
	gone := replicas[v3.UUID]
	a.must(http.StatusNoContent, "DELETE", "/api/vdis/"+v3.UUID, a.admin, nil, nil)
	round()
	if code, _ := b.request("GET", "/api/vdis/"+gone.Replica, b.admin, nil); code != http.StatusNotFound {
		t.Fatalf("the replica of a destroyed VDI answers %d", code)
	}
	// ... and retention never thins them, however many rounds follow.
	a.write(v1.UUID, 0, pattern(6, 512))
	round()
	round()
	for _, p := range gone.Snapshots {
		if code, _ := b.request("GET", "/api/vdis/"+p.Replica, b.admin, nil); code != http.StatusOK {
			t.Fatalf("a replica snapshot of the destroyed VDI answers %d", code)
		}
	}
	if replicas, _ = a.s.replicator.Replicas(r.Seq); len(replicas) != 2 {
		t.Fatalf("states after the destroy: %d", len(replicas))
	}
	if code, _ := a.request("GET", "/api/vdis/"+gone.Base, a.admin, nil); code != http.StatusNotFound {
		t.Fatalf("the base of the destroyed VDI stays on the source: %d", code)
	}
	// The replicator keeps one base per VDI on the source, not one per
	// cycle (checked below, before the relation goes with its states).
	var snaps int
	for _, id := range []string{v1.UUID, v2.UUID} {
		snaps += len(a.vdi(id).Snapshots)
	}
	if snaps != 2 {
		t.Fatalf("%d replication snapshots kept on the source, want 2", snaps)
	}
	a.must(http.StatusNoContent, "DELETE", "/api/replications/1", a.admin, nil, nil)
	if replicas, err := a.s.replicator.Replicas(r.Seq); err != nil || len(replicas) != 0 {
		t.Fatalf("a deleted relation's states: %v %v", replicas, err)
	}
	// The replicas stay in the backup zone, with their snapshots.
	if code, _ := b.request("GET", "/api/vdis/"+st1.Replica, b.admin, nil); code != http.StatusOK {
		t.Fatalf("a replica after its relation was deleted answers %d", code)
	}
}

// Snapshots users take are shipped in order, each into a replica
// snapshot tagged with its origin, holding what it held.
func TestReplicationShipsUserSnapshots(t *testing.T) {
	a := newEnvWith(t, inZone("a", nil))
	b := withNBD(t, "b")
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": b.srv.URL, "username": "admin", "password": adminPassword}, nil)
	v := a.createVDI(map[string]any{"name_label": "db", "virtual_size": 64 << 20})
	blk := uint64(replication.BlockSize)
	dst, err := a.s.newPeerTarget("b", "local")
	if err != nil {
		t.Fatal(err)
	}
	src := localSource{a.s.vols}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.write(v.UUID, 0, pattern(1, int(blk)))
	u1 := a.post(v.UUID, "snapshot", nil).UUID // before the first sync
	a.write(v.UUID, 0, pattern(2, int(blk)))
	st, stats, err := replication.Cycle(ctx, replication.ReplicaState{Seq: 1, VDI: v.UUID}, fromA, "db", src, dst, 2)
	if err != nil || len(st.Snapshots) != 2 || st.Snapshots[0].Source != u1 || stats.Blocks != 2 {
		t.Fatalf("first sync: %v %+v %+v", err, stats, st)
	}
	a.write(v.UUID, blk, pattern(3, int(blk)))
	u2 := a.post(v.UUID, "snapshot", nil).UUID
	a.write(v.UUID, 2*blk, pattern(4, int(blk)))
	u3 := a.post(v.UUID, "snapshot", nil).UUID
	a.write(v.UUID, 0, pattern(5, int(blk)))
	st, stats, err = replication.Cycle(ctx, st, fromA, "db", src, dst, 2)
	if err != nil || len(st.Snapshots) != 5 || stats.Full {
		t.Fatalf("second cycle: %v %+v %+v", err, stats, st)
	}
	// u2 holds block 1 changed, u3 block 2, the frozen one block 0: each
	// point ships only what changed since the one before.
	if stats.Blocks != 3 {
		t.Fatalf("second cycle shipped %d blocks, want 3", stats.Blocks)
	}
	for i, want := range []string{u1, "", u2, u3, ""} {
		pair := st.Snapshots[i]
		if want != "" && pair.Source != want {
			t.Fatalf("point %d is %s, want %s", i, pair.Source, want)
		}
		rs := b.vdi(pair.Replica)
		if rs.SMConfig["replica_of_snapshot"] != pair.Source || rs.SMConfig["replica_of_zone"] != "a" || rs.SMConfig["replica_of_vdi"] != v.UUID {
			t.Fatalf("replica snapshot %s is tagged %v", pair.Replica, rs.SMConfig)
		}
		if want == "" {
			continue // a replicator's base: swept once stored
		}
		for _, off := range []uint64{0, blk, 2 * blk} {
			if !bytes.Equal(a.read(pair.Source, off, int(blk)), b.read(pair.Replica, off, int(blk))) {
				t.Fatalf("the replica of %s differs at block %d", pair.Source, off/blk)
			}
		}
	}
	// Sweeping keeps the users' snapshots.
	if err := src.Sweep(1, v.UUID, st.Base); err != nil {
		t.Fatal(err)
	}
	if snaps := a.vdi(v.UUID).Snapshots; len(snaps) != 4 {
		t.Fatalf("after the sweep the source has snapshots %v, want u1, u2, u3 and the base", snaps)
	}
}
