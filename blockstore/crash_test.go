package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/cbt"
)

// TestCrash kills a child process that writes to the store with SIGKILL at
// random points, over many rounds on one store, and checks after each crash:
//
//   - the recovered volume equals the state after some prefix ops[0..k) of
//     the child's operations, with k at or past the last durable point (an
//     acknowledged FUA write, flush, snapshot or destroy). The child issues
//     operations from one goroutine, and pebble recovers a prefix of its
//     WAL, so every allowed outcome is such a prefix; each write is one
//     batch, so all-or-nothing;
//   - surviving snapshots hold exactly the data of the point they were taken;
//   - ChangedBlocks never under-reports between any two CBT points (base,
//     surviving snapshots, live);
//   - the store opens, its volumes are the expected ones, garbage
//     collection succeeds and leaves every visible byte in place, and
//     Extents never calls non-zero data zero.
//
// The child journals an intent record before and an ack record after each
// operation (write(2) on an O_APPEND file, no fsync: a killed process loses
// nothing it already handed to the kernel). Write data is regenerated from
// the round's seed and the operation index.
//
// The child runs the background collector (ticking every 20ms, so it runs
// within a child's short life, besides the pokes of Destroy and orphan
// overwrites). Most rounds kill 50-400ms after the child reports ready;
// some kill 0-100ms after exec, possibly during Open and WAL replay. In the
// second half of the rounds base is data-destroyed (CBT history only), so
// whenever no child snapshot is alive nothing pins old versions and trims
// take the range-deletion path.
//
// Run longer with -crash.rounds=N; -crash.seed picks another schedule.

var (
	crashRounds = flag.Int("crash.rounds", 0, "rounds of TestCrash (0: 25, or 10 under -race or -short)")
	crashSeed   = flag.Uint64("crash.seed", 1, "base seed of TestCrash")
)

const (
	crashEnvChild   = "VDISKD_CRASH_CHILD"
	crashEnvDir     = "VDISKD_CRASH_DIR"
	crashEnvJournal = "VDISKD_CRASH_JOURNAL"
	crashEnvSeed    = "VDISKD_CRASH_SEED"
	crashEnvSnap    = "VDISKD_CRASH_SNAPNEXT"
	crashEnvTiles   = "VDISKD_CRASH_TILES"

	crashReady = "VDISKD-CRASH-CHILD-READY"

	crashVolume   = "crash"
	crashBase     = "base"
	crashVolSize  = 64 << 20
	crashBlocks   = crashVolSize / BlockSize
	crashHot      = 4 << 20 // a third of the ranges fall here, so ops overlap
	crashMaxSnaps = 3       // child snapshots alive at once

	crashChildLimit = 60 * time.Second // a child nobody killed gives up
)

var crashZeros = make([]byte, BlockSize)

type crashKind uint8

const (
	crashWrite crashKind = iota + 1
	crashTrim
	crashZero
	crashFlush
	crashSnapshot
	crashDestroy
)

func (k crashKind) String() string {
	names := [...]string{"?", "write", "trim", "zero", "flush", "snapshot", "destroy"}
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// crashOp is one operation of the child, as journaled.
type crashOp struct {
	kind  crashKind
	flags Flags
	mode  uint8 // write data: 0 random, 1 random with some blocks zeroed, 2 all zeros
	idx   uint32
	off   uint64
	n     uint64
	snap  uint64 // snapshot number (snapshot, destroy)
}

func (op crashOp) String() string {
	switch op.kind {
	case crashFlush:
		return fmt.Sprintf("#%d flush", op.idx)
	case crashSnapshot, crashDestroy:
		return fmt.Sprintf("#%d %v %s", op.idx, op.kind, crashSnapID(op.snap))
	}
	return fmt.Sprintf("#%d %v [%d,+%d) blocks [%d,%d] flags=%d mode=%d", op.idx, op.kind,
		op.off, op.n, op.off/BlockSize, (op.off+op.n-1)/BlockSize, op.flags, op.mode)
}

// A journal record is 48 bytes: magic, type (1 intent, 2 ack), kind, flags,
// mode, index, offset, length, snapshot number, CRC-32 of the first 40.
const (
	crashRecLen = 48
	crashMagic  = 0x4a435644
)

func (op crashOp) record(ack bool) []byte {
	b := make([]byte, crashRecLen)
	binary.LittleEndian.PutUint32(b[0:], crashMagic)
	b[4] = 1
	if ack {
		b[4] = 2
	}
	b[5], b[6], b[7] = byte(op.kind), byte(op.flags), op.mode
	binary.LittleEndian.PutUint32(b[8:], op.idx)
	binary.LittleEndian.PutUint64(b[16:], op.off)
	binary.LittleEndian.PutUint64(b[24:], op.n)
	binary.LittleEndian.PutUint64(b[32:], op.snap)
	binary.LittleEndian.PutUint32(b[40:], crc32.ChecksumIEEE(b[:40]))
	return b
}

func crashDecode(b []byte) (op crashOp, ack bool, err error) {
	if binary.LittleEndian.Uint32(b) != crashMagic || binary.LittleEndian.Uint32(b[40:]) != crc32.ChecksumIEEE(b[:40]) {
		return op, false, fmt.Errorf("bad journal record %x", b)
	}
	if b[4] != 1 && b[4] != 2 {
		return op, false, fmt.Errorf("bad journal record type %d", b[4])
	}
	op = crashOp{
		kind: crashKind(b[5]), flags: Flags(b[6]), mode: b[7],
		idx: binary.LittleEndian.Uint32(b[8:]),
		off: binary.LittleEndian.Uint64(b[16:]), n: binary.LittleEndian.Uint64(b[24:]),
		snap: binary.LittleEndian.Uint64(b[32:]),
	}
	return op, b[4] == 2, nil
}

// crashReadJournal returns the operations the child started and which of
// them returned. A missing journal means the child died before its first.
func crashReadJournal(path string) (ops []crashOp, acked []bool, torn int, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, 0, nil
	}
	if err != nil {
		return nil, nil, 0, err
	}
	for ; len(b) >= crashRecLen; b = b[crashRecLen:] {
		op, ack, err := crashDecode(b[:crashRecLen])
		if err != nil {
			return nil, nil, 0, err
		}
		last := len(ops) - 1
		if !ack {
			if op.idx != uint32(len(ops)) || (last >= 0 && !acked[last]) {
				return nil, nil, 0, fmt.Errorf("journal: intent %v out of order after %d ops", op, len(ops))
			}
			ops, acked = append(ops, op), append(acked, false)
			continue
		}
		if last < 0 || acked[last] || ops[last] != op {
			return nil, nil, 0, fmt.Errorf("journal: ack %v does not match the open intent", op)
		}
		acked[last] = true
	}
	return ops, acked, len(b), nil
}

func crashSnapID(n uint64) string { return fmt.Sprintf("s-%06d", n) }

func crashSnapNum(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, "s-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// crashMix is splitmix64's finaliser.
func crashMix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// crashData is the data of a write: pseudo-random bytes keyed by the round's
// seed, the op index and the absolute position, so no two ops (and no two
// places) write the same bytes.
func crashData(seed uint64, op crashOp) []byte {
	p := make([]byte, op.n)
	if op.mode == 2 {
		return p
	}
	h := crashMix(seed ^ crashMix(uint64(op.idx)+1))
	end := op.off + op.n
	var w [8]byte
	for pos := op.off &^ 7; pos < end; pos += 8 {
		binary.LittleEndian.PutUint64(w[:], crashMix(h+pos>>3))
		lo, hi := max(pos, op.off), min(pos+8, end)
		copy(p[lo-op.off:hi-op.off], w[lo-pos:hi-pos])
	}
	if op.mode == 1 { // zero about a quarter of the 4 KiB blocks touched
		for blk := op.off / BlockSize; blk <= (end-1)/BlockSize; blk++ {
			if crashMix(h^blk)&3 == 0 {
				lo, hi := max(blk*BlockSize, op.off), min((blk+1)*BlockSize, end)
				clear(p[lo-op.off : hi-op.off])
			}
		}
	}
	return p
}

// crashRange picks a range for a write (big 256 KiB) or a trim/zero (1 MiB):
// unaligned bytes, 512-byte sectors, 4 KiB blocks, or anything up to big.
func crashRange(rng *rand.Rand, big uint64) (off, n uint64) {
	span := uint64(crashVolSize)
	if rng.IntN(3) == 0 {
		span = crashHot
	}
	align := uint64(1)
	switch rng.IntN(10) {
	case 0, 1, 2:
		n = 1 + rng.Uint64N(1024)
	case 3, 4, 5:
		n, align = 512*(1+rng.Uint64N(128)), 512
	case 6, 7, 8:
		n, align = BlockSize*(1+rng.Uint64N(64)), BlockSize
	default:
		n = 1 + rng.Uint64N(big)
	}
	if rng.IntN(50) == 0 { // up to the last byte of the volume
		return crashVolSize - n, n
	}
	return align * rng.Uint64N((span-n)/align+1), n
}

func crashPick(rng *rand.Rand, idx uint32, nsnaps int) crashOp {
	op := crashOp{idx: idx}
	big := uint64(1 << 20)
	switch p := rng.IntN(1000); {
	case p < 40:
		op.kind = crashFlush
		return op
	case p < 58 && nsnaps < crashMaxSnaps:
		op.kind = crashSnapshot
		return op
	case p < 76 && nsnaps > 0:
		op.kind = crashDestroy
		return op
	case p < 250:
		op.kind = crashTrim
	case p < 370:
		op.kind = crashZero
		if rng.IntN(2) == 0 {
			op.flags |= NoHole
		}
	default:
		op.kind, big = crashWrite, 256<<10
		switch m := rng.IntN(100); {
		case m < 8:
			op.mode = 1
		case m < 12:
			op.mode = 2
		}
	}
	op.off, op.n = crashRange(rng, big)
	if rng.IntN(100) < 4 {
		op.flags |= FUA
	}
	return op
}

func crashOptions(logf func(string, ...any), child, tiles bool) Options {
	gc := time.Duration(-1) // the parent collects explicitly
	if child {
		// Background collector on, ticking well within a child's life
		// (the default 1s would only ever run on pokes).
		gc = 20 * time.Millisecond
	}
	// A store of tiles keeps its data in segments only.
	return Options{Logf: logf, CacheSize: 32 << 20, MemTableSize: 4 << 20, GCInterval: gc, tiles: tiles, Segments: tiles}
}

func crashRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// TestCrashChild is the child process of TestCrash: it writes until killed.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashEnvChild) != "1" {
		t.Skip("helper process of TestCrash")
	}
	dir, jpath := os.Getenv(crashEnvDir), os.Getenv(crashEnvJournal)
	seed, err := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	nextSnap, err := strconv.ParseUint(os.Getenv(crashEnvSnap), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.OpenFile(jpath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tiles := os.Getenv(crashEnvTiles) == "1"
	o := crashOptions(func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }, true, tiles)
	// Children of odd seeds write to segment files, the others inline, so
	// the store under test holds both forms side by side (a store of
	// tiles, segments only); every other one of the odd ones writes (and
	// reads) every aligned run with O_DIRECT.
	o.Segments = tiles || seed%2 == 1
	if seed%4 == 3 {
		o.DirectIOMin = BlockSize
	}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Attach(crashVolume)
	if err != nil {
		t.Fatal(err)
	}
	var snaps []uint64
	for _, v := range s.Volumes() {
		if n, ok := crashSnapNum(v.ID); ok {
			snaps = append(snaps, n)
		}
	}
	slices.Sort(snaps)
	fmt.Println(crashReady)

	journal := func(op crashOp, ack bool) {
		if _, err := j.Write(op.record(ack)); err != nil {
			t.Fatalf("crash child: journal: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(crashMix(seed), crashMix(seed^0x6368696c64)))
	deadline, ppid := time.Now().Add(crashChildLimit), os.Getppid()
	for idx := uint32(0); ; idx++ {
		if idx%64 == 0 && (time.Now().After(deadline) || os.Getppid() != ppid) {
			t.Fatalf("crash child: nobody killed me within %v", crashChildLimit)
		}
		op := crashPick(rng, idx, len(snaps))
		switch op.kind {
		case crashSnapshot:
			op.snap = nextSnap
			nextSnap++
		case crashDestroy:
			i := 0 // mostly the oldest; sometimes the newest, which orphans blocks
			if rng.IntN(3) == 0 {
				i = rng.IntN(len(snaps))
			}
			op.snap = snaps[i]
			snaps = slices.Delete(snaps, i, i+1)
		}
		var data []byte
		if op.kind == crashWrite {
			data = crashData(seed, op)
		}
		journal(op, false)
		switch op.kind {
		case crashWrite:
			err = d.Write(op.off, data, op.flags)
		case crashTrim:
			err = d.Trim(op.off, op.n, op.flags)
		case crashZero:
			err = d.Zero(op.off, op.n, op.flags)
		case crashFlush:
			err = d.Flush()
		case crashSnapshot:
			_, err = s.Snapshot(SnapshotRequest{Source: crashVolume, ID: crashSnapID(op.snap)})
		case crashDestroy:
			err = s.Destroy(crashSnapID(op.snap))
		}
		if err != nil {
			t.Fatalf("crash child: %v: %v", op, err)
		}
		journal(op, true)
		if op.kind == crashSnapshot {
			snaps = append(snaps, op.snap)
		}
	}
}

// crashImage is the content of a volume: 4 KiB blocks, nil reading as
// zeros. Blocks are never modified once in an image, so images share them.
type crashImage []*[BlockSize]byte

func (img crashImage) block(b int) *[BlockSize]byte {
	if img == nil { // the base snapshot: taken of an empty volume
		return nil
	}
	return img[b]
}

func crashBlockEqual(blk *[BlockSize]byte, p []byte) bool {
	if blk == nil {
		return bytes.Equal(p, crashZeros)
	}
	return bytes.Equal(blk[:], p)
}

func crashSameBlock(a, b *[BlockSize]byte) bool {
	switch {
	case a == b:
		return true
	case a == nil:
		return crashBlockEqual(b, crashZeros)
	case b == nil:
		return crashBlockEqual(a, crashZeros)
	}
	return *a == *b
}

// crashState is what the parent knows the store holds: the live volume and
// the child snapshots, by number.
type crashState struct {
	live  crashImage
	snaps map[uint64]crashImage
}

func (st *crashState) clone() *crashState {
	c := &crashState{live: slices.Clone(st.live), snaps: make(map[uint64]crashImage, len(st.snaps))}
	for n, img := range st.snaps {
		c.snaps[n] = img // snapshot images are never modified
	}
	return c
}

func (st *crashState) sameSnaps(set map[uint64]bool) bool {
	if len(set) != len(st.snaps) {
		return false
	}
	for n := range st.snaps {
		if !set[n] {
			return false
		}
	}
	return true
}

// apply carries out op and returns the live blocks [b0, b1) it touched.
func (st *crashState) apply(seed uint64, op crashOp) (b0, b1 int) {
	switch op.kind {
	case crashFlush:
		return 0, 0
	case crashSnapshot:
		st.snaps[op.snap] = slices.Clone(st.live)
		return 0, 0
	case crashDestroy:
		delete(st.snaps, op.snap)
		return 0, 0
	}
	var data []byte
	if op.kind == crashWrite {
		data = crashData(seed, op)
	}
	end := op.off + op.n
	first, last := op.off/BlockSize, (end-1)/BlockSize
	for blk := first; blk <= last; blk++ {
		bs := blk * BlockSize
		lo, hi := max(bs, op.off), min(bs+BlockSize, end)
		if data == nil && hi-lo == BlockSize {
			st.live[blk] = nil
			continue
		}
		nb := new([BlockSize]byte)
		if old := st.live[blk]; old != nil {
			*nb = *old
		}
		if data != nil {
			copy(nb[lo-bs:hi-bs], data[lo-op.off:hi-op.off])
		} else {
			clear(nb[lo-bs : hi-bs])
		}
		if bytes.Equal(nb[:], crashZeros) {
			nb = nil
		}
		st.live[blk] = nb
	}
	return int(first), int(last) + 1
}

// crashMatcher tracks which blocks of an image differ from what was read.
type crashMatcher struct {
	actual []byte
	bad    []bool
	nbad   int
}

func newCrashMatcher(actual []byte, img crashImage) *crashMatcher {
	m := &crashMatcher{actual: actual, bad: make([]bool, crashBlocks)}
	m.update(img, 0, crashBlocks)
	return m
}

func (m *crashMatcher) update(img crashImage, b0, b1 int) {
	for b := b0; b < b1; b++ {
		ok := crashBlockEqual(img[b], m.actual[b*BlockSize:(b+1)*BlockSize])
		if ok == m.bad[b] {
			if ok {
				m.nbad--
			} else {
				m.nbad++
			}
			m.bad[b] = !ok
		}
	}
}

func (m *crashMatcher) badBlocks(limit int) []int {
	var out []int
	for b, bad := range m.bad {
		if bad && len(out) < limit {
			out = append(out, b)
		}
	}
	return out
}

// crashOutput collects a child's output and notices its ready line.
type crashOutput struct {
	mu      sync.Mutex
	buf     []byte
	ready   chan struct{}
	readyAt time.Time
	once    sync.Once
}

func (o *crashOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	if bytes.Contains(o.buf, []byte(crashReady)) {
		o.once.Do(func() { o.readyAt = time.Now(); close(o.ready) })
	}
	if len(o.buf) > 1<<20 {
		o.buf = append([]byte(nil), o.buf[len(o.buf)-(256<<10):]...)
	}
	return len(p), nil
}

func (o *crashOutput) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.buf
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// crashLog keeps the tail of the parent store's log for failure reports.
type crashLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *crashLog) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
	if len(l.lines) > 200 {
		l.lines = l.lines[len(l.lines)-100:]
	}
}

func (l *crashLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

type crashChild struct {
	ready time.Duration // from exec to the child's ready line; 0 if killed before
	delay time.Duration
	early bool // killed at a random time from exec, maybe during Open
	out   *crashOutput
}

// crashRunChild starts a child on the store, kills it, and waits for it.
func crashRunChild(t *testing.T, dir, jpath string, seed, nextSnap uint64, rng *rand.Rand, tiles bool) crashChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(),
		crashEnvChild+"=1", crashEnvDir+"="+dir, crashEnvJournal+"="+jpath,
		crashEnvSeed+"="+strconv.FormatUint(seed, 10), crashEnvSnap+"="+strconv.FormatUint(nextSnap, 10))
	if tiles {
		cmd.Env = append(cmd.Env, crashEnvTiles+"=1")
	}
	c := crashChild{out: &crashOutput{ready: make(chan struct{})}}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start crash child: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() error {
		_ = cmd.Process.Kill()
		return <-exited
	}
	started := time.Now()
	c.early = rng.IntN(100) < 15
	if c.early {
		c.delay = time.Duration(rng.IntN(100)) * time.Millisecond
	} else {
		c.delay = time.Duration(50+rng.IntN(351)) * time.Millisecond
		select {
		case <-c.out.ready:
		case err := <-exited:
			t.Fatalf("crash child exited before it was ready: %v\n%s", err, c.out.tail())
		case <-time.After(crashChildLimit):
			kill()
			t.Fatalf("crash child not ready after %v\n%s", crashChildLimit, c.out.tail())
		}
	}
	select {
	case <-time.After(c.delay):
	case err := <-exited:
		t.Fatalf("crash child exited by itself: %v\n%s", err, c.out.tail())
	}
	err := kill()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash child did not die of SIGKILL: %v\n%s", err, c.out.tail())
	}
	c.out.mu.Lock()
	if !c.out.readyAt.IsZero() {
		c.ready = c.out.readyAt.Sub(started)
	}
	c.out.mu.Unlock()
	return c
}

// crashRound is what one round found.
type crashRound struct {
	ops, acked, durable int
	k                   int   // the prefix of ops the store recovered
	matches             []int // every prefix consistent with the store
	snaps               int   // child snapshots alive after the round
	cbtPairs            int
	cbtChanged          int // 64 KiB blocks that differ, summed over pairs
	cbtReported         int // blocks ChangedBlocks reported, summed over pairs
}

func TestCrash(t *testing.T) {
	if os.Getenv(crashEnvChild) == "1" {
		t.Skip("inside a crash child")
	}
	t.Run("pointers", func(t *testing.T) { runCrash(t, false) })
	t.Run("tiles", func(t *testing.T) { runCrash(t, true) })
}

// runCrash is TestCrash on a store of one form: pointers per block (data
// in segments or inline, by child), or tiles.
func runCrash(t *testing.T, tiles bool) {
	race := crashRaceEnabled()
	rounds := *crashRounds
	if rounds <= 0 {
		rounds = 25
		if testing.Short() || race {
			rounds = 10
		}
	}
	top, err := os.MkdirTemp("", "vdiskd-crash-")
	if err != nil {
		t.Fatal(err)
	}
	dir, jdir := filepath.Join(top, "store"), filepath.Join(top, "journals")
	if err := os.Mkdir(jdir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("store and journals kept for inspection in %s", top)
			return
		}
		os.RemoveAll(top)
	})
	t.Logf("dir %s, %d rounds, seed %d, race %v", top, rounds, *crashSeed, race)

	// Round 0: the volume, CBT on, the base snapshot of the empty volume.
	logs := &crashLog{}
	s, err := Open(dir, crashOptions(logs.logf, false, tiles))
	if err != nil {
		t.Fatal(err)
	}
	if s.tiles != tiles {
		t.Fatalf("the store keeps tiles: %v, want %v", s.tiles, tiles)
	}
	if _, err := s.Create(CreateRequest{ID: crashVolume, Pool: "local", Size: crashVolSize}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnableCBT(crashVolume); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(SnapshotRequest{Source: crashVolume, ID: crashBase}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cur := &crashState{live: make(crashImage, crashBlocks), snaps: map[uint64]crashImage{}}
	baseMeta := false
	nextSnap := uint64(1)
	var (
		totalOps, totalAcked, totalDurable, beyond, lostAcked, early int
		snapOps, destroyOps, cbtPairs, cbtChanged                    int
		minK, maxK, maxWindow                                        = -1, 0, 0
	)
	start := time.Now()
	for r := 1; r <= rounds; r++ {
		rstart := time.Now()
		seed := *crashSeed*1_000_003 + uint64(r)
		rng := rand.New(rand.NewPCG(crashMix(seed), crashMix(seed^0x706172656e74)))
		if r == rounds/2+1 {
			// Second half: base keeps only its CBT history, so with no child
			// snapshot alive nothing pins old data (trims range-delete).
			crashDataDestroyBase(t, dir, tiles)
			baseMeta = true
		}
		jpath := filepath.Join(jdir, fmt.Sprintf("journal-%03d", r))
		child := crashRunChild(t, dir, jpath, seed, nextSnap, rng, tiles)
		ops, acked, torn, err := crashReadJournal(jpath)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		for _, op := range ops {
			switch op.kind {
			case crashSnapshot:
				nextSnap = max(nextSnap, op.snap+1)
				snapOps++
			case crashDestroy:
				destroyOps++
			}
		}
		res := crashVerify(t, dir, r, seed, cur, ops, acked, baseMeta, child, tiles)
		cur = res.next
		rd := res.round
		nAcked := 0
		for _, a := range acked {
			if a {
				nAcked++
			}
		}
		totalOps += rd.ops
		totalAcked += nAcked
		totalDurable += rd.durable
		cbtPairs += rd.cbtPairs
		cbtChanged += rd.cbtChanged
		if rd.ops > rd.durable {
			beyond++
		}
		if rd.k < nAcked {
			lostAcked++
		}
		if child.early {
			early++
		}
		if minK < 0 || rd.k-rd.durable < minK {
			minK = rd.k - rd.durable
		}
		maxK = max(maxK, rd.k-rd.durable)
		maxWindow = max(maxWindow, rd.ops-rd.durable)
		ready := "killed before ready"
		if child.ready > 0 {
			ready = fmt.Sprintf("ready after %dms", child.ready.Milliseconds())
		}
		how := ""
		if child.early {
			how = " (early)"
		}
		t.Logf("round %2d: %s, kill after %3dms%s: %4d ops, %4d acked, durable %4d, k=%d (consistent %s), snaps %d, cbt %d pairs ok (%d/%d blocks changed/reported), torn %d, %v",
			r, ready, child.delay.Milliseconds(), how,
			rd.ops, nAcked, rd.durable, rd.k, crashSpan(rd.matches), rd.snaps, rd.cbtPairs, rd.cbtChanged, rd.cbtReported,
			torn, time.Since(rstart).Round(time.Millisecond))
	}
	t.Logf("total: %d rounds in %v, %d ops, %d acked, %d durable; %d rounds killed with ops past the durable point, %d rounds lost acked unsynced ops, %d early kills; k-durable in [%d,%d], largest window %d; %d snapshots, %d destroys; %d CBT pairs with %d changed blocks",
		rounds, time.Since(start).Round(time.Millisecond), totalOps, totalAcked, totalDurable, beyond, lostAcked, early,
		minK, maxK, maxWindow, snapOps, destroyOps, cbtPairs, cbtChanged)

	// The test must not pass vacuously.
	if totalDurable < 100 {
		t.Errorf("only %d durable ops over %d rounds: the children did too little", totalDurable, rounds)
	}
	if beyond*5 < rounds {
		t.Errorf("only %d of %d rounds were killed with ops past the durable point", beyond, rounds)
	}
	if snapOps == 0 || destroyOps == 0 || cbtChanged == 0 {
		t.Errorf("no snapshots (%d), destroys (%d) or changed blocks (%d) exercised", snapOps, destroyOps, cbtChanged)
	}
}

func crashSpan(ks []int) string {
	if len(ks) == 1 {
		return strconv.Itoa(ks[0])
	}
	return fmt.Sprintf("%d..%d (%d)", ks[0], ks[len(ks)-1], len(ks))
}

func crashDataDestroyBase(t *testing.T, dir string, tiles bool) {
	t.Helper()
	logs := &crashLog{}
	s, err := Open(dir, crashOptions(logs.logf, false, tiles))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DataDestroy(crashBase); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// crashDurable returns how many ops are durable: every op up to the last
// acknowledged sync point (FUA write/trim/zero, flush, snapshot, destroy).
func crashDurable(ops []crashOp, acked []bool) int {
	d := 0
	for i, op := range ops {
		if !acked[i] {
			continue
		}
		switch op.kind {
		case crashFlush, crashSnapshot, crashDestroy:
			d = i + 1
		default:
			if op.flags&FUA != 0 {
				d = i + 1
			}
		}
	}
	return d
}

type crashResult struct {
	next  *crashState
	round crashRound
}

// crashVerify opens the store after a crash and checks everything.
func crashVerify(t *testing.T, dir string, r int, seed uint64, cur *crashState, ops []crashOp, acked []bool, baseMeta bool, child crashChild, tiles bool) crashResult {
	t.Helper()
	logs := &crashLog{}
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("round %d (seed %d, kill after %v, early %v): %s\n--- store log:\n%s\n--- child output (tail):\n%s",
			r, seed, child.delay, child.early, fmt.Sprintf(format, a...), logs, child.out.tail())
	}
	s, err := Open(dir, crashOptions(logs.logf, false, tiles))
	if err != nil {
		fail("open after crash: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	rd := crashRound{ops: len(ops), durable: crashDurable(ops, acked)}

	// Volumes: the live one, base, and child snapshots only.
	present := map[uint64]bool{}
	var sawLive, sawBase bool
	wantBase := KindSnapshot
	if baseMeta {
		wantBase = KindCBTMetadata
	}
	for _, v := range s.Volumes() {
		n, isSnap := crashSnapNum(v.ID)
		switch {
		case isSnap && v.Kind == KindSnapshot && v.CBTEnabled && v.SnapshotOf == crashVolume && v.Size == crashVolSize:
			present[n] = true
		case v.ID == crashVolume && v.Kind == KindLive && v.CBTEnabled && v.Size == crashVolSize && !v.ReadOnly:
			sawLive = true
		case v.ID == crashBase && v.Kind == wantBase && v.CBTEnabled:
			sawBase = true
		default:
			fail("unexpected volume after crash: %+v", v)
		}
	}
	if !sawLive || !sawBase {
		fail("volumes after crash (live %v, base %v): %+v", sawLive, sawBase, s.Volumes())
	}

	actual := crashRead(t, s, crashVolume, nil)

	// Find every k in [durable, len(ops)] whose prefix ops[0..k) is what the
	// store holds: same live content, same set of snapshots.
	st := cur.clone()
	for _, op := range ops[:rd.durable] {
		st.apply(seed, op)
	}
	m := newCrashMatcher(actual, st.live)
	var chosen *crashState
	for k := rd.durable; ; k++ {
		if m.nbad == 0 && st.sameSnaps(present) {
			rd.matches = append(rd.matches, k)
			if chosen == nil {
				chosen, rd.k = st.clone(), k
			}
		}
		if k == len(ops) {
			break
		}
		b0, b1 := st.apply(seed, ops[k])
		m.update(st.live, b0, b1)
	}
	if chosen == nil {
		fail("%s", crashDiagnose(seed, cur, ops, acked, rd.durable, actual, present))
	}
	rd.snaps = len(chosen.snaps)

	// Snapshots hold what the volume held when they were taken.
	buf := make([]byte, crashVolSize)
	check := func(when string) {
		t.Helper()
		if b, err := crashCompare(t, s, crashVolume, chosen.live, buf); err != nil {
			fail("%s: live volume (k=%d): %v\n%s", when, rd.k, err, crashExplain(seed, cur, ops, buf, b))
		}
		for n, img := range chosen.snaps {
			if b, err := crashCompare(t, s, crashSnapID(n), img, buf); err != nil {
				fail("%s: snapshot %s (taken by op %s; k=%d): %v\n%s", when, crashSnapID(n), crashSnapOp(ops, n), rd.k, err,
					crashExplain(seed, cur, ops, buf, b))
			}
		}
		if !baseMeta {
			if _, err := crashCompare(t, s, crashBase, nil, buf); err != nil {
				fail("%s: base snapshot: %v", when, err)
			}
		}
	}
	check("after recovery")

	// CBT: between any two points of the chain, every 64 KiB block whose
	// content differs is reported.
	type point struct {
		id  string
		img crashImage
	}
	points := []point{{crashBase, nil}}
	nums := make([]uint64, 0, len(chosen.snaps))
	for n := range chosen.snaps {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, n := range nums {
		points = append(points, point{crashSnapID(n), chosen.snaps[n]})
	}
	points = append(points, point{crashVolume, chosen.live})
	for i := range points {
		for j := i + 1; j < len(points); j++ {
			from, to := points[i], points[j]
			bm, size, err := s.ChangedBlocks(from.id, to.id)
			if err != nil {
				fail("changed blocks %s..%s: %v", from.id, to.id, err)
			}
			if size != crashVolSize {
				fail("changed blocks %s..%s: size %d", from.id, to.id, size)
			}
			rd.cbtPairs++
			rd.cbtReported += int(bm.GetCardinality())
			for c := 0; c < crashVolSize/cbt.BlockSize; c++ {
				changed := false
				for b := c * (cbt.BlockSize / BlockSize); b < (c+1)*(cbt.BlockSize/BlockSize); b++ {
					if !crashSameBlock(from.img.block(b), to.img.block(b)) {
						changed = true
						break
					}
				}
				if changed {
					rd.cbtChanged++
					if !bm.Contains(uint32(c)) {
						fail("changed blocks %s..%s under-reports 64 KiB block %d (k=%d, ops in round touching it: %s)",
							from.id, to.id, c, rd.k, crashTouching(ops, c*16, c*16+16))
					}
				}
			}
		}
	}

	// Extents: a range reported zero reads zero.
	d, err := s.Attach(crashVolume)
	if err != nil {
		fail("attach: %v", err)
	}
	next := uint64(0)
	err = d.Extents(0, crashVolSize, func(x Extent) error {
		if x.Offset != next || x.Length == 0 {
			return fmt.Errorf("extent %+v, expected one at %d", x, next)
		}
		next = x.Offset + x.Length
		if x.Flags&Zero != 0 && !crashAllZero(actual[x.Offset:next]) {
			return fmt.Errorf("extent %+v reported zero holds data", x)
		}
		return nil
	})
	d.Close()
	if err == nil && next != crashVolSize {
		err = fmt.Errorf("extents end at %d", next)
	}
	if err != nil {
		fail("extents: %v", err)
	}

	// Garbage collection keeps every visible byte; so does compaction.
	if err := s.CollectGarbage(); err != nil {
		fail("collect garbage: %v", err)
	}
	check("after garbage collection")
	if r%4 == 0 {
		if err := s.Compact(); err != nil {
			fail("compact: %v", err)
		}
		check("after compaction")
	}
	closed = true
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	return crashResult{next: chosen, round: rd}
}

// crashRead reads a whole volume into buf (allocated if nil).
func crashRead(t *testing.T, s *Store, id string, buf []byte) []byte {
	t.Helper()
	if buf == nil {
		buf = make([]byte, crashVolSize)
	}
	d, err := s.Attach(id)
	if err != nil {
		t.Fatalf("attach %s: %v", id, err)
	}
	defer d.Close()
	for off := 0; off < crashVolSize; off += 1 << 20 {
		if _, err := d.ReadAt(buf[off:off+1<<20], int64(off)); err != nil {
			t.Fatalf("read %s at %d: %v", id, off, err)
		}
	}
	return buf
}

// crashCompare reads volume id into buf and compares it with img; on a
// difference it returns the first block that differs.
func crashCompare(t *testing.T, s *Store, id string, img crashImage, buf []byte) (int, error) {
	t.Helper()
	got := crashRead(t, s, id, buf)
	for b := 0; b < crashBlocks; b++ {
		p := got[b*BlockSize : (b+1)*BlockSize]
		want := img.block(b)
		if crashBlockEqual(want, p) {
			continue
		}
		w := crashZeros
		if want != nil {
			w = want[:]
		}
		i := 0
		for i < BlockSize && p[i] == w[i] {
			i++
		}
		return b, fmt.Errorf("block %d (offset %d) differs from byte %d: got %s, want %s",
			b, b*BlockSize, i, crashDescribe(p[i:]), crashDescribe(w[i:]))
	}
	return -1, nil
}

// crashExplain says at which prefixes of the round the live volume's block
// b held what got holds, and which ops of the round touched it.
func crashExplain(seed uint64, cur *crashState, ops []crashOp, got []byte, b int) string {
	p := got[b*BlockSize : (b+1)*BlockSize]
	st := cur.clone()
	var ks []int
	for k := 0; ; k++ {
		if crashBlockEqual(st.live[b], p) {
			ks = append(ks, k)
		}
		if k == len(ops) {
			break
		}
		st.apply(seed, ops[k])
	}
	if len(ks) > 12 {
		ks = append(ks[:6:6], ks[len(ks)-6:]...)
	}
	return fmt.Sprintf("block %d as read matches the live volume after prefixes %v of the round; round ops touching it: %s",
		b, ks, crashTouching(ops, b, b+1))
}

func crashAllZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(crashZeros))
		if !bytes.Equal(p[:n], crashZeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

func crashDescribe(p []byte) string {
	if crashAllZero(p) {
		return "zeros"
	}
	return fmt.Sprintf("%x...", p[:min(len(p), 16)])
}

func crashSnapOp(ops []crashOp, n uint64) string {
	for _, op := range ops {
		if op.kind == crashSnapshot && op.snap == n {
			return op.String()
		}
	}
	return "in an earlier round"
}

// crashTouching lists the ops of the round touching 4 KiB blocks [b0, b1).
func crashTouching(ops []crashOp, b0, b1 int) string {
	var out []string
	for _, op := range ops {
		switch op.kind {
		case crashWrite, crashTrim, crashZero:
			first, last := int(op.off/BlockSize), int((op.off+op.n-1)/BlockSize)
			if first < b1 && last >= b0 {
				out = append(out, op.String())
			}
		case crashSnapshot, crashDestroy:
			out = append(out, op.String())
		}
	}
	if len(out) > 40 {
		out = append(out[:20], append([]string{"..."}, out[len(out)-20:]...)...)
	}
	return strings.Join(out, "; ")
}

// crashDiagnose explains why no allowed prefix matches the store: whether
// an earlier prefix does (a durability bug) or none does, and for the
// closest prefix which blocks differ and at which prefixes they would match.
func crashDiagnose(seed uint64, cur *crashState, ops []crashOp, acked []bool, durable int, actual []byte, present map[uint64]bool) string {
	var sb strings.Builder
	nAcked := 0
	for _, a := range acked {
		if a {
			nAcked++
		}
	}
	fmt.Fprintf(&sb, "no prefix ops[0..k) with k in [%d,%d] matches the recovered store (%d ops acked)\n", durable, len(ops), nAcked)
	st := cur.clone()
	m := newCrashMatcher(actual, st.live)
	best, bestBad, bestSnaps := -1, crashBlocks+1, false
	var bestBlocks, earlier []int
	for k := 0; ; k++ {
		snapsOK := st.sameSnaps(present)
		if m.nbad == 0 && snapsOK {
			earlier = append(earlier, k)
		}
		if m.nbad < bestBad || (m.nbad == bestBad && snapsOK && !bestSnaps) {
			best, bestBad, bestSnaps, bestBlocks = k, m.nbad, snapsOK, m.badBlocks(8)
		}
		if k == len(ops) {
			break
		}
		b0, b1 := st.apply(seed, ops[k])
		m.update(st.live, b0, b1)
	}
	if len(earlier) > 0 {
		fmt.Fprintf(&sb, "DURABILITY: the store matches prefixes k=%v, below the durable point %d (last durable op %s)\n",
			earlier, durable, ops[durable-1])
	}
	var have []uint64
	for n := range present {
		have = append(have, n)
	}
	sort.Slice(have, func(i, j int) bool { return have[i] < have[j] })
	fmt.Fprintf(&sb, "snapshots in store: %v\n", have)
	fmt.Fprintf(&sb, "closest prefix k=%d: %d blocks differ, snapshot set matches %v; first differing blocks %v\n",
		best, bestBad, bestSnaps, bestBlocks)
	// For each differing block: at which prefixes would it match?
	st = cur.clone()
	at := make(map[int][]int)
	for k := 0; ; k++ {
		for _, b := range bestBlocks {
			if crashBlockEqual(st.live[b], actual[b*BlockSize:(b+1)*BlockSize]) {
				at[b] = append(at[b], k)
			}
		}
		if k == len(ops) {
			break
		}
		st.apply(seed, ops[k])
	}
	for _, b := range bestBlocks {
		ks := at[b]
		if len(ks) > 12 {
			ks = append(ks[:6:6], ks[len(ks)-6:]...)
		}
		fmt.Fprintf(&sb, "block %d: store has %s; matches at prefixes %v; round ops touching it: %s\n",
			b, crashDescribe(actual[b*BlockSize:(b+1)*BlockSize]), ks, crashTouching(ops, b, b+1))
	}
	lo := max(0, durable-5)
	fmt.Fprintf(&sb, "ops from %d:", lo)
	for i := lo; i < len(ops) && i < durable+30; i++ {
		fmt.Fprintf(&sb, "\n  %v acked=%v", ops[i], acked[i])
	}
	return sb.String()
}
