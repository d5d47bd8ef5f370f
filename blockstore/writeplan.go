package blockstore

// The write path is plan, then apply. Two pure functions decide; write.go
// does the I/O around them:
//
//   - planSteps says what each block of a request becomes: data from the
//     client's buffer, a partial block to merge, zero markers, one range
//     deletion, or discard markers over what is visible;
//   - planVersions turns a batch of new block versions (their slots
//     already written) and what their keys hold now into the batch's keys:
//     each data key's pointer with its prev for power-loss recovery, one
//     reverse key per run of slots, and whether the segments must be synced
//     before the batch commits.
//
// Neither reads pebble, a file or a lock, so their rules are tested by
// scripts (testdata/write_plan) and a change of the on-disk form is a
// change here.

// writeRequest is one write, trim or zero, as the planner sees it.
type writeRequest struct {
	off, n uint64
	data   bool // the client's bytes, else zeros
	noHole bool // zeroed blocks stay allocated (NBD_CMD_FLAG_NO_HOLE)
	// private says nothing but the live volume reads the lineage's
	// versions (no snapshot, clone or parent), so zeroed blocks can lose
	// every version at once.
	private bool
}

type stepKind uint8

const (
	stepData  stepKind = iota // whole blocks from the client's buffer
	stepMerge                 // one block in part: read it, change bytes [lo, hi), write it back
	stepZero                  // whole blocks become zero markers, allocated
	stepDrop                  // whole blocks lose every version: one range deletion
	stepHide                  // every visible block among whole blocks gets a discard marker
)

var stepNames = [...]string{stepData: "data", stepMerge: "merge", stepZero: "zero", stepDrop: "drop", stepHide: "hide"}

func (k stepKind) String() string { return stepNames[k] }

// writeStep is one step of a request: blocks [first, end), and for a
// merge the bytes [lo, hi) of the block that change.
type writeStep struct {
	kind       stepKind
	first, end uint64
	lo, hi     uint64
}

// planSteps splits a request (n > 0) into at most three steps: a partial
// first block, the whole blocks, a partial last block. A partial block is
// always read, merged and written back, even for zeros; whole blocks of
// zeros are markers, a range deletion or discard markers.
func planSteps(r writeRequest, dst []writeStep) []writeStep {
	dst = dst[:0]
	first, last := r.off>>blockShift, (r.off+r.n-1)>>blockShift
	end := r.off + r.n
	whole := writeStep{kind: stepData, first: first, end: last + 1}
	if lo := r.off - first<<blockShift; lo != 0 || end < (first+1)<<blockShift {
		hi := min(end-first<<blockShift, BlockSize)
		dst = append(dst, writeStep{kind: stepMerge, first: first, end: first + 1, lo: lo, hi: hi})
		whole.first++
	}
	var tail *writeStep
	if whole.first <= last {
		if hi := end - last<<blockShift; hi != BlockSize {
			tail = &writeStep{kind: stepMerge, first: last, end: last + 1, lo: 0, hi: hi}
			whole.end--
		}
	}
	if whole.first < whole.end {
		switch {
		case r.data:
		case r.noHole:
			whole.kind = stepZero
		case r.private:
			whole.kind = stepDrop
		default:
			whole.kind = stepHide
		}
		dst = append(dst, whole)
	}
	if tail != nil {
		dst = append(dst, *tail)
	}
	return dst
}

// blockValue is what a whole block of data is stored as: itself, or the
// zero marker when it is all zeros.
func blockValue(p []byte) []byte {
	if string(p) == string(zeroBlock) {
		return valueZero
	}
	return p
}

// heldKind is what a data key at the head generation holds now.
type heldKind uint8

const (
	heldNothing heldKind = iota // no key (or one the planner cannot read: treated as none, as recovery does)
	heldHole
	heldZero
	heldInline // 4 KiB inline in pebble
	heldSlot   // a segment pointer
)

// held is what a data key holds now, decoded.
type held struct {
	kind heldKind
	slot segValue // when kind is heldSlot
}

// heldOf decodes a data key's value for the planner.
func heldOf(val []byte) held {
	switch {
	case len(val) == 0:
		return held{kind: heldHole}
	case len(val) == 1:
		return held{kind: heldZero}
	case len(val) == BlockSize:
		return held{kind: heldInline}
	case isPointer(val):
		return held{kind: heldSlot, slot: decodeSegValue(val)}
	}
	return held{}
}

// slotState answers what the planner asks of the segments: whether a slot
// is on stable storage yet, and whether a segment is being reclaimed.
type slotState interface {
	durable(p pointer, epoch uint32) bool
	isRetiring(seg uint32) bool
}

// newVersion is one block of a batch: its new value and, for data bound
// for a segment, the slot it was written to and what its key holds now.
type newVersion struct {
	blk uint64
	val []byte // 4 KiB of data, valueZero or valueHole
	// placed: val is in slot (seg, slot) of a segment, written at epoch.
	placed     bool
	seg, slot  uint32
	epoch      uint32
	now        held // what the key holds now (placed versions only)
	pOff       int  // where val starts in the client's buffer, or -1 (write.go)
	fromCached bool // now came from the newest cache (write.go)
}

// follows reports whether next continues v's run: the next block in the
// next slot of the same segment.
func (v *newVersion) follows(next *newVersion) bool {
	return next.seg == v.seg && next.slot == v.slot+1 && next.blk == v.blk+1
}

// keyValue is one Set of a plan. blk is the block of a data key.
type keyValue struct {
	key, val []byte
	blk      uint64
	dataKey  bool
}

// versionPlan is what planVersions decided: Sets for one batch, in order.
type versionPlan struct {
	sets []keyValue
	// syncFirst: a pointer's prev names the value it replaces, which is in
	// a segment not yet synced, because the prev that value carried is in
	// a segment being reclaimed. Sync the segments before committing.
	syncFirst bool
	arena     []byte // holds the keys and values
}

func (p *versionPlan) reset() {
	p.sets, p.arena, p.syncFirst = p.sets[:0], p.arena[:0], false
}

func (p *versionPlan) set(key, val []byte, blk uint64, data bool) {
	k0 := len(p.arena)
	p.arena = append(p.arena, key...)
	v0 := len(p.arena)
	p.arena = append(p.arena, val...)
	// Slices into an arena that later grows keep pointing at the old array,
	// whose bytes do not change: safe.
	p.sets = append(p.sets, keyValue{key: p.arena[k0:v0:v0], val: p.arena[v0:len(p.arena):len(p.arena)], blk: blk, dataKey: data})
}

// planVersions plans the keys of new versions vs of lineage lin at
// generation gen (ascending by block within each run of slots, as write.go
// places them):
//
//   - a version not placed in a segment (a marker, or data stored inline) is
//     its value at its data key;
//   - a placed version is a pointer to its slot. Its prev is the last
//     durable value of the key, for recovery after a power cut: the value it
//     replaces if that is durable (a marker, or a slot synced since), else
//     what that value carried as its own prev. When that carried prev is in
//     a segment being reclaimed, the plan syncs the segments first and
//     names the replaced value instead, so recovery never needs a slot that
//     reclaim may remove;
//   - a placed version whose key holds 4 KiB inline (segments were just
//     turned on) stays inline: prev cannot hold 4 KiB, and pebble keeps it
//     atomic. Its slot is left to die;
//   - each run of placed pointers (consecutive blocks in consecutive slots
//     of one segment) gets one reverse key: recovery and reclaim find the
//     data keys of a segment's slots through them.
//
// It adds to p (reset it for a new batch).
func planVersions(p *versionPlan, lin, gen uint64, vs []newVersion, segs slotState) {
	var key, rkey, rfirst [dataKeyLen + 4]byte
	var val [pointerPrevLen]byte
	run := -1 // index in vs of the first version of the open run
	endRun := func(end int) {
		if run >= 0 {
			first := &vs[run]
			k := dataKey(rfirst[:0], lin, first.blk, gen)
			p.set(reverseKey(rkey[:0], first.seg, first.slot), reverseValue(val[:0], k, uint32(end-run)), 0, false)
		}
		run = -1
	}
	for i := range vs {
		v := &vs[i]
		k := dataKey(key[:0], lin, v.blk, gen)
		if !v.placed || v.now.kind == heldInline {
			endRun(i)
			p.set(k, v.val, v.blk, true)
			continue
		}
		sv := segValue{cur: pointer{seg: v.seg, slot: v.slot, crc: blockCRC(v.val)}, epoch: v.epoch}
		sv.prevKind, sv.prev = prevOf(v.now, segs, &p.syncFirst)
		p.set(k, sv.append(val[:0]), v.blk, true)
		if run >= 0 && !vs[i-1].follows(v) {
			endRun(i)
		}
		if run < 0 {
			run = i
		}
	}
	endRun(len(vs))
}

// prevOf is the prev of a pointer replacing now (see planVersions).
func prevOf(now held, segs slotState, syncFirst *bool) (byte, pointer) {
	switch now.kind {
	case heldHole:
		return prevHole, pointer{}
	case heldZero:
		return prevZero, pointer{}
	case heldSlot:
		v := now.slot
		if keepsReplaced(segs.durable(v.cur, v.epoch), v.prevKind == prevPointer && segs.isRetiring(v.prev.seg), syncFirst) {
			return prevPointer, v.cur
		}
		return v.prevKind, v.prev
	}
	return prevNone, pointer{}
}

// keepsReplaced is the rule of power-loss fallbacks, for pointers' prev
// and tiles' shadows alike: a version replacing a value at the same
// generation falls back to that value when it is durable, else to what
// that value fell back to. When the latter is in a segment being
// reclaimed, the segments are synced first (syncFirst) and the replaced
// value is the fallback, so recovery never needs a slot reclaim may
// remove (reclaim.go).
func keepsReplaced(durable, carriedRetiring bool, syncFirst *bool) bool {
	switch {
	case durable:
		return true
	case carriedRetiring:
		*syncFirst = true
		return true
	}
	return false
}
