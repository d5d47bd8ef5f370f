package systest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// zoneWrite is one write of the test's model: n bytes at off, pattern
// seed.
type zoneWrite struct {
	off, n uint64
	seed   byte
}

// fillZonePattern fills p, which sits at off, with seed's pattern: each 8
// bytes hold seed and their own offset, so a block in the wrong place
// or from the wrong write shows.
func fillZonePattern(p []byte, off uint64, seed byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(seed)<<56|(off+uint64(i)))
	}
}

// expected is what [off, off+n) holds after writes, in order.
func expected(writes []zoneWrite, off, n uint64) []byte {
	out := make([]byte, n)
	for _, w := range writes {
		lo, hi := max(off, w.off), min(off+n, w.off+w.n)
		if lo < hi {
			fillZonePattern(out[lo-off:hi-off], lo, w.seed)
		}
	}
	return out
}

const zoneChunk = 4 << 20

// writeZone writes w to vdi over NBD, flushed.
func (d *daemon) writeZone(t *testing.T, vdi string, w zoneWrite) {
	t.Helper()
	c := d.dialExport(t, vdi)
	buf := make([]byte, zoneChunk)
	for off := w.off; off < w.off+w.n; off += zoneChunk {
		p := buf[:min(zoneChunk, w.off+w.n-off)]
		fillZonePattern(p, off, w.seed)
		c.Write(off, p)
	}
	if r := c.Do(0, nbdtest.CmdFlush, 0, 0, nil); r.Errno != 0 {
		t.Fatalf("flush: %v", r)
	}
	c.Close()
	protoWaitVBDs(t, d, vdi, 0)
}

// checkZone reads vdi (size bytes) over NBD and fails the test where it
// differs from what writes left.
func (d *daemon) checkZone(t *testing.T, what, vdi string, size uint64, writes []zoneWrite) {
	t.Helper()
	c := d.dialExport(t, vdi)
	for off := uint64(0); off < size; off += zoneChunk {
		n := min(zoneChunk, size-off)
		if got := c.Read(off, uint32(n)); !bytes.Equal(got, expected(writes, off, n)) {
			t.Fatalf("%s: %s differs from the model in [%d, %d)", what, vdi, off, off+n)
		}
	}
	c.Close()
	protoWaitVBDs(t, d, vdi, 0)
}

// replicas are the replica snapshots d holds of vdi, oldest first.
func (d *daemon) replicas(t *testing.T, vdi string) []api.Replica {
	t.Helper()
	var l api.List[api.Replica]
	d.MustCall(t, "GET", "/replicas?origin_vdi="+vdi, nil, &l)
	return l.Data
}

// relation reads relation seq.
func (d *daemon) relation(t *testing.T, seq int) api.Replication {
	t.Helper()
	var r api.Replication
	d.MustCall(t, "GET", fmt.Sprintf("/replications/%d", seq), nil, &r)
	return r
}

// waitReplicas waits until dst holds more than n replica snapshots of vdi
// and src's relation 1 is active again, and answers them.
func waitReplicas(t *testing.T, src, dst *daemon, vdi string, n int) []api.Replica {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		reps := dst.replicas(t, vdi)
		r := src.relation(t, 1)
		if len(reps) > n && r.Status == "active" {
			return reps
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s %s holds %d replica snapshots of %s (want more than %d); relation 1: %+v",
				dst.URL, len(reps), vdi, n, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitShipped waits for relation 1 to end a round that shipped bytes
// (its total moves from since only when a round ends) and answers how
// many.
func waitShipped(t *testing.T, a *daemon, since uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if r := a.relation(t, 1); r.Bytes != since {
			return r.Bytes - since
		}
		if time.Now().After(deadline) {
			t.Fatalf("relation 1 shipped nothing more in 60 s: %+v", a.relation(t, 1))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freezes counts the snapshots the replicator took, from the log.
var freezeLine = regexp.MustCompile(`msg="VDI snapshot" .* by=replication`)

func (d *daemon) freezes() int { return len(freezeLine.FindAllString(d.Log(), -1)) }

// waitFreeze waits until the replicator froze more than n times: a cycle
// is under way.
func (d *daemon) waitFreeze(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); d.freezes() <= n; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the replicator did not start a cycle within 30 s")
		}
	}
}

// kvolJob queues a kvol job at d and waits for its end, which must be a
// success.
func (d *daemon) kvolJob(t *testing.T, call, list string, params string) kvolapi.Job {
	t.Helper()
	var q kvolapi.Queued
	if code := d.Call(t, "GET", "/kvol/"+call+"?"+params, nil, &q); code != http.StatusOK {
		t.Fatalf("kvol %s?%s: %d", call, params, code)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var jobs kvolapi.Jobs
		if code := d.Call(t, "GET", fmt.Sprintf("/kvol/%s?rowkey=%d", list, q.Rowkey), nil, &jobs); code != http.StatusOK || len(jobs.Clist) != 1 {
			t.Fatalf("kvol %s rowkey=%d: %d %+v", list, q.Rowkey, code, jobs)
		}
		switch j := jobs.Clist[0]; j.Status {
		case kvolapi.StatusSuccess:
			return j
		case kvolapi.StatusFailed:
			t.Fatalf("kvol job %d: %s", q.Rowkey, j.ResultMsg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvol job %d not done after 60 s", q.Rowkey)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Three real daemons, zones a, b and c: a replicates its vPool to b; c
// makes a volume from one of a's snapshots; SIGKILL of a mid-cycle, and b
// recovers a's volume from its last replicated state; a restarts and its
// relation resumes; SIGKILL of b mid-cycle, and the next cycle ships only
// what changed; a 10 GiB sparse VDI ships only its allocated blocks.
func TestZonesReplicateAndRecover(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-img")
	start := func(zone string) *daemon {
		return &daemon{vdiskdtest.Start(t, vdiskdtest.Options{Args: []string{"--zone", zone}})}
	}
	a, b, c := start("a"), start("b"), start("c")
	register := func(at *daemon, name string, peer *daemon) {
		at.MustCall(t, "POST", "/zones", map[string]any{"name": name, "url": peer.URL, "username": "admin",
			"password": testAdminPassword}, nil)
	}
	register(a, "b", b)
	register(c, "a", a)
	register(c, "b", b)

	const size = 512 << 20
	const mib = 1 << 20
	v := a.CreateVDI(t, "web", size).UUID
	writes := []zoneWrite{{0, 64 * mib, 1}}
	a.writeZone(t, v, writes[0])
	s1 := a.Snapshot(t, v).UUID
	a.MustCall(t, "POST", "/replications", map[string]any{"vpool": "local", "dst_zone": "b", "dst_vpool": "local",
		"interval_s": 3600}, nil)
	reps := waitReplicas(t, a, b, v, 1) // s1's replica and the frozen point's
	if len(reps) != 2 || reps[0].OriginSnapshot != s1 {
		t.Fatalf("b's replicas after the first round: %+v", reps)
	}
	b.checkZone(t, "the replica of the first frozen point", reps[1].Snapshot, size, writes)

	// c makes a volume from a's snapshot s1: a copy over NBD from b.
	j := c.kvolJob(t, "create", "createlist", "src-zone=a&src-volume-type-id=local&src-snapshot-id="+s1+
		"&dst-zone=c&dst-tenant-id=t1&dst-volume-type-id=local&bootable=yes")
	if j.SrcZoneID != "b" || j.OrgSnapshotID != s1 {
		t.Fatalf("create job %+v", j)
	}
	vdiskdtest.RunTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", a.URI(t, s1), c.URI(t, j.NewVolumeID))

	// a dies in the middle of a cycle; b recovers its volume from the
	// newest replica it holds, without a.
	w2 := zoneWrite{64 * mib, 192 * mib, 2}
	a.writeZone(t, v, w2)
	n := a.freezes()
	a.MustCall(t, "POST", "/replications/1/sync", nil, nil)
	a.waitFreeze(t, n)
	a.Kill(t)
	j = b.kvolJob(t, "recovery", "recoverylist", "src-zone=a&src-volume-type-id=local&src-volume-id="+v+
		"&dst-zone=b&dst-tenant-id=t1&dst-volume-type-id=local")
	reps = b.replicas(t, v)
	replicated := writes // the cycle was cut: the first frozen point is the newest
	if len(reps) == 3 {
		replicated = append(writes, w2) // it ended before the kill
		t.Logf("the cycle a was killed in had ended already")
	}
	b.checkZone(t, "the recovered volume", j.NewVolumeID, size, replicated)
	writes = append(writes, w2)

	// a restarts: the relation resumes, from its stored state.
	a = &daemon{a.RelaunchInPlace(t)}
	reps = waitReplicas(t, a, b, v, len(reps))
	b.checkZone(t, "the replica after a's restart", reps[len(reps)-1].Snapshot, size, writes)

	// b dies in the middle of a cycle: once it is back, the next cycle
	// ships what changed since the last completed one, not everything.
	shipped := a.relation(t, 1).Bytes
	w3 := zoneWrite{256 * mib, 96 * mib, 3}
	a.writeZone(t, v, w3)
	writes = append(writes, w3)
	n = a.freezes()
	a.MustCall(t, "POST", "/replications/1/sync", nil, nil)
	a.waitFreeze(t, n)
	b.Kill(t)
	b = &daemon{b.RelaunchInPlace(t)}
	a.MustCall(t, "POST", "/replications/1/sync", nil, nil)
	if got := waitShipped(t, a, shipped); got != w3.n {
		t.Fatalf("after b's crash the relation shipped %d bytes more; what changed is %d (a full resync: %d)", got, w3.n, 352*mib)
	}
	reps = waitReplicas(t, a, b, v, len(reps))
	b.checkZone(t, "the replica after b's crash", reps[len(reps)-1].Snapshot, size, writes)

	// A 10 GiB sparse VDI: only its three written blocks are shipped.
	const blk = 64 << 10
	sparse := a.CreateVDI(t, "sparse", 10<<30).UUID
	for i, off := range []uint64{0, 5 << 30, 10<<30 - blk} {
		a.writeZone(t, sparse, zoneWrite{off, blk, byte(10 + i)})
	}
	shipped = a.relation(t, 1).Bytes
	a.MustCall(t, "POST", "/replications/1/sync", nil, nil)
	if got := waitShipped(t, a, shipped); got != 3*blk {
		t.Fatalf("the 10 GiB sparse VDI shipped %d bytes; it holds %d", got, 3*blk)
	}
}
