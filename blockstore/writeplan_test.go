package blockstore

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestWritePlan runs testdata/write_plan: the write path's two pure
// planners.
//
//	steps off=<bytes> n=<bytes> [data] [nohole] [private]
//
// prints the steps of a request. And
//
//	versions gen=<g> [synced=<epoch>] [retiring=<seg>,...]
//	<blk> <new> [now=<held>]
//
// plans the keys of one batch of new versions, one per line: <new> is
// zero, hole, inline (4 KiB kept in pebble) or <seg>:<slot>/<epoch> (4 KiB
// written to that slot; the block's bytes are its number, repeated); <held>
// is what the key holds now: none, hole, zero, inline, or
// <seg>:<slot>/<epoch>~<prev> with <prev> none, hole, zero or
// <seg>:<slot>. Slots written at an epoch below synced are durable.
func TestWritePlan(t *testing.T) {
	datadriven.RunTest(t, "testdata/write_plan", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "steps":
			var r writeRequest
			d.ScanArgs(t, "off", &r.off)
			d.ScanArgs(t, "n", &r.n)
			r.data, r.noHole, r.private = d.HasArg("data"), d.HasArg("nohole"), d.HasArg("private")
			var out strings.Builder
			for _, st := range planSteps(r, nil) {
				fmt.Fprintf(&out, "%s [%d,%d)", st.kind, st.first, st.end)
				if st.kind == stepMerge {
					fmt.Fprintf(&out, " bytes [%d,%d)", st.lo, st.hi)
				}
				out.WriteByte('\n')
			}
			return out.String()
		case "versions":
			return planScript(t, d)
		}
		return "unknown command " + d.Cmd
	})
}

// fakeSlots is a slotState: epochs below synced are durable.
type fakeSlots struct {
	synced   uint32
	retiring map[uint32]bool
}

func (f fakeSlots) durable(_ pointer, epoch uint32) bool { return epoch < f.synced }
func (f fakeSlots) isRetiring(seg uint32) bool           { return f.retiring[seg] }

const scriptLineage = 7

// scanPlanArgs reads a planner script's gen=<g> [synced=<epoch>]
// [retiring=<seg>,...].
func scanPlanArgs(t *testing.T, d *datadriven.TestData) (gen uint64, segs fakeSlots) {
	d.ScanArgs(t, "gen", &gen)
	segs = fakeSlots{retiring: map[uint32]bool{}}
	if d.HasArg("synced") {
		d.ScanArgs(t, "synced", &segs.synced)
	}
	if d.HasArg("retiring") {
		var list string
		d.ScanArgs(t, "retiring", &list)
		for _, f := range strings.Split(list, ",") {
			segs.retiring[uint32(atoi(t, f))] = true
		}
	}
	return gen, segs
}

func planScript(t *testing.T, d *datadriven.TestData) string {
	gen, segs := scanPlanArgs(t, d)
	var vs []newVersion
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("line %q: want <blk> <new> [now=<held>]", line)
		}
		v := newVersion{blk: uint64(atoi(t, f[0]))}
		switch f[1] {
		case "zero":
			v.val = valueZero
		case "hole":
			v.val = valueHole
		case "inline":
			v.val = bytes.Repeat([]byte{byte(v.blk)}, BlockSize)
		default:
			v.val = bytes.Repeat([]byte{byte(v.blk)}, BlockSize)
			v.placed = true
			var p pointer
			p, v.epoch = scanSlot(t, f[1])
			v.seg, v.slot = p.seg, p.slot
		}
		for _, a := range f[2:] {
			now, ok := strings.CutPrefix(a, "now=")
			if !ok {
				t.Fatalf("line %q: unknown %q", line, a)
			}
			v.now = scanHeld(t, now)
		}
		vs = append(vs, v)
	}
	var p versionPlan
	planVersions(&p, scriptLineage, gen, vs, segs)
	var out strings.Builder
	for _, kv := range p.sets {
		out.WriteString(describeSet(t, kv))
		out.WriteByte('\n')
	}
	if p.syncFirst {
		out.WriteString("sync the segments first\n")
	}
	return out.String()
}

// describeSet spells out one Set of a plan, and checks that a data key's
// blk is the key's block.
func describeSet(t *testing.T, kv keyValue) string {
	switch kv.key[0] {
	case tagData:
		blk, gen, ok := decodeDataKey(kv.key, scriptLineage)
		if !ok || !kv.dataKey || blk != kv.blk {
			t.Fatalf("data key %x for block %d (dataKey %v)", kv.key, kv.blk, kv.dataKey)
		}
		return fmt.Sprintf("d %d@%d = %s", blk, gen, describeValue(kv.val))
	case tagReverse:
		seg, slot, run, err := decodeReverse(kv.key, kv.val)
		if err != nil || kv.dataKey {
			t.Fatalf("reverse key %x = %x: %v", kv.key, kv.val, err)
		}
		blk, gen, _ := decodeDataKey(run.first, scriptLineage)
		return fmt.Sprintf("r %d:%d = blocks %d+%d@%d", seg, slot, blk, run.n, gen)
	}
	t.Fatalf("unexpected key %x", kv.key)
	return ""
}

func describeValue(val []byte) string {
	switch {
	case len(val) == 0:
		return "hole"
	case len(val) == 1 && val[0] == 'z':
		return "zero"
	case len(val) == BlockSize:
		return fmt.Sprintf("inline 4 KiB of %d", val[0])
	case isPointer(val):
		v := decodeSegValue(val)
		prev := [...]string{prevNone: "none", prevHole: "hole", prevZero: "zero"}
		p := ""
		if v.prevKind == prevPointer {
			p = fmt.Sprintf("%d:%d", v.prev.seg, v.prev.slot)
		} else {
			p = prev[v.prevKind]
		}
		return fmt.Sprintf("slot %d:%d/%d crc %08x prev %s", v.cur.seg, v.cur.slot, v.epoch, v.cur.crc, p)
	}
	return fmt.Sprintf("%x", val)
}

func scanSlot(t *testing.T, s string) (pointer, uint32) {
	at, epoch, _ := strings.Cut(s, "/")
	seg, slot, ok := strings.Cut(at, ":")
	if !ok {
		t.Fatalf("slot %q: want <seg>:<slot>[/<epoch>]", s)
	}
	var e uint32
	if epoch != "" {
		e = uint32(atoi(t, epoch))
	}
	return pointer{seg: uint32(atoi(t, seg)), slot: uint32(atoi(t, slot))}, e
}

func scanHeld(t *testing.T, s string) held {
	switch s {
	case "none":
		return held{}
	case "hole":
		return heldOf(valueHole)
	case "zero":
		return heldOf(valueZero)
	case "inline":
		return heldOf(zeroBlock)
	}
	cur, prev, _ := strings.Cut(s, "~")
	v := segValue{}
	v.cur, v.epoch = scanSlot(t, cur)
	switch prev {
	case "", "none":
		v.prevKind = prevNone
	case "hole":
		v.prevKind = prevHole
	case "zero":
		v.prevKind = prevZero
	default:
		v.prevKind = prevPointer
		v.prev, _ = scanSlot(t, prev)
	}
	// Through the encoding, as a key's value would come.
	return heldOf(v.append(nil))
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// TestPlanStepsCoverTheRequest checks planSteps on every request within
// four blocks: the steps cover exactly the bytes asked, in order, a merge
// is part of one block, and whole blocks become what the request says.
func TestPlanStepsCoverTheRequest(t *testing.T) {
	const span = 4 * BlockSize
	offs := []uint64{0, 1, 512, BlockSize - 1, BlockSize, BlockSize + 7, 2 * BlockSize}
	for _, off := range offs {
		for n := uint64(1); off+n <= span; n += 97 {
			for _, r := range []writeRequest{
				{off: off, n: n, data: true},
				{off: off, n: n, noHole: true},
				{off: off, n: n, private: true},
				{off: off, n: n},
			} {
				steps := planSteps(r, nil)
				at := off
				for _, st := range steps {
					lo, hi := st.first<<blockShift, st.end<<blockShift
					if st.kind == stepMerge {
						if st.end != st.first+1 || st.hi-st.lo >= BlockSize {
							t.Fatalf("%+v: merge %+v of more than part of one block", r, st)
						}
						lo, hi = lo+st.lo, lo+st.hi
					} else if want := wholeKind(r); st.kind != want {
						t.Fatalf("%+v: whole blocks as %s, want %s", r, st.kind, want)
					}
					if lo != at || hi <= lo {
						t.Fatalf("%+v: step %+v covers [%d,%d), want it to start at %d", r, st, lo, hi, at)
					}
					at = hi
				}
				if at != off+n {
					t.Fatalf("%+v: steps %+v end at %d", r, steps, at)
				}
			}
		}
	}
}

// wholeKind is what whole blocks of a request become.
func wholeKind(r writeRequest) stepKind {
	switch {
	case r.data:
		return stepData
	case r.noHole:
		return stepZero
	case r.private:
		return stepDrop
	}
	return stepHide
}
