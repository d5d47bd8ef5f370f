package systest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// TestCrashDataAndCBT SIGKILLs the real daemon under write load, many
// rounds on one data dir, and checks after each restart that
//
//   - every write acknowledged as durable reads back, unless a later write
//     touched the same bytes: the test's own NBD writer (two connections,
//     eight requests in flight each) counts a write durable when its FUA
//     reply arrived, or when a FLUSH on any connection (the export offers
//     CAN_MULTI_CONN) was sent after the write's reply arrived and its own
//     reply arrived, or when a snapshot call that started after the reply
//     answered (a snapshot fsyncs). Every 512-byte sector it writes names
//     the write and the sector, so a sector must hold one of the writes
//     allowed for it: the last durable one or a later one. qemu-io's writes
//     are checked the same way in 4 KiB units, each `flush` counting once
//     a later command printed its result;
//   - snapshots taken during the load hold, per sector, a write at or after
//     the last one acknowledged before the call started, issued before it
//     answered;
//   - the VDIs, their snapshot links, cbt_enabled and sizes read back over
//     REST as they were; a snapshot call cut by the kill may or may not have
//     happened, an answered one did;
//   - a snapshot taken before the round's load holds what live held then,
//     and the first base holds what it was taken with;
//   - list_changed_blocks covers every 64 KiB block whose content differs
//     between the base snapshot's export and the live one's, fio's
//     randwrite region included; also from the round's snapshot to live
//     (only this round's changes, so the check stays sharp once every
//     block differs from the base) and around a mid-load snapshot.
//     Over-reporting is allowed, under-reporting is not.
//
// The kill comes at a seeded random moment (logged) while fio (nbd
// engine, randwrite with fsync), qemu-io (write -P, flush) and the test's
// writer run. A SIGKILL leaves the kernel's page cache alone, so this
// proves the daemon keeps no acknowledged data in its memory, not fsync
// against power loss (blockstore's own crash test does no more).
func TestCrashDataAndCBT(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io", "fio")
	seed := crashSeed(t)
	rounds := crashRounds(12, 150, 2)
	d := startVdiskd(t)
	live := d.CreateVDI(t, "crash-live", cdSize)
	d.MustCall(t, http.MethodPost, "/vdis/"+live.UUID+"/enable_cbt", nil, nil)

	w := newVerifyingWriter(cdWriterLen / cdSector)
	q := newQemuLoad(cdQemuLen / cdQemuUnit)
	c := d.dialExport(t, live.UUID)
	if c.TFlags&nbdtest.TFlagCanMultiConn == 0 {
		t.Fatalf("the export does not offer CAN_MULTI_CONN (flags %#x); the durability model counts FLUSH across connections", c.TFlags)
	}
	w.prefill(t, c)
	c.WriteAt(nbdtest.CmdFlagFUA, bytes.Repeat([]byte{cdQemuPrefill}, cdQemuLen), cdQemuOff)
	c.Close()
	base := d.Snapshot(t, live.UUID)
	want := cdBaseContent(w)

	var mid *cdSnapshot // the newest surviving mid-load snapshot
	before := want      // live as the last check read it
	for r := 0; r < rounds; r++ {
		rng := crashRand(seed, uint64(r))
		killAfter := time.Duration(150+rng.IntN(1100)) * time.Millisecond
		snapAt := time.Duration(-1)
		if rng.IntN(2) == 0 {
			snapAt = time.Duration(rng.IntN(int(killAfter/time.Millisecond)+150)) * time.Millisecond
		}
		dropAt := time.Duration(-1)
		if mid != nil {
			dropAt = time.Duration(rng.IntN(int(killAfter/time.Millisecond)+150)) * time.Millisecond
		}
		w.beginRound()
		q.beginRound()
		disks := cdDisks{live: live.UUID, base: base.UUID, baseWant: want,
			roundBase: d.Snapshot(t, live.UUID).UUID, roundWant: before}
		round := cdRun(t, d, live.UUID, w, q, rng, killAfter, snapAt, dropAt, mid)
		d = d.relaunch(t)
		mid, before = cdCheck(t, d, disks, w, q, round, mid)
		t.Logf("round %d: killed after %v; %s", r, killAfter, round)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d); the daemon's log after the restart:\n%s", r, seed, tail(d.Log(), 40))
		}
	}
	t.Logf("%d rounds: writer %d requests, qemu-io %d invocations", rounds, w.total, q.invocations)
}

// cdDisks are the VDIs a round checks: live, the first base snapshot and
// the round's, with the content each was taken with.
type cdDisks struct {
	live, base, roundBase string
	baseWant, roundWant   []byte
}

const (
	cdSize        = 64 << 20
	cdWriterOff   = 0 // the verifying writer's region
	cdWriterLen   = 16 << 20
	cdQemuOff     = 16 << 20 // qemu-io's
	cdQemuLen     = 16 << 20
	cdFioOff      = 32 << 20 // fio's (checked through CBT only)
	cdFioLen      = 32 << 20
	cdSector      = 512
	cdQemuUnit    = 4096
	cdQemuPrefill = 0xee
	cdPrefillID   = 1
)

// cdBaseContent is the whole disk as the base snapshot froze it.
func cdBaseContent(w *verifyingWriter) []byte {
	b := make([]byte, cdSize)
	for s := 0; s < w.sectors; s++ {
		fillSector(b[cdWriterOff+s*cdSector:][:cdSector], cdPrefillID, s)
	}
	for i := cdQemuOff; i < cdQemuOff+cdQemuLen; i++ {
		b[i] = cdQemuPrefill
	}
	return b
}

// cdSnapshot is a snapshot call made during the load. start and end are
// writer ticks before the call and after its answer (end 0: no answer).
type cdSnapshot struct {
	uuid       string
	start, end uint64
	answered   bool
}

// cdRound is what one round's REST calls did before the kill.
type cdRound struct {
	snap      *cdSnapshot // nil: no snapshot call reached the daemon
	dropTried bool        // the previous snapshot's destroy went out before the kill
	dropped   bool        // and it answered

	// What was checked, for the log.
	requests, durable      int // the writer's requests and durable writes
	qemuWrites, qemuStable int
	differ, marked         int // 64 KiB blocks round base -> live: differing, in list_changed_blocks
	snapChecked            bool
}

func (r *cdRound) String() string {
	s := fmt.Sprintf("writer %d requests (%d writes durable), qemu-io %d writes (%d stable), round base -> live %d blocks differ (%d marked)",
		r.requests, r.durable, r.qemuWrites, r.qemuStable, r.differ, r.marked)
	switch {
	case r.snap == nil:
	case r.snapChecked:
		s += fmt.Sprintf("; snapshot during the load (answered %v) checked", r.snap.answered)
	default:
		s += fmt.Sprintf("; snapshot during the load (answered %v) did not happen", r.snap.answered)
	}
	if r.dropTried {
		s += fmt.Sprintf("; destroy of the previous one answered %v", r.dropped)
	}
	return s
}

// cdRun runs the load, kills the daemon after killAfter and waits for
// every client to notice.
func cdRun(t *testing.T, d *daemon, live string, w *verifyingWriter, q *qemuLoad, rng *rand.Rand,
	killAfter, snapAt, dropAt time.Duration, prev *cdSnapshot) *cdRound {
	t.Helper()
	round := &cdRound{}
	stop := make(chan struct{})
	var killed atomic.Bool
	var wg sync.WaitGroup

	// The verifying writer: two connections.
	for i := 0; i < 2; i++ {
		c := d.dialExport(t, live)
		c.Pipeline()
		wrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.drive(c, wrng, stop)
			c.Abort()
		}()
	}
	// qemu-io, one invocation after another.
	uri := d.URI(t, live)
	qrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.drive(uri, qrng, stop, &killed)
	}()
	// fio until the daemon dies.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fio := exec.CommandContext(ctx, "fio", "--name=crashload", "--ioengine=nbd", "--uri="+uri,
		"--rw=randwrite", "--bsrange=4k-64k", "--iodepth=16", "--offset="+fmt.Sprint(cdFioOff),
		"--size="+fmt.Sprint(cdFioLen), "--fsync=16", "--time_based", "--runtime=50",
		"--randseed="+fmt.Sprint(rng.Uint32()), "--output="+filepath.Join(t.TempDir(), "fio.out"))
	var fioOut bytes.Buffer
	fio.Stdout, fio.Stderr = &fioOut, &fioOut
	if err := fio.Start(); err != nil {
		t.Fatal(err)
	}
	fioDone := make(chan error, 1)
	go func() { fioDone <- fio.Wait() }()

	// REST calls at their moments. A call that starts after the kill
	// cannot have happened; one that starts before may have.
	var restErrs []string
	var restMu sync.Mutex
	if snapAt >= 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(snapAt)
			if killed.Load() {
				return
			}
			s := &cdSnapshot{start: w.now()}
			round.snap = s
			var v api.VDI
			st, eb, err := d.TryCall(http.MethodPost, "/vdis/"+live+"/snapshot", nil, &v)
			switch {
			case err != nil: // cut by the kill
			case st != http.StatusOK:
				restMu.Lock()
				restErrs = append(restErrs, fmt.Sprintf("snapshot during the load: HTTP %d %+v", st, eb))
				restMu.Unlock()
			default:
				s.end, s.uuid, s.answered = w.now(), v.UUID, true
				w.durableBefore(s.start) // the snapshot fsynced every write acknowledged before it
			}
		}()
	}
	if dropAt >= 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(dropAt)
			if killed.Load() {
				return
			}
			round.dropTried = true
			st, eb, err := d.TryCall(http.MethodDelete, "/vdis/"+prev.uuid, nil, nil)
			round.dropped = err == nil && st < 300
			if err == nil && st >= 300 {
				restMu.Lock()
				restErrs = append(restErrs, fmt.Sprintf("destroy during the load: HTTP %d %+v", st, eb))
				restMu.Unlock()
			}
		}()
	}

	time.Sleep(killAfter)
	select {
	case err := <-fioDone:
		t.Errorf("fio ended before the kill: %v\n%s", err, fioOut.String())
		fioDone <- err
	default:
	}
	killed.Store(true)
	d.Kill(t)
	close(stop)
	wg.Wait()
	if err := <-fioDone; err == nil {
		t.Errorf("fio exited 0 although the daemon was killed under it\n%s", fioOut.String())
	}
	for _, p := range append(append(restErrs, w.takeProblems()...), q.takeProblems()...) {
		t.Error(p)
	}
	return round
}

// cdCheck verifies the restarted daemon against the models. It returns
// the newest surviving mid-load snapshot and live's content; the round's
// base is destroyed.
func cdCheck(t *testing.T, d *daemon, disks cdDisks, w *verifyingWriter, q *qemuLoad,
	round *cdRound, prev *cdSnapshot) (*cdSnapshot, []byte) {
	t.Helper()
	live, base := disks.live, disks.base
	// Metadata: which snapshots exist, and their records.
	vdis := d.vdis(t)
	expect := map[string]bool{live: true, base: true, disks.roundBase: true}
	if prev != nil {
		_, ok := vdis[prev.uuid]
		switch {
		case ok && round.dropped:
			t.Errorf("snapshot %s is listed after its destroy answered", prev.uuid)
		case !ok && !round.dropTried:
			t.Errorf("snapshot %s is gone though no destroy reached the daemon", prev.uuid)
		}
		if ok {
			expect[prev.uuid] = true
		}
	}
	var snap *cdSnapshot
	if s := round.snap; s != nil {
		if s.answered {
			if _, ok := vdis[s.uuid]; !ok {
				t.Errorf("snapshot %s answered before the kill but is gone after the restart", s.uuid)
			} else {
				snap = s
			}
		} else {
			for id, v := range vdis { // a snapshot whose answer the kill cut
				if !expect[id] && v.IsASnapshot && v.SnapshotOf == live {
					s.uuid = id
					snap = s
				}
			}
		}
		if snap != nil {
			expect[snap.uuid] = true
		}
	}
	for id, v := range vdis {
		if !expect[id] {
			t.Errorf("unexpected VDI after the restart: %+v", v)
		}
	}
	var snaps []string
	for id := range expect {
		if id != live {
			snaps = append(snaps, id)
		}
	}
	lv, ok := vdis[live]
	if !ok {
		t.Fatalf("the live VDI %s is gone after the restart", live)
	}
	if !lv.CBTEnabled || lv.VirtualSize != cdSize || lv.IsASnapshot {
		t.Errorf("live VDI after the restart: cbt_enabled %v, virtual_size %d, is_a_snapshot %v", lv.CBTEnabled, lv.VirtualSize, lv.IsASnapshot)
	}
	if got := slices.Sorted(slices.Values(lv.Snapshots)); !slices.Equal(got, slices.Sorted(slices.Values(snaps))) {
		t.Errorf("live VDI's snapshots %v, want %v", got, slices.Sorted(slices.Values(snaps)))
	}
	for _, id := range snaps {
		v, ok := vdis[id]
		if !ok {
			t.Fatalf("snapshot %s is gone after the restart", id)
		}
		if !v.IsASnapshot || v.SnapshotOf != live || !v.CBTEnabled || v.VirtualSize != cdSize || !v.ReadOnly {
			t.Errorf("snapshot %s after the restart: is_a_snapshot %v, snapshot_of %s, cbt_enabled %v, virtual_size %d, read_only %v",
				id, v.IsASnapshot, v.SnapshotOf, v.CBTEnabled, v.VirtualSize, v.ReadOnly)
		}
	}

	// Data.
	baseData := d.readExport(t, base)
	if !bytes.Equal(baseData, disks.baseWant) {
		t.Errorf("the base snapshot's content changed: first difference at byte %d", firstDiff(baseData, disks.baseWant))
	}
	roundData := d.readExport(t, disks.roundBase)
	if !bytes.Equal(roundData, disks.roundWant) {
		t.Errorf("the round's base snapshot is not what live held when it was taken: first difference at byte %d",
			firstDiff(roundData, disks.roundWant))
	}
	liveData := d.readExport(t, live)
	for _, p := range w.verify(liveData[cdWriterOff:cdWriterOff+cdWriterLen], nil) {
		t.Error("live: " + p)
	}
	for _, p := range q.verify(liveData[cdQemuOff : cdQemuOff+cdQemuLen]) {
		t.Error("live, qemu-io region: " + p)
	}
	d.checkCBTCovers(t, "base -> live", base, live, baseData, liveData)
	round.differ, round.marked = d.checkCBTCovers(t, "round base -> live", disks.roundBase, live, roundData, liveData)
	round.requests, round.durable = w.stats()
	round.qemuWrites, round.qemuStable = q.stats()
	round.snapChecked = snap != nil
	if snap != nil {
		snapData := d.readExport(t, snap.uuid)
		for _, p := range w.verify(snapData[cdWriterOff:cdWriterOff+cdWriterLen], snap) {
			t.Error("mid-load snapshot: " + p)
		}
		d.checkCBTCovers(t, "base -> mid-load snapshot", base, snap.uuid, baseData, snapData)
		d.checkCBTCovers(t, "mid-load snapshot -> live", snap.uuid, live, snapData, liveData)
	}
	w.endRound(liveData[cdWriterOff : cdWriterOff+cdWriterLen])
	q.endRound(liveData[cdQemuOff : cdQemuOff+cdQemuLen])

	// Keep one mid-load snapshot: the newest.
	newest := prev
	if prev != nil && !expect[prev.uuid] {
		newest = nil
	}
	if snap != nil {
		if newest != nil {
			d.destroy(t, newest.uuid)
		}
		newest = snap
	}
	d.destroy(t, disks.roundBase)
	return newest, liveData
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ---------------------------------------------------------------------------
// The verifying writer.

// A sector written by write id holds id and its own index in the first 16
// bytes, then bytes derived from both, so a sector read back names the
// write that wrote it and a torn or misplaced sector shows. Zeroes (id 0)
// come from WRITE_ZEROES and TRIM (vdiskd reads the whole blocks it
// trimmed as zeros).
func fillSector(b []byte, id uint64, sector int) {
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint64(b[8:], uint64(sector))
	x := byte(id*31 + uint64(sector)*7)
	for i := 16; i < cdSector; i++ {
		b[i] = x + byte(i)
	}
}

// sectorID returns the write a sector holds; ok is false for garbage.
func sectorID(b []byte, sector int) (id uint64, ok bool) {
	b = b[:cdSector]
	id = binary.BigEndian.Uint64(b)
	if id == 0 {
		return 0, !slices.ContainsFunc(b, func(c byte) bool { return c != 0 })
	}
	var want [cdSector]byte
	fillSector(want[:], id, sector)
	return id, bytes.Equal(b, want[:])
}

type wopKind byte

const (
	wopWrite wopKind = 'w'
	wopZero  wopKind = 'z'
	wopTrim  wopKind = 't'
	wopFlush wopKind = 'f'
	wopRead  wopKind = 'r'
)

// wop is one request of the verifying writer. Ticks order events across
// both connections: issued is taken before the request goes out, acked
// after its reply arrived.
type wop struct {
	kind           wopKind
	id             uint64 // content written (0 for zeroes)
	lo, hi         int    // sectors
	fua            bool
	issued, acked  uint64
	failed         bool // no reply: the connection died
	payload, rdbuf []byte
}

type verifyingWriter struct {
	sectors    int
	total      int // requests over all rounds
	roundTotal int

	mu       sync.Mutex
	tick     uint64
	durable  uint64 // writes acknowledged before this tick are durable
	nextID   uint64
	ops      []*wop
	hist     [][]int32 // per sector: this round's writes touching it, in issue order
	cur      []uint64  // per sector: the write it held when the round began
	busy     []bool    // sectors a request in flight covers
	problems []string
}

func newVerifyingWriter(sectors int) *verifyingWriter {
	return &verifyingWriter{sectors: sectors, nextID: cdPrefillID + 1, hist: make([][]int32, sectors),
		cur: make([]uint64, sectors), busy: make([]bool, sectors)}
}

// prefill writes cdPrefillID over the region, durably.
func (w *verifyingWriter) prefill(t *testing.T, c *nbdtest.Client) {
	t.Helper()
	buf := make([]byte, cdWriterLen)
	for s := 0; s < w.sectors; s++ {
		fillSector(buf[s*cdSector:], cdPrefillID, s)
		w.cur[s] = cdPrefillID
	}
	c.WriteAt(nbdtest.CmdFlagFUA, buf, cdWriterOff)
}

func (w *verifyingWriter) now() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tick++
	return w.tick
}

// durableBefore records that every write acknowledged before tick is durable.
func (w *verifyingWriter) durableBefore(tick uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.durable = max(w.durable, tick)
}

func (w *verifyingWriter) beginRound() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops, w.durable, w.roundTotal = nil, 0, 0
	for s := range w.hist {
		w.hist[s] = w.hist[s][:0]
	}
}

func (w *verifyingWriter) takeProblems() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.problems
	w.problems = nil
	return p
}

// drive keeps eight requests in flight on c (pipelined) until stop or
// until c dies.
func (w *verifyingWriter) drive(c *nbdtest.Client, rng *rand.Rand, stop <-chan struct{}) {
	slots := make(chan struct{}, 8)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-stop:
			return
		case <-c.Stopped():
			return
		case slots <- struct{}{}:
		}
		op := w.plan(rng)
		if op == nil {
			<-slots
			time.Sleep(time.Millisecond)
			continue
		}
		var call *nbdtest.Call
		off := uint64(cdWriterOff + op.lo*cdSector)
		n := uint32((op.hi - op.lo) * cdSector)
		var fua uint16
		if op.fua {
			fua = nbdtest.CmdFlagFUA
		}
		switch op.kind {
		case wopWrite:
			call = c.Submit(fua, nbdtest.CmdWrite, off, uint32(len(op.payload)), op.payload)
		case wopZero:
			call = c.Submit(fua|uint16(rng.IntN(2))*nbdtest.CmdFlagNoHole, nbdtest.CmdWriteZeroes, off, n, nil)
		case wopTrim:
			call = c.Submit(fua, nbdtest.CmdTrim, off, n, nil)
		case wopRead:
			call = c.Submit(0, nbdtest.CmdRead, off, uint32(len(op.rdbuf)), nil)
		case wopFlush:
			call = c.Submit(0, nbdtest.CmdFlush, 0, 0, nil)
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			err := call.Wait()
			if op.kind == wopRead && err == nil {
				copy(op.rdbuf, call.Data())
			}
			w.finish(op, err)
			<-slots
		}()
	}
}

// plan picks the next request, reserves its sectors and records it.
func (w *verifyingWriter) plan(rng *rand.Rand) *wop {
	op := &wop{kind: wopWrite}
	switch r := rng.IntN(100); {
	case r < 6:
		op.kind = wopFlush
	case r < 14:
		op.kind = wopRead
	case r < 19:
		op.kind = wopZero
	case r < 22:
		op.kind = wopTrim
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tick++
	op.issued = w.tick
	if op.kind == wopFlush {
		w.total++
		w.roundTotal++
		return op
	}
	op.fua = op.kind != wopRead && rng.IntN(5) == 0
	var n int
	aligned := false
	switch k := rng.IntN(10); {
	case k < 2:
		n = 1 + rng.IntN(7) // under 4 KiB: read-modify-write
	case k < 6:
		n, aligned = 8, rng.IntN(10) < 7
	case k < 9:
		n = 16 + rng.IntN(113)
	default:
		n = 129 + rng.IntN(384)
	}
	span := w.sectors
	if rng.IntN(2) == 0 {
		span = 2048 // a hot megabyte, so sectors see many versions per round
	}
	if op.kind == wopTrim {
		// vdiskd trims whole 4 KiB blocks only (rounding inward, as
		// proto.md allows), so trims here cover whole blocks.
		n, aligned = (n+7)&^7, true
	}
	for try := 0; try < 8; try++ {
		lo := rng.IntN(span - n + 1)
		if aligned {
			lo &^= 7
		}
		if slices.Contains(w.busy[lo:lo+n], true) {
			continue
		}
		op.lo, op.hi = lo, lo+n
		for s := lo; s < lo+n; s++ {
			w.busy[s] = true
		}
		switch op.kind {
		case wopRead:
			op.rdbuf = make([]byte, n*cdSector)
		case wopWrite:
			op.id = w.nextID
			w.nextID++
			op.payload = make([]byte, n*cdSector)
			for s := lo; s < lo+n; s++ {
				fillSector(op.payload[(s-lo)*cdSector:], op.id, s)
			}
		}
		if op.kind != wopRead {
			idx := int32(len(w.ops))
			w.ops = append(w.ops, op)
			for s := lo; s < lo+n; s++ {
				w.hist[s] = append(w.hist[s], idx)
			}
		}
		w.total++
		w.roundTotal++
		return op
	}
	return nil
}

// finish records a reply (or the connection's death) and releases the
// request's sectors. Reads are checked against the model on the spot.
func (w *verifyingWriter) finish(op *wop, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errno nbdtest.Errno
	switch {
	case err == nil:
		w.tick++
		op.acked = w.tick
		if op.kind == wopFlush {
			w.durable = max(w.durable, op.issued)
		}
	case errors.As(err, &errno):
		op.failed = true
		w.problems = append(w.problems, fmt.Sprintf("%c [%d,%d) sectors: error reply %v", op.kind, op.lo, op.hi, err))
	default:
		op.failed = true
	}
	if op.kind == wopRead && err == nil {
		for s := op.lo; s < op.hi; s++ {
			want, known := w.expectedNow(s)
			got, ok := sectorID(op.rdbuf[(s-op.lo)*cdSector:], s)
			if known && (!ok || got != want) {
				w.problems = append(w.problems, fmt.Sprintf("read during the load: sector %d holds write %d (valid %v), want %d", s, got, ok, want))
				break
			}
		}
	}
	for s := op.lo; s < op.hi; s++ {
		w.busy[s] = false
	}
}

// expectedNow is what sector s holds with no request in flight on it.
// REQUIRES: w.mu held.
func (w *verifyingWriter) expectedNow(s int) (uint64, bool) {
	h := w.hist[s]
	if len(h) == 0 {
		return w.cur[s], true
	}
	last := w.ops[h[len(h)-1]]
	return last.id, !last.failed
}

// stats returns the round's requests and how many writes were durable.
func (w *verifyingWriter) stats() (requests, durable int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, op := range w.ops {
		if op.isDurable(w.durable) {
			durable++
		}
	}
	return w.roundTotal, durable
}

func (op *wop) isDurable(durable uint64) bool {
	return op.acked != 0 && (op.fua || op.acked < durable)
}

// verify checks region data read after the restart: of the live VDI
// (snap nil) or of a mid-load snapshot. It returns the problems found.
func (w *verifyingWriter) verify(data []byte, snap *cdSnapshot) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	bad := 0
	for s := 0; s < w.sectors; s++ {
		h := w.hist[s]
		// first is the oldest write the sector may hold; earlier is the
		// content it may hold from before the round.
		first, earlier := 0, true
		for i := len(h) - 1; i >= 0; i-- {
			op := w.ops[h[i]]
			if snap == nil && op.isDurable(w.durable) || snap != nil && op.acked != 0 && op.acked < snap.start {
				first, earlier = i, false
				break
			}
		}
		got, ok := sectorID(data[s*cdSector:], s)
		allowed := ok && earlier && got == w.cur[s]
		for i := first; ok && !allowed && i < len(h); i++ {
			op := w.ops[h[i]]
			if snap != nil && snap.end != 0 && op.issued > snap.end {
				break
			}
			allowed = op.id == got
		}
		if allowed {
			continue
		}
		bad++
		if len(problems) < 8 {
			var desc []string
			if earlier {
				desc = append(desc, fmt.Sprintf("%d from before the round", w.cur[s]))
			}
			for _, i := range h {
				op := w.ops[i]
				desc = append(desc, fmt.Sprintf("%c%d fua=%v issued=%d acked=%d durable=%v",
					op.kind, op.id, op.fua, op.issued, op.acked, op.isDurable(w.durable)))
			}
			problems = append(problems, fmt.Sprintf("sector %d (byte %d) holds write %d (intact %v); its history this round (durable before tick %d): %s",
				s, s*cdSector, got, ok, w.durable, strings.Join(desc, "; ")))
		}
	}
	if bad > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d sectors hold no write allowed for them", bad, w.sectors))
	}
	return problems
}

// endRound takes the region as read after the restart as the next round's
// starting point.
func (w *verifyingWriter) endRound(data []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := 0; s < w.sectors; s++ {
		id, ok := sectorID(data[s*cdSector:], s)
		if !ok {
			id = ^uint64(0) // reported already; matches nothing
		}
		w.cur[s] = id
	}
}

// ---------------------------------------------------------------------------
// qemu-io: one process after another, each a list of `write -P` and `flush`
// commands ending with `flush` and a read. qemu-io runs commands in order
// and prints a line for each write and read that succeeded, so a flush
// completed when a later command printed its line.

type qemuWrite struct {
	pat    byte
	lo, hi int // 4 KiB units
	done   bool
	stable bool // a flush after it completed
}

type qemuLoad struct {
	units       int
	invocations int

	mu       sync.Mutex
	writes   []*qemuWrite
	hist     [][]int32
	cur      []byte
	pat      byte
	problems []string
}

func newQemuLoad(units int) *qemuLoad {
	q := &qemuLoad{units: units, hist: make([][]int32, units), cur: make([]byte, units)}
	for u := range q.cur {
		q.cur[u] = cdQemuPrefill
	}
	return q
}

func (q *qemuLoad) beginRound() {
	q.writes = nil
	for u := range q.hist {
		q.hist[u] = q.hist[u][:0]
	}
}

func (q *qemuLoad) takeProblems() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.problems
	q.problems = nil
	return p
}

func (q *qemuLoad) drive(uri string, rng *rand.Rand, stop <-chan struct{}, killed *atomic.Bool) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var cmds []string
		var mine []*qemuWrite // per command: its write, or nil
		q.mu.Lock()
		for i, n := 0, 24+rng.IntN(24); i < n; i++ {
			if i > 0 && rng.IntN(6) == 0 {
				cmds, mine = append(cmds, "flush"), append(mine, nil)
				continue
			}
			units := 1 + rng.IntN(32)
			lo := rng.IntN(q.units - units + 1)
			q.pat = q.pat%255 + 1
			wr := &qemuWrite{pat: q.pat, lo: lo, hi: lo + units}
			idx := int32(len(q.writes))
			q.writes = append(q.writes, wr)
			for u := lo; u < lo+units; u++ {
				q.hist[u] = append(q.hist[u], idx)
			}
			cmds = append(cmds, fmt.Sprintf("write -P %d %d %d", wr.pat, cdQemuOff+lo*cdQemuUnit, units*cdQemuUnit))
			mine = append(mine, wr)
		}
		q.mu.Unlock()
		cmds = append(cmds, "flush", fmt.Sprintf("read %d 4096", cdQemuOff))
		mine = append(mine, nil, nil)
		args := []string{"-f", "raw", uri}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "qemu-io", args...).CombinedOutput()
		cancel()
		wasKilled := killed.Load()

		// The i-th printed line answers the i-th write or read.
		printed := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "wrote ") || strings.HasPrefix(l, "read ") {
				printed++
			}
		}
		q.mu.Lock()
		q.invocations++
		lastPrinted, seen := -1, 0
		for i, c := range cmds {
			if c != "flush" && seen < printed {
				seen++
				lastPrinted = i
				if mine[i] != nil {
					mine[i].done = true
				}
			}
		}
		for i, c := range cmds {
			if c == "flush" && i < lastPrinted {
				for _, wr := range mine[:i] {
					if wr != nil && wr.done {
						wr.stable = true
					}
				}
			}
		}
		if !wasKilled && (err != nil || lastPrinted != len(cmds)-1) {
			q.problems = append(q.problems, fmt.Sprintf("qemu-io failed before the kill: %v\n%s", err, tail(string(out), 10)))
		}
		q.mu.Unlock()
		if wasKilled {
			return
		}
	}
}

// verify checks the qemu-io region read after the restart: each 4 KiB unit
// is one pattern (a 4 KiB block is one key: never torn), the last stable
// write's or a later one's.
func (q *qemuLoad) verify(data []byte) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var problems []string
	bad := 0
	for u := 0; u < q.units; u++ {
		unit := data[u*cdQemuUnit : (u+1)*cdQemuUnit]
		got := unit[0]
		uniform := bytes.Count(unit, unit[:1]) == cdQemuUnit
		h := q.hist[u]
		first, earlier := 0, true
		for i := len(h) - 1; i >= 0; i-- {
			if q.writes[h[i]].stable {
				first, earlier = i, false
				break
			}
		}
		allowed := uniform && earlier && got == q.cur[u]
		for i := first; uniform && !allowed && i < len(h); i++ {
			allowed = q.writes[h[i]].pat == got
		}
		if allowed {
			continue
		}
		bad++
		if len(problems) < 8 {
			var desc []string
			for _, i := range h {
				wr := q.writes[i]
				desc = append(desc, fmt.Sprintf("%#x done=%v stable=%v", wr.pat, wr.done, wr.stable))
			}
			problems = append(problems, fmt.Sprintf("unit %d (byte %d) holds %#x (uniform %v), before the round %#x; this round: %s",
				u, cdQemuOff+u*cdQemuUnit, got, uniform, q.cur[u], strings.Join(desc, "; ")))
		}
	}
	if bad > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d units hold no write allowed for them", bad, q.units))
	}
	return problems
}

func (q *qemuLoad) stats() (writes, stable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, wr := range q.writes {
		if wr.stable {
			stable++
		}
	}
	return len(q.writes), stable
}

func (q *qemuLoad) endRound(data []byte) {
	for u := 0; u < q.units; u++ {
		q.cur[u] = data[u*cdQemuUnit]
	}
}
