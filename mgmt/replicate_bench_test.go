package mgmt

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/replication"
)

// A cycle's cost follows the blocks changed, not the VDI's size (issue
// 18): the same 64 MiB changed (1,024 blocks spread over the VDI) in a
// 1 GiB and a 64 GiB VDI. Both daemons run in this process with real NBD
// servers on loopback; stores are in memory.
//
//	go test -run '^$' -bench 'BenchmarkReplication' -benchtime 10x ./mgmt
func BenchmarkReplicationCycle(b *testing.B) {
	for _, size := range []uint64{1 << 30, 64 << 30} {
		b.Run(fmt.Sprintf("vdi=%dGiB/changed=64MiB", size>>30), func(b *testing.B) {
			a, dst, st, src, target := replicationPair(b, size)
			const blocks = 1024
			stride := size / replication.BlockSize / blocks
			buf := pattern(7, replication.BlockSize)
			ctx := context.Background()
			b.SetBytes(blocks * replication.BlockSize)
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				buf[0] = byte(i)
				for k := uint64(0); k < blocks; k++ {
					a.write(st.VDI, k*stride*replication.BlockSize, buf)
				}
				b.StartTimer()
				next, stats, err := replication.Cycle(ctx, st, fromA, "bench", src, target, 4)
				if err != nil || stats.Blocks != blocks {
					b.Fatalf("cycle: %v, %d blocks", err, stats.Blocks)
				}
				b.StopTimer()
				if err := src.Sweep(1, st.VDI, next.Base); err != nil {
					b.Fatal(err)
				}
				st = next
				b.StartTimer()
			}
			_ = dst
		})
	}
}

// The replicator's throughput on a first sync of 1 GiB of data, beside
// nbdcopy copying the same snapshot between the same two NBD servers.
func BenchmarkReplicationThroughput(b *testing.B) {
	const size = 1 << 30
	b.Run("replicator", func(b *testing.B) {
		a, _, st, src, target := replicationPair(b, size)
		fill(a, st.VDI, size)
		b.SetBytes(size)
		defer reportCPU(b, size)()
		for b.Loop() {
			// A new replica each time: a first sync of every block.
			next, stats, err := replication.Cycle(context.Background(), replication.ReplicaState{Seq: 1, VDI: st.VDI},
				fromA, "bench", src, target, 4)
			if err != nil || stats.Bytes != size {
				b.Fatalf("cycle: %v, %d bytes", err, stats.Bytes)
			}
			b.StopTimer()
			if err := src.Sweep(1, st.VDI, ""); err != nil {
				b.Fatal(err)
			}
			_ = next
			b.StartTimer()
		}
	})
	b.Run("nbdcopy", func(b *testing.B) {
		if _, err := exec.LookPath("nbdcopy"); err != nil {
			b.Fatal("nbdcopy is missing (make test installs libnbd-bin)")
		}
		a, dst, st, _, _ := replicationPair(b, size)
		fill(a, st.VDI, size)
		snap := a.post(st.VDI, "snapshot", nil).UUID
		from := nbdURI(b, a, snap)
		b.SetBytes(size)
		defer reportCPU(b, size)()
		for b.Loop() {
			b.StopTimer()
			to := dst.createVDI(map[string]any{"name_label": "copy", "virtual_size": size}).UUID
			uri := nbdURI(b, dst, to)
			b.StartTimer()
			if out, err := exec.Command("nbdcopy", "--flush", "--connections=4", from, uri).CombinedOutput(); err != nil {
				b.Fatalf("nbdcopy: %v\n%s", err, out)
			}
		}
	})
}

// reportCPU reports the CPU seconds per GiB moved (this process, both
// daemons and the replicator, plus nbdcopy as a child) from here to the
// call of what it returns: steadier than MB/s on a shared machine.
func reportCPU(b *testing.B, bytesPerOp uint64) func() {
	cpu := func() time.Duration {
		var self, kids syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
		tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
		return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
	}
	start := cpu()
	return func() {
		gib := float64(bytesPerOp) * float64(b.N) / (1 << 30)
		b.ReportMetric((cpu()-start).Seconds()/gib, "cpu-s/GiB")
	}
}

// replicationPair is zone a with one VDI of size and zone b with a real
// NBD server, a's peer; the VDI's replica state before its first cycle,
// and the relation's two ends.
func replicationPair(b *testing.B, size uint64) (*env, *env, replication.ReplicaState, replication.Source, replication.Target) {
	a, dst := withNBD(b, "a"), withNBD(b, "b")
	a.must(http.StatusCreated, "POST", "/api/zones", a.admin,
		map[string]any{"name": "b", "url": dst.srv.URL, "username": "admin", "password": adminPassword}, nil)
	v := a.createVDI(map[string]any{"name_label": "bench", "virtual_size": size})
	target, err := a.s.newPeerTarget("b", "local")
	if err != nil {
		b.Fatal(err)
	}
	src := localSource{a.s.vols}
	st := replication.ReplicaState{Seq: 1, VDI: v.UUID}
	// The first sync, outside the measurement.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	next, _, err := replication.Cycle(ctx, st, fromA, "bench", src, target, 4)
	if err != nil {
		b.Fatal(err)
	}
	if err := src.Sweep(1, v.UUID, next.Base); err != nil {
		b.Fatal(err)
	}
	return a, dst, next, src, target
}

// fill writes every block of vdi.
func fill(e *env, vdi string, size uint64) {
	chunk := pattern(3, 4<<20)
	for off := uint64(0); off < size; off += uint64(len(chunk)) {
		e.write(vdi, off, chunk)
	}
}

// nbdURI is a VDI's NBD URI, token included, from get_nbd_info.
func nbdURI(b *testing.B, e *env, vdi string) string {
	var infos []api.NBDInfo
	e.must(http.StatusOK, "GET", "/api/vdis/"+vdi+"/nbd_info", e.admin, nil, &infos)
	if len(infos) == 0 {
		b.Fatal("no NBD info")
	}
	return infos[0].URI
}
