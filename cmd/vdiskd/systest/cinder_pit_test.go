package systest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/testwait"
	"github.com/vdiskd/vdiskd/mgmt/cinder/cinderapi"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// TestConsistencyGroupPointInTime checks that a cgsnapshot taken through
// the Cinder API is one point in time across its volumes while they are
// written. Three volumes are in one group; a writer writes sequence number
// n (8 bytes little-endian at offset 0 of a 4 KiB block that names the disk
// and n throughout) to disk 0, then disk 1, then disk 2, each write with
// FUA and acknowledged before the next, then n+1. Meanwhile cgsnapshots
// are taken. Every member snapshot (mapped to its disk by its volume_id)
// is then read over NBD, and with s_k the number disk k's snapshot holds:
//
//   - s_k <= s_{k-1}: no disk holds a number newer than the disk written
//     before it;
//   - s_0 - s_2 <= 1: disk 0 is at most one write cycle ahead of disk 2;
//   - s_2 >= the last number acknowledged on all three disks before the
//     cgsnapshot call was sent (the snapshot holds every acknowledged
//     write), and s_0 <= the last number whose writing had started when
//     the call returned;
//   - each block is whole: exactly the block written with its number.
//
// Snapshotting the members one commit at a time breaks the first two as
// soon as the writer moves between the member snapshots.
func TestConsistencyGroupPointInTime(t *testing.T) {
	const (
		tenant = "pit"
		shots  = 12
		block  = 4096
	)
	d := startVdiskd(t)
	group := d.cgCreateGroup(t, tenant, "pit-group")
	disks := d.cgCreateVolumes(t, tenant, group, "pit-disk", 3)

	var conns []*nbdtest.Client
	for _, id := range disks {
		c := d.dialExport(t, id)
		c.Timeout = 10 * time.Second // each write's wait
		c.Pipeline()
		conns = append(conns, c)
	}

	// The writer. acked is the last n acknowledged on all three disks,
	// started the last n whose write to disk 0 was sent.
	var acked, started atomic.Uint64
	stop, dead := make(chan struct{}), make(chan struct{})
	var writerErr error // set before dead is closed
	go func() {
		defer close(dead)
		for n := uint64(1); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			started.Store(n)
			for k, c := range conns {
				if err := c.Submit(nbdtest.CmdFlagFUA, nbdtest.CmdWrite, 0, block, pitBlock(k, n, block)).Wait(); err != nil {
					writerErr = fmt.Errorf("writing %d to disk %d: %w", n, k, err)
					return
				}
			}
			acked.Store(n)
		}
	}()
	var stopOnce sync.Once
	stopWriter := func() {
		stopOnce.Do(func() {
			close(stop)
			testwait.RecvWithin(t, dead, 15*time.Second, "the writer to stop")
		})
	}
	t.Cleanup(stopWriter)
	checkWriter := func() {
		t.Helper()
		select {
		case <-dead:
			t.Fatalf("the writer stopped: %v", writerErr)
		default:
		}
	}

	// The cgsnapshots: each after the writer made at least one more whole
	// cycle, and a random fraction of a cycle later, so calls land at
	// every point of a cycle.
	type shot struct {
		id                        string
		ackedBefore, startedAfter uint64
	}
	var taken []shot
	rng := rand.New(rand.NewPCG(crashSeed(t), 6))
	start := time.Now()
	for i := range shots {
		want := acked.Load() + 1
		testwait.Until(t, "the writer to finish another cycle", func() bool {
			select {
			case <-dead:
				return true
			default:
			}
			return acked.Load() >= want
		})
		checkWriter()
		coWait(time.Duration(rng.IntN(3000)) * time.Microsecond)
		ackedBefore := acked.Load()
		var out struct{ Cgsnapshot cinderapi.Summary }
		d.mustCinder(t, http.MethodPost, "/"+tenant+"/cgsnapshots", map[string]any{"cgsnapshot": map[string]any{
			"consistencygroup_id": group, "name": fmt.Sprintf("pit-%d", i)}}, &out)
		taken = append(taken, shot{id: out.Cgsnapshot.ID, ackedBefore: ackedBefore, startedAfter: started.Load()})
	}
	checkWriter()
	stopWriter()
	if writerErr != nil {
		t.Fatalf("the writer: %v", writerErr)
	}
	elapsed := time.Since(start)
	t.Logf("%d cgsnapshots while the writer made %d write cycles in %v", len(taken), acked.Load(), elapsed.Round(time.Millisecond))

	// Every member snapshot, read back.
	midCycle := 0
	var seen []string
	for _, sh := range taken {
		var snaps struct{ Snapshots []cinderapi.Snapshot }
		d.mustCinder(t, http.MethodGet, "/"+tenant+"/snapshots/detail?cgsnapshot_id="+url.QueryEscape(sh.id), nil, &snaps)
		if len(snaps.Snapshots) != len(disks) {
			t.Errorf("cgsnapshot %s lists %d member snapshots, want %d", sh.id, len(snaps.Snapshots), len(disks))
			continue
		}
		var s [3]uint64
		found := [3]bool{}
		for _, sn := range snaps.Snapshots {
			k := -1
			for i, id := range disks {
				if id == sn.VolumeID {
					k = i
				}
			}
			if k < 0 || found[k] || cgStr(sn.CGSnapshotID) != sh.id {
				t.Errorf("cgsnapshot %s: member snapshot %s has volume_id %s (disks %v) and cgsnapshot_id %s",
					sh.id, sn.ID, sn.VolumeID, disks, cgStr(sn.CGSnapshotID))
				continue
			}
			found[k] = true
			c := d.dialExport(t, sn.ID)
			got := c.Read(0, block)
			c.Close()
			s[k] = binary.LittleEndian.Uint64(got)
			if want := pitBlock(k, s[k], block); !bytes.Equal(got, want) {
				t.Errorf("cgsnapshot %s: disk %d's snapshot %s holds a torn block: number %d, first difference at byte %d",
					sh.id, k, sn.ID, s[k], firstDiff(got, want))
			}
		}
		if found != [3]bool{true, true, true} {
			continue
		}
		seen = append(seen, fmt.Sprintf("%d/%d/%d", s[0], s[1], s[2]))
		if s[0] != s[2] {
			midCycle++
		}
		var wrong []string
		if s[1] > s[0] {
			wrong = append(wrong, fmt.Sprintf("disk 1 holds %d, newer than disk 0's %d", s[1], s[0]))
		}
		if s[2] > s[1] {
			wrong = append(wrong, fmt.Sprintf("disk 2 holds %d, newer than disk 1's %d", s[2], s[1]))
		}
		if s[0] > s[2]+1 {
			wrong = append(wrong, fmt.Sprintf("disk 0 holds %d, more than one ahead of disk 2's %d", s[0], s[2]))
		}
		if s[2] < sh.ackedBefore {
			wrong = append(wrong, fmt.Sprintf("disk 2 holds %d, older than %d, acknowledged on all three disks before the call was sent",
				s[2], sh.ackedBefore))
		}
		if s[0] > sh.startedAfter {
			wrong = append(wrong, fmt.Sprintf("disk 0 holds %d, but only %d had been sent when the call returned", s[0], sh.startedAfter))
		}
		if len(wrong) > 0 {
			t.Errorf("cgsnapshot %s is not one point in time across its volumes: its snapshots of disks 0, 1, 2 hold %d, %d, %d: %s",
				sh.id, s[0], s[1], s[2], strings.Join(wrong, "; "))
		}
	}
	t.Logf("numbers held by disks 0/1/2 in each cgsnapshot: %s (%d caught mid-cycle)", strings.Join(seen, " "), midCycle)
}

// pitBlock is the block the writer writes to disk k as number n: n (8
// bytes little-endian), k, then bytes derived from both; number 0 is the
// unwritten block, zeros.
func pitBlock(k int, n uint64, size int) []byte {
	b := make([]byte, size)
	if n == 0 {
		return b
	}
	binary.LittleEndian.PutUint64(b, n)
	b[8] = byte(k)
	coPattern(b[16:], n*3+uint64(k))
	return b
}
