package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/vdiskd/vdiskd/cbt"
)

var modelSteps = flag.Int("model.steps", 3000, "operations per seed in TestModel")

// mvol is the model of one volume: its bytes, and what the CBT rules need.
type mvol struct {
	id       string
	kind     Kind
	data     []byte // nil for KindCBTMetadata
	readOnly bool
	lineage  *mlineage
	seq      int // when frozen (snapshots); live volumes are "now"
	cbtOn    bool
	epoch    int
	pool     string
	attrs    []byte
	origin   string // the live volume whose history it froze (snapshots), else its own ID
}

// mlineage is the model of a write history: every change, in order, for
// computing the expected changed-block lists.
type mlineage struct {
	changes []mchange
	epochs  int
}

type mchange struct {
	seq    int
	c0, c1 uint64 // 64 KiB blocks [c0, c1)
}

type model struct {
	t    *testing.T
	e    *env
	rng  *rand.Rand
	seq  int
	vols map[string]*mvol
	next int
	log  []string

	peak   int
	counts map[string]int
}

// TestModel runs thousands of random operations against the store and a
// plain in-memory model, comparing every read and every changed-block list.
// -model.steps sets the length; the seeds are fixed.
func TestModel(t *testing.T) {
	steps := *modelSteps
	// Segments with a newest cache that holds every block, besides
	// mem-segments' tiny one (a 3,000-step run had 359 small reads
	// answered by the cache, the rest through pebble).
	cached := modes[3]
	cached.name, cached.newestBlocks = "mem-segments-cached", 0
	// The tile form, with a tiny newest cache, with one holding every
	// block, and with none.
	tilesCached, tilesUncached := modes[6], modes[6]
	tilesCached.name, tilesCached.newestBlocks = "mem-tiles-cached", 0
	tilesUncached.name, tilesUncached.newestBlocks = "mem-tiles-uncached", -1 // no tile cache either
	for _, m := range []mode{modes[0], modes[2], modes[3], cached, modes[5], modes[6], tilesCached, tilesUncached} {
		for seed := int64(1); seed <= 3; seed++ {
			if (m.name != "mem" || testing.Short()) && seed > 1 {
				continue
			}
			if testing.Short() {
				steps = min(steps, 500)
			}
			t.Run(fmt.Sprintf("%s/seed=%d", m.name, seed), func(t *testing.T) {
				mo := &model{t: t, e: newEnv(t, m), rng: rand.New(rand.NewSource(seed)), vols: map[string]*mvol{}}
				mo.runSteps(steps)
				t.Logf("%d steps: at most %d volumes, %d snapshots, %d clones, %d reverts (%d to another volume's snapshot, %d refused), %d pool moves (%d refused), %d changed-block lists (%d answered, the rest refused as XenAPI does; %d checked refused right after a revert), %d reopens",
					steps, mo.peak, mo.counts["snapshot"], mo.counts["clone"], mo.counts["revert"], mo.counts["revert-foreign"], mo.counts["revert-refused"],
					mo.counts["move"], mo.counts["move-refused"], mo.counts["changed"], mo.counts["answered"], mo.counts["reverted-chain-refused"], mo.counts["reopen"])
				if m.directMin > 0 {
					w, r := mo.e.directIO()
					t.Logf("%d bytes written and %d read past the page cache", w, r)
					if w == 0 || r == 0 {
						t.Errorf("no direct writes or no direct reads: the O_DIRECT path went untested")
					}
				}
				if m.segments {
					t.Logf("%d segments reclaimed", mo.counts["segments reclaimed"])
					if mo.counts["segments reclaimed"] == 0 && !testing.Short() {
						t.Errorf("no segment was reclaimed: the reclaim path went untested")
					}
				}
			})
		}
	}
}

// maxVolumes keeps the model small enough that every volume is checked
// often; past it, destroys replace creates.
const maxVolumes = 24

func (m *model) logf(format string, args ...any) {
	if m.counts == nil {
		m.counts = map[string]int{}
	}
	m.counts[strings.Fields(format)[0]]++
	m.peak = max(m.peak, len(m.vols))
	m.log = append(m.log, fmt.Sprintf("%d: ", m.seq)+fmt.Sprintf(format, args...))
	if len(m.log) > 40 {
		m.log = m.log[1:]
	}
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("step %d: %s\nlast operations:\n%s", m.seq, fmt.Sprintf(format, args...), joinLines(m.log))
}

func joinLines(ls []string) string {
	var b bytes.Buffer
	for _, l := range ls {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func (m *model) pick(filter func(*mvol) bool) *mvol {
	var ids []string
	for id, v := range m.vols {
		if filter(v) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	return m.vols[ids[m.rng.Intn(len(ids))]]
}

func isLive(v *mvol) bool     { return v.kind == KindLive }
func isWritable(v *mvol) bool { return v.kind == KindLive && !v.readOnly }
func hasData(v *mvol) bool    { return v.kind != KindCBTMetadata }
func any_(*mvol) bool         { return true }

func (m *model) newID() string {
	m.next++
	return fmt.Sprintf("vol-%03d", m.next)
}

// randRange picks an offset and length inside size, biased to 4 KiB
// alignment, sometimes 512-aligned, sometimes arbitrary.
func (m *model) randRange(size uint64) (uint64, uint64) {
	var off, n uint64
	switch m.rng.Intn(4) {
	case 0, 1:
		off = uint64(m.rng.Int63n(int64(size/BlockSize))) * BlockSize
		n = uint64(1+m.rng.Intn(40)) * BlockSize
	case 2:
		off = uint64(m.rng.Int63n(int64(size/512))) * 512
		n = uint64(1+m.rng.Intn(100)) * 512
	default:
		off = uint64(m.rng.Int63n(int64(size)))
		n = uint64(1 + m.rng.Intn(20000))
	}
	if off+n > size {
		n = size - off
	}
	return off, n
}

func (m *model) runSteps(steps int) {
	for m.seq = 0; m.seq < steps; m.seq++ {
		m.step()
		if m.e.s.tiles {
			m.checkTileStructure()
		}
		if v := m.pick(hasData); v != nil {
			m.checkRead(v)
		}
		if m.seq%250 == 249 {
			m.checkAll()
		}
	}
	m.checkAll()
	m.checkMinimalAfterDroppingSnapshots()
	m.checkEmptyAfterDestroyingAll()
}

func (m *model) step() {
	switch r := m.rng.Intn(106); {
	case len(m.vols) == 0 || (r < 4 && len(m.vols) < maxVolumes):
		m.create()
	case r < 4 || (len(m.vols) >= maxVolumes && r < 30):
		m.destroy()
	case r < 40:
		m.write()
	case r < 46:
		m.trimOrZero()
	case r < 54:
		m.snapshot()
	case r < 58:
		m.clone()
	case r < 64:
		m.destroy()
	case r < 67:
		m.resize()
	case r < 73:
		m.setCBT()
	case r < 76:
		m.dataDestroy()
	case r < 86:
		m.changedBlocks()
	case r < 89:
		m.e.reopen()
		m.logf("reopen")
		m.checkAll()
	case r < 93:
		if err := m.e.s.CollectGarbage(); err != nil {
			m.fatalf("gc: %v", err)
		}
		m.logf("gc")
		if m.e.mode.segments {
			// 1.0 copies every sealed segment forward, 0.5 the emptier.
			maxLive := []float64{0.5, 1.0}[m.rng.Intn(2)]
			st, err := m.e.s.ReclaimSegments(maxLive)
			if err != nil {
				m.fatalf("reclaim: %v", err)
			}
			m.counts["segments reclaimed"] += st.Freed
			m.logf("reclaim %.1f: %+v", maxLive, st)
		}
	case r < 96:
		m.setReadOnly()
	case r < 100:
		m.badInput()
	case r < 104:
		m.revert()
	default:
		m.movePool()
	}
}

func (m *model) create() {
	size := uint64(1+m.rng.Intn(4)) * SizeAlign
	id := m.newID()
	pool := modelPools[m.rng.Intn(len(modelPools))]
	var attrs []byte
	if m.rng.Intn(2) == 0 {
		attrs = []byte("attrs of " + id)
	}
	m.logf("create %s %d pool=%q", id, size, pool)
	if _, err := m.e.s.Create(CreateRequest{ID: id, Pool: pool, Attrs: attrs, Size: size - uint64(m.rng.Intn(1000))}); err != nil {
		m.fatalf("create: %v", err)
	}
	m.vols[id] = &mvol{id: id, kind: KindLive, data: make([]byte, size), lineage: &mlineage{}, pool: pool, attrs: attrs, origin: id}
	m.maybeEnableCBT(m.vols[id])
}

// maybeEnableCBT turns CBT on for half the new volumes, so that chains
// long enough to diff exist.
func (m *model) maybeEnableCBT(v *mvol) {
	if m.rng.Intn(2) == 0 {
		return
	}
	if _, err := m.e.s.EnableCBT(v.id); err != nil {
		m.fatalf("enable cbt on %s: %v", v.id, err)
	}
	v.lineage.epochs++
	v.cbtOn, v.epoch = true, v.lineage.epochs
}

func (m *model) attach(v *mvol) *Disk {
	d, err := m.e.s.Attach(v.id)
	if err != nil {
		m.fatalf("attach %s: %v", v.id, err)
	}
	return d
}

func (m *model) noteChange(v *mvol, off, n uint64) {
	v.lineage.changes = append(v.lineage.changes, mchange{seq: m.seq, c0: off >> cbt.BlockShift, c1: (off+n-1)>>cbt.BlockShift + 1})
}

func (m *model) write() {
	v := m.pick(isWritable)
	if v == nil {
		return
	}
	off, n := m.randRange(uint64(len(v.data)))
	p := make([]byte, n)
	if m.rng.Intn(8) > 0 { // otherwise all zeros, stored as zero markers
		m.rng.Read(p)
	}
	var f Flags
	if m.rng.Intn(4) == 0 {
		f = FUA
	}
	m.logf("write %s [%d,+%d) fua=%v", v.id, off, n, f == FUA)
	d := m.attach(v)
	defer d.Close()
	if err := d.Write(off, p, f); err != nil {
		m.fatalf("write: %v", err)
	}
	copy(v.data[off:], p)
	m.noteChange(v, off, n)
	if m.rng.Intn(2) == 0 { // what a small write stored is in the newest cache
		m.compareRead(d, v, off, n)
	}
}

func (m *model) trimOrZero() {
	v := m.pick(isWritable)
	if v == nil {
		return
	}
	off, n := m.randRange(uint64(len(v.data)))
	if m.rng.Intn(4) == 0 { // sometimes the whole volume
		off, n = 0, uint64(len(v.data))
	}
	d := m.attach(v)
	defer d.Close()
	var err error
	switch m.rng.Intn(3) {
	case 0:
		m.logf("trim %s [%d,+%d)", v.id, off, n)
		err = d.Trim(off, n, 0)
	case 1:
		m.logf("zero %s [%d,+%d)", v.id, off, n)
		err = d.Zero(off, n, 0)
	default:
		m.logf("zero nohole %s [%d,+%d)", v.id, off, n)
		err = d.Zero(off, n, NoHole|FUA)
	}
	if err != nil {
		m.fatalf("trim/zero: %v", err)
	}
	clear(v.data[off : off+n])
	m.noteChange(v, off, n)
}

func (m *model) snapshot() {
	if len(m.vols) >= maxVolumes {
		return
	}
	var reqs []SnapshotRequest
	var srcs []*mvol
	for i := 0; i < 1+m.rng.Intn(3); i++ {
		v := m.pick(hasData)
		if v == nil {
			return
		}
		reqs = append(reqs, SnapshotRequest{Source: v.id, ID: m.newID()})
		srcs = append(srcs, v)
	}
	m.logf("snapshot %v", reqs)
	if _, err := m.e.s.Snapshot(reqs...); err != nil {
		m.fatalf("snapshot: %v", err)
	}
	for i, r := range reqs {
		src := srcs[i]
		seq := m.seq
		if src.kind != KindLive {
			seq = src.seq
		}
		m.vols[r.ID] = &mvol{id: r.ID, kind: KindSnapshot, data: slices.Clone(src.data), readOnly: true,
			lineage: src.lineage, seq: seq, cbtOn: src.cbtOn, epoch: src.epoch, pool: src.pool, origin: src.origin}
	}
}

func (m *model) clone() {
	if len(m.vols) >= maxVolumes {
		return
	}
	src := m.pick(hasData)
	if src == nil {
		return
	}
	id := m.newID()
	m.logf("clone %s -> %s", src.id, id)
	if _, err := m.e.s.Clone(CloneRequest{Source: src.id, ID: id}); err != nil {
		m.fatalf("clone: %v", err)
	}
	m.vols[id] = &mvol{id: id, kind: KindLive, data: slices.Clone(src.data), lineage: &mlineage{}, pool: src.pool, origin: id}
	if v, _ := m.e.s.Volume(id); v.CBTEnabled {
		m.fatalf("clone %s starts with CBT on", id)
	}
	m.maybeEnableCBT(m.vols[id])
}

func (m *model) destroy() {
	v := m.pick(any_)
	if v == nil {
		return
	}
	m.logf("destroy %s", v.id)
	if m.rng.Intn(5) == 0 && v.kind != KindCBTMetadata { // attached volumes are refused
		d := m.attach(v)
		if err := m.e.s.Destroy(v.id); !errors.Is(err, ErrInUse) {
			m.fatalf("destroy attached: %v", err)
		}
		d.Close()
	}
	if err := m.e.s.Destroy(v.id); err != nil {
		m.fatalf("destroy: %v", err)
	}
	delete(m.vols, v.id)
}

func (m *model) resize() {
	v := m.pick(isWritable)
	if v == nil {
		return
	}
	size := uint64(len(v.data)) + uint64(m.rng.Intn(3))*SizeAlign
	m.logf("resize %s %d", v.id, size)
	if _, err := m.e.s.Resize(v.id, size); err != nil {
		m.fatalf("resize: %v", err)
	}
	v.data = append(v.data, make([]byte, size-uint64(len(v.data)))...)
	if _, err := m.e.s.Resize(v.id, size-SizeAlign); !errors.Is(err, ErrShrink) && size > SizeAlign {
		m.fatalf("shrink: %v", err)
	}
}

func (m *model) setCBT() {
	v := m.pick(isLive)
	if v == nil {
		return
	}
	on := m.rng.Intn(5) > 0
	m.logf("cbt %s %v", v.id, on)
	var err error
	if on {
		_, err = m.e.s.EnableCBT(v.id)
		if !v.cbtOn {
			v.lineage.epochs++
			v.epoch = v.lineage.epochs
		}
	} else {
		_, err = m.e.s.DisableCBT(v.id)
	}
	if err != nil {
		m.fatalf("set cbt: %v", err)
	}
	v.cbtOn = on
}

func (m *model) dataDestroy() {
	v := m.pick(func(v *mvol) bool { return v.kind == KindSnapshot })
	if v == nil {
		return
	}
	m.logf("data destroy %s (cbt %v)", v.id, v.cbtOn)
	_, err := m.e.s.DataDestroy(v.id)
	if !v.cbtOn {
		if !errors.Is(err, ErrNoCBT) {
			m.fatalf("data destroy without cbt: %v", err)
		}
		return
	}
	if err != nil {
		m.fatalf("data destroy: %v", err)
	}
	v.kind, v.data = KindCBTMetadata, nil
}

func (m *model) setReadOnly() {
	v := m.pick(isLive)
	if v == nil {
		return
	}
	v.readOnly = !v.readOnly
	m.logf("read-only %s %v", v.id, v.readOnly)
	if _, err := m.e.s.SetReadOnly(v.id, v.readOnly); err != nil {
		m.fatalf("set read-only: %v", err)
	}
	if v.readOnly {
		d := m.attach(v)
		defer d.Close()
		if err := d.Write(0, []byte{1}, 0); !errors.Is(err, ErrReadOnly) {
			m.fatalf("write to read-only: %v", err)
		}
	}
}

// expectChanged applies XenAPI's rules to the model.
func (m *model) expectChanged(from, to *mvol) (*roaring.Bitmap, bool) {
	toSeq := m.seq
	if to.kind != KindLive {
		toSeq = to.seq
	}
	if from == to || from.kind == KindLive || !from.cbtOn || !to.cbtOn || from.lineage != to.lineage ||
		from.epoch != to.epoch || from.seq >= toSeq {
		return nil, false
	}
	bm := roaring.New()
	for _, c := range from.lineage.changes {
		if c.seq > from.seq && c.seq <= toSeq {
			bm.AddRange(c.c0, c.c1)
		}
	}
	return bm, true
}

func (m *model) changedBlocks() {
	from, to := m.pick(any_), m.pick(any_)
	switch m.rng.Intn(3) {
	case 0: // a pair in one lineage, often refused
		to = m.pick(func(v *mvol) bool { return v.lineage == from.lineage })
	case 1: // a CBT base and a later point of its chain: usually answered
		if f := m.pick(func(v *mvol) bool { return v.kind != KindLive && v.cbtOn }); f != nil {
			from = f
			if t := m.pick(func(v *mvol) bool {
				return v.lineage == f.lineage && v.cbtOn && v.epoch == f.epoch && (v.kind == KindLive || v.seq > f.seq)
			}); t != nil {
				to = t
			}
		}
	}
	want, ok := m.expectChanged(from, to)
	got, size, err := m.e.s.ChangedBlocks(from.id, to.id)
	m.logf("changed %s..%s ok=%v", from.id, to.id, ok)
	if !ok {
		if !errors.Is(err, cbt.ErrChain) {
			m.fatalf("changed blocks %s..%s: %v, want ErrChain", from.id, to.id, err)
		}
		return
	}
	if err != nil {
		m.fatalf("changed blocks %s..%s: %v", from.id, to.id, err)
	}
	m.counts["answered"]++
	want.RemoveRange(cbt.Blocks(size), 1<<32)
	if !got.Equals(want) {
		m.fatalf("changed blocks %s..%s:\n got %v\nwant %v", from.id, to.id, got.ToArray(), want.ToArray())
	}
	// Content check: every 64 KiB block that differs is reported.
	if from.data != nil && to.data != nil {
		for c := uint64(0); c < cbt.Blocks(uint64(len(from.data))); c++ {
			lo, hi := c*cbt.BlockSize, min((c+1)*cbt.BlockSize, uint64(len(from.data)))
			if !bytes.Equal(from.data[lo:hi], to.data[lo:hi]) && !got.Contains(uint32(c)) {
				m.fatalf("changed blocks %s..%s misses block %d whose content changed", from.id, to.id, c)
			}
		}
	}
}

func (m *model) badInput() {
	v := m.pick(hasData)
	if v == nil {
		return
	}
	d := m.attach(v)
	defer d.Close()
	size := uint64(len(v.data))
	if _, err := d.ReadAt(make([]byte, 10), int64(size)-5); !errors.Is(err, ErrOutOfRange) {
		m.fatalf("read across end: %v", err)
	}
	if v.kind == KindLive && !v.readOnly {
		if err := d.Write(size-5, make([]byte, 10), 0); !errors.Is(err, ErrOutOfRange) {
			m.fatalf("write across end: %v", err)
		}
	} else if err := d.Write(0, make([]byte, 10), 0); !errors.Is(err, ErrReadOnly) {
		m.fatalf("write to read-only: %v", err)
	}
	if _, err := m.e.s.Snapshot(SnapshotRequest{Source: v.id, ID: v.id}); !errors.Is(err, ErrExists) {
		m.fatalf("snapshot onto itself: %v", err)
	}
}

func (m *model) checkRead(v *mvol) {
	d := m.attach(v)
	defer d.Close()
	if d.Size() != uint64(len(v.data)) {
		m.fatalf("%s size %d, model %d", v.id, d.Size(), len(v.data))
	}
	off, n := m.randRange(uint64(len(v.data)))
	// Twice: a small read that missed the newest cache filled it, so the
	// second is usually answered from it.
	for range 2 {
		m.compareRead(d, v, off, n)
	}
}

// compareRead reads [off, off+n) of v through d and compares with the model.
func (m *model) compareRead(d *Disk, v *mvol, off, n uint64) {
	p := make([]byte, n)
	if _, err := d.ReadAt(p, int64(off)); err != nil {
		m.fatalf("read %s: %v", v.id, err)
	}
	if !bytes.Equal(p, v.data[off:off+n]) {
		m.fatalf("read %s [%d,+%d) differs from the model at byte %d", v.id, off, n, firstDiff(p, v.data[off:off+n]))
	}
}

// checkExtents checks that the extents tile the volume in order and that
// whatever they call zero reads as zeros in the model.
func (m *model) checkExtents(d *Disk, v *mvol) error {
	var next uint64
	err := d.Extents(0, d.Size(), func(x Extent) error {
		if x.Offset != next || x.Length == 0 {
			return fmt.Errorf("extent %+v does not follow %d", x, next)
		}
		next = x.Offset + x.Length
		if x.Flags&Zero != 0 && !bytes.Equal(v.data[x.Offset:next], make([]byte, x.Length)) {
			return fmt.Errorf("extent %+v is reported zero but holds data", x)
		}
		return nil
	})
	if err == nil && next != d.Size() {
		err = fmt.Errorf("extents end at %d of %d", next, d.Size())
	}
	return err
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// checkAll compares every volume in full, and the store's list of volumes.
// checkTileStructure checks that no two tiles of a lineage overlap, and
// that every chunk the tile cache holds is what pebble holds: a writer
// planning from a stale chunk would make tiles overlap.
func (m *model) checkTileStructure() {
	lo, hi := tagSpan(tagTile)
	it, err := m.e.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		m.fatalf("iter: %v", err)
	}
	var prev linTile
	for it.First(); it.Valid(); it.Next() {
		lin := binary.BigEndian.Uint64(it.Key()[1:])
		t, err := tileUnder(it, lin)
		if err != nil {
			it.Close()
			m.fatalf("%v", err)
		}
		if len(prev.vs) > 0 && prev.lin == lin && t.first <= prev.last {
			it.Close()
			m.fatalf("lineage %d: tile %d-%d overlaps tile %d-%d", lin, t.first, t.last, prev.first, prev.last)
		}
		prev = linTile{lin, t}
	}
	if err := it.Close(); err != nil {
		m.fatalf("iter: %v", err)
	}
	c := m.e.s.tileCache
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, ct := range c.chunks {
		got, err := readChunkTiles(m.e.s.db, r.lin, r.ch)
		if err != nil {
			m.fatalf("%v", err)
		}
		if !slices.EqualFunc(ct.tiles, got.tiles, sameTile) {
			m.fatalf("the tile cache holds %d tiles for chunk %d of lineage %d, pebble %d, or others", len(ct.tiles), r.ch, r.lin, len(got.tiles))
		}
	}
}

func (m *model) checkAll() {
	infos := m.e.s.Volumes()
	if len(infos) != len(m.vols) {
		m.fatalf("store has %d volumes, model %d", len(infos), len(m.vols))
	}
	for _, info := range infos {
		v := m.vols[info.ID]
		if v == nil || info.Kind != v.kind || info.CBTEnabled != v.cbtOn || info.Pool != v.pool ||
			info.ReadOnly != v.readOnly || !bytes.Equal(info.Attrs, v.attrs) || (v.data != nil && info.Size != uint64(len(v.data))) {
			m.fatalf("volume %+v does not match the model %s", info, v)
		}
		if v.data == nil {
			continue
		}
		d := m.attach(v)
		p := make([]byte, len(v.data))
		_, err := d.ReadAt(p, 0)
		if err == nil {
			err = m.checkExtents(d, v)
		}
		d.Close()
		if err != nil {
			m.fatalf("read %s: %v", v.id, err)
		}
		if !bytes.Equal(p, v.data) {
			m.fatalf("volume %s differs from the model at byte %d", v.id, firstDiff(p, v.data))
		}
	}
}

// checkMinimalAfterDroppingSnapshots destroys every snapshot, clone and
// metadata volume, collects garbage, and checks that each remaining root
// volume keeps exactly one version per allocated block: nothing leaks.
func (m *model) checkMinimalAfterDroppingSnapshots() {
	for id, v := range m.vols {
		if v.kind != KindLive {
			if err := m.e.s.Destroy(id); err != nil {
				m.fatalf("destroy %s: %v", id, err)
			}
			delete(m.vols, id)
		}
	}
	// Clones keep their parents' data pinned; drop clones until only
	// volumes without a parent remain.
	for id := range m.vols {
		if m.e.s.volumes[id].lin.parent != nil {
			if err := m.e.s.Destroy(id); err != nil {
				m.fatalf("destroy clone %s: %v", id, err)
			}
			delete(m.vols, id)
		}
	}
	m.e.reopen()
	if err := m.e.s.CollectGarbage(); err != nil {
		m.fatalf("gc: %v", err)
	}
	m.checkAll()
	for id, v := range m.vols {
		d := m.attach(v)
		var allocated uint64
		if err := d.Extents(0, d.Size(), func(x Extent) error {
			if x.Flags&Hole == 0 {
				allocated += x.Length / BlockSize
			}
			return nil
		}); err != nil {
			m.fatalf("extents: %v", err)
		}
		d.Close()
		keys := m.countVersions(m.e.s.volumes[id].lin.rec.ID)
		if keys != allocated {
			m.fatalf("volume %s keeps %d versions for %d allocated blocks after GC", id, keys, allocated)
		}
	}
}

func (m *model) checkEmptyAfterDestroyingAll() {
	for id := range m.vols {
		if err := m.e.s.Destroy(id); err != nil {
			m.fatalf("destroy %s: %v", id, err)
		}
	}
	m.vols = map[string]*mvol{}
	if err := m.e.s.CollectGarbage(); err != nil {
		m.fatalf("gc: %v", err)
	}
	for _, tag := range []byte{tagData, tagTile, tagMarker, tagInterval, tagLineage, tagVolume, tagGC} {
		lo, hi := tagSpan(tag)
		if n := m.countSpan(lo, hi); n != 0 {
			m.fatalf("%d keys with tag %q remain after destroying every volume", n, tag)
		}
	}
}

// countVersions counts the block versions lineage lin holds: its keys
// per block, or in a store of tiles (which must have none of those) what
// its tiles hold, a version of an n-block tile being n, shadows aside.
func (m *model) countVersions(lin uint64) uint64 {
	keys := m.countKeys(tagData, lin)
	if !m.e.s.tiles {
		return keys
	}
	if keys != 0 {
		m.fatalf("lineage %d in a store of tiles has %d per-block keys", lin, keys)
	}
	lo, hi := tileSpan(lin)
	return m.sumSpan(lo, hi, func(k, v []byte) uint64 {
		t, err := decodeTile(lin, k, v)
		if err != nil {
			m.fatalf("%v", err)
		}
		var n uint64
		for _, v := range t.vs {
			if !v.shadow {
				n += t.last - t.first + 1
			}
		}
		return n
	})
}

func (m *model) countKeys(tag byte, lin uint64) uint64 {
	lo, hi := lineageSpan(tag, lin)
	return m.countSpan(lo, hi)
}

func (m *model) countSpan(lo, hi []byte) uint64 {
	return m.sumSpan(lo, hi, func(k, v []byte) uint64 { return 1 })
}

// sumSpan adds up what count says of each key in [lo, hi).
func (m *model) sumSpan(lo, hi []byte, count func(k, v []byte) uint64) uint64 {
	it, err := m.e.s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		m.fatalf("iter: %v", err)
	}
	defer it.Close()
	var n uint64
	for it.First(); it.Valid(); it.Next() {
		n += count(it.Key(), it.Value())
	}
	return n
}
