package blockstore

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/vdiskd/vdiskd/cbt"
)

// The model's Revert and MovePool steps (see model_test.go for the rest).

// modelPools are the pools the model creates volumes in and moves them to.
var modelPools = []string{"", "local", "pool-a", "pool-b"}

// String describes a model volume without its bytes.
func (v *mvol) String() string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{%s %s size=%d ro=%v cbt=%v epoch=%d pool=%q attrs=%q origin=%s seq=%d}",
		v.id, v.kind, len(v.data), v.readOnly, v.cbtOn, v.epoch, v.pool, v.attrs, v.origin, v.seq)
}

func isSnapshot(v *mvol) bool { return v.kind == KindSnapshot }

// checkVolume compares one volume's description and all its bytes with the
// model.
func (m *model) checkVolume(v *mvol) {
	m.t.Helper()
	info, err := m.e.s.Volume(v.id)
	if err != nil {
		m.fatalf("volume %s: %v", v.id, err)
	}
	if info.Kind != v.kind || info.CBTEnabled != v.cbtOn || info.Pool != v.pool || info.ReadOnly != v.readOnly ||
		!bytes.Equal(info.Attrs, v.attrs) || (v.data != nil && info.Size != uint64(len(v.data))) {
		m.fatalf("volume %+v does not match the model %s", info, v)
	}
	if v.data == nil {
		return
	}
	d := m.attach(v)
	defer d.Close()
	m.checkDisk(d, v)
}

// checkDisk reads all of an attached volume and compares it with the model.
func (m *model) checkDisk(d *Disk, v *mvol) {
	m.t.Helper()
	if d.Size() != uint64(len(v.data)) {
		m.fatalf("%s size %d, model %d", v.id, d.Size(), len(v.data))
	}
	p := make([]byte, len(v.data))
	if _, err := d.ReadAt(p, 0); err != nil {
		m.fatalf("read %s: %v", v.id, err)
	}
	if !bytes.Equal(p, v.data) {
		m.fatalf("volume %s differs from the model at byte %d", v.id, firstDiff(p, v.data))
	}
	if err := m.checkExtents(d, v); err != nil {
		m.fatalf("extents of %s: %v", v.id, err)
	}
}

// revert reverts a live volume to a snapshot, usually one of its own
// (possibly from before an earlier revert), sometimes another volume's, and
// now and then checks that the store refuses what it must.
func (m *model) revert() {
	if m.rng.Intn(4) == 0 {
		m.revertRefused()
		return
	}
	var v, snap *mvol
	if m.rng.Intn(3) > 0 { // one of the volume's own snapshots
		snap = m.pick(func(s *mvol) bool { return isSnapshot(s) && m.vols[s.origin] != nil && isLive(m.vols[s.origin]) })
		if snap != nil {
			v = m.vols[snap.origin]
		}
	}
	if snap == nil {
		v, snap = m.pick(isLive), m.pick(isSnapshot)
	}
	if v == nil || snap == nil {
		return
	}
	foreign := snap.origin != v.id

	// Every frozen point of the history the volume writes now, and whether
	// XenAPI's rules let it be diffed against the live volume before the
	// revert. After it, none may be.
	old := v.lineage
	var frozen []*mvol
	var wasChain []bool
	for _, id := range m.sortedIDs() {
		if s := m.vols[id]; s.kind != KindLive && (s.lineage == old || s == snap) {
			_, ok := m.expectChanged(s, v)
			frozen, wasChain = append(frozen, s), append(wasChain, ok)
		}
	}

	// Handles on other volumes, the snapshot included, do not block a revert
	// and keep reading what they read.
	var held []*Disk
	var heldVols []*mvol
	if m.rng.Intn(3) == 0 {
		held, heldVols = append(held, m.attach(snap)), append(heldVols, snap)
	}
	if o := m.pick(func(o *mvol) bool { return hasData(o) && o != v && o != snap }); o != nil && m.rng.Intn(3) == 0 {
		held, heldVols = append(held, m.attach(o)), append(heldVols, o)
	}

	m.logf("revert %s to %s (snapshot of %s, %d bytes; volume had %d bytes, cbt %v, ro %v, %d handles elsewhere)",
		v.id, snap.id, snap.origin, len(snap.data), len(v.data), v.cbtOn, v.readOnly, len(held))
	if foreign {
		m.counts["revert-foreign"]++
	}
	info, err := m.e.s.Revert(v.id, snap.id)
	if err != nil {
		m.fatalf("revert %s to %s: %v", v.id, snap.id, err)
	}
	v.data = slices.Clone(snap.data)
	v.lineage = &mlineage{}
	v.cbtOn, v.epoch = false, 0
	if info.ID != v.id || info.Kind != KindLive || info.CBTEnabled || info.Size != uint64(len(snap.data)) ||
		info.ReadOnly != v.readOnly || info.Pool != v.pool || !bytes.Equal(info.Attrs, v.attrs) ||
		info.CloneOf != snap.id || info.Attached != 0 {
		m.fatalf("revert %s to %s returned %+v, model %s", v.id, snap.id, info, v)
	}
	for i, d := range held {
		m.checkDisk(d, heldVols[i])
		d.Close()
	}
	m.checkVolume(v)
	m.checkChainRefusedAfterRevert(v, frozen, wasChain)
	m.maybeEnableCBT(v)
	if v.cbtOn {
		// A new chain starts at the next snapshot, never at an old one.
		m.checkChainRefusedAfterRevert(v, frozen, nil)
	}
}

// checkChainRefusedAfterRevert checks that no frozen point of the reverted
// volume's former history (nor the snapshot it reverted to) can be diffed
// against it: the blocks written since are not what distinguishes them, so
// any answer would be wrong. XenAPI turns CBT off on revert.
func (m *model) checkChainRefusedAfterRevert(v *mvol, frozen []*mvol, wasChain []bool) {
	m.t.Helper()
	for i, s := range frozen {
		if _, ok := m.expectChanged(s, v); ok {
			m.fatalf("model: %s..%s would be answered after %s was reverted", s.id, v.id, v.id)
		}
		for _, pair := range [][2]string{{s.id, v.id}, {v.id, s.id}} {
			if bm, _, err := m.e.s.ChangedBlocks(pair[0], pair[1]); !errors.Is(err, cbt.ErrChain) {
				m.fatalf("changed blocks %s..%s after reverting %s: %v, %v; want ErrChain", pair[0], pair[1], v.id, bm, err)
			}
		}
		if wasChain != nil && wasChain[i] {
			m.counts["reverted-chain-refused"]++
		}
	}
}

// revertRefused asks for a revert the store must refuse, and checks that
// nothing changed.
func (m *model) revertRefused() {
	v := m.pick(isLive)
	snap := m.pick(isSnapshot)
	var id, to string
	var want error
	switch r := m.rng.Intn(5); {
	case r == 0 && v != nil && snap != nil: // attached (even read-only: the guest has it open)
		d := m.attach(v)
		defer d.Close()
		id, to, want = v.id, snap.id, ErrInUse
	case r <= 1 && v != nil: // to a live volume, itself included
		id, to, want = v.id, m.pick(isLive).id, ErrNotSnapshot
	case r == 2: // reverting a snapshot or metadata-only volume
		s := m.pick(func(s *mvol) bool { return s.kind != KindLive })
		if s == nil {
			return
		}
		id, to, want = s.id, m.pick(any_).id, ErrIsSnapshot
	case r == 3 && v != nil: // to a snapshot whose data is gone
		c := m.pick(func(c *mvol) bool { return c.kind == KindCBTMetadata })
		if c == nil {
			return
		}
		id, to, want = v.id, c.id, ErrCBTMetadata
	default: // unknown volumes
		id, to, want = "no-such-volume", m.pick(any_).id, ErrNotFound
		if v != nil && m.rng.Intn(2) == 0 {
			id, to = v.id, "no-such-snapshot"
		}
	}
	m.logf("revert-refused %s to %s: want %v", id, to, want)
	info, err := m.e.s.Revert(id, to)
	if !errors.Is(err, want) {
		m.fatalf("revert %s to %s: %+v, %v; want %v", id, to, info, err, want)
	}
	if v := m.vols[id]; v != nil {
		m.checkVolume(v)
	}
}

// movePool moves a few volumes (any kind, attached or not, sometimes the
// same one twice) to a pool in one call; an unknown ID among them changes
// nothing.
func (m *model) movePool() {
	pool := modelPools[m.rng.Intn(len(modelPools))]
	n := 1 + m.rng.Intn(3)
	if m.rng.Intn(10) == 0 {
		n = 0
	}
	var vs []*mvol
	var ids []string
	for range n {
		v := m.pick(any_)
		if v == nil {
			break
		}
		vs, ids = append(vs, v), append(ids, v.id)
	}
	bad := len(ids) > 0 && m.rng.Intn(5) == 0
	if bad {
		ids = slices.Insert(ids, m.rng.Intn(len(ids)+1), "no-such-volume")
	}
	if len(vs) > 0 && hasData(vs[0]) && m.rng.Intn(4) == 0 {
		d := m.attach(vs[0])
		defer d.Close()
	}
	err := m.e.s.MovePool(pool, ids...)
	if bad {
		m.logf("move-refused %v to %q", ids, pool)
		if !errors.Is(err, ErrNotFound) {
			m.fatalf("move %v to %q: %v, want ErrNotFound", ids, pool, err)
		}
		if _, err := m.e.s.Volume("no-such-volume"); !errors.Is(err, ErrNotFound) {
			m.fatalf("a refused move created a volume: %v", err)
		}
	} else {
		m.logf("move %v to %q", ids, pool)
		if err != nil {
			m.fatalf("move %v to %q: %v", ids, pool, err)
		}
		for _, v := range vs {
			v.pool = pool
		}
	}
	for _, v := range vs {
		if info, err := m.e.s.Volume(v.id); err != nil || info.Pool != v.pool {
			m.fatalf("after moving %v to %q: %s in %q (%v), model %q", ids, pool, v.id, info.Pool, err, v.pool)
		}
	}
}

func (m *model) sortedIDs() []string {
	ids := make([]string, 0, len(m.vols))
	for id := range m.vols {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TestRevertLeavesNoDeadVersions reverts a volume and then destroys the
// newest snapshot of its former history: that history has no live head any
// more, so the versions only that snapshot saw are garbage.
func TestRevertLeavesNoDeadVersions(t *testing.T) {
	e := newEnv(t, modes[0])
	e.create("vm", mib(2))
	e.write("vm", 0, fill(1, BlockSize))
	e.snapshot("vm", "s1")
	e.write("vm", cbt.BlockSize, fill(2, BlockSize))
	e.snapshot("vm", "s2")
	old := e.s.volumes["vm"].lin.rec.ID
	if _, err := e.s.Revert("vm", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Destroy("s2"); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CollectGarbage(); err != nil {
		t.Fatal(err)
	}
	// Only s1 (and vm through it) reads the old history now: one version.
	lo, hi := lineageSpan(tagData, old)
	var n int
	if err := e.s.scanSpan(lo, hi, func(k, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("old lineage keeps %d data versions after GC, want 1 (the block s1 reads)", n)
	}
}
