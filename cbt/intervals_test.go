package cbt

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cockroachdb/datadriven"
)

// TestIntervals runs testdata/intervals: seal, union, compact (which prints
// the plan and applies it) and show.
func TestIntervals(t *testing.T) {
	datadriven.Walk(t, "testdata/intervals", func(t *testing.T, path string) {
		var s Intervals
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "seal":
				var end uint64
				var blocks string
				d.ScanArgs(t, "end", &end)
				d.MaybeScanArgs(t, "blocks", &blocks)
				if err := s.Seal(end, parseBlocks(t, blocks)); err != nil {
					return err.Error()
				}
				return showIntervals(&s)
			case "union":
				var lo, hi uint64
				d.ScanArgs(t, "lo", &lo)
				d.ScanArgs(t, "hi", &hi)
				return fmt.Sprint(s.Union(lo, hi).ToArray())
			case "compact":
				var pins string
				d.MaybeScanArgs(t, "pins", &pins)
				var ps []uint64
				for _, b := range parseBlocks(t, pins).ToArray() {
					ps = append(ps, uint64(b))
				}
				plan := s.Compact(ps)
				var out strings.Builder
				fmt.Fprintf(&out, "drop %v\n", plan.Drop)
				for _, iv := range plan.Put {
					fmt.Fprintf(&out, "put (..%d] %v\n", iv.End, iv.Blocks.ToArray())
				}
				s.Apply(plan)
				out.WriteString(showIntervals(&s))
				return out.String()
			case "show":
				return showIntervals(&s)
			}
			return "unknown command " + d.Cmd
		})
	})
}

func parseBlocks(t *testing.T, s string) *roaring.Bitmap {
	bm := roaring.New()
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			t.Fatalf("bad block %q: %v", f, err)
		}
		bm.Add(uint32(n))
	}
	return bm
}

func showIntervals(s *Intervals) string {
	var out strings.Builder
	start := uint64(0)
	for _, iv := range s.All() {
		fmt.Fprintf(&out, "(%d,%d] %v\n", start, iv.End, iv.Blocks.ToArray())
		start = iv.End
	}
	if out.Len() == 0 {
		return "empty\n"
	}
	return out.String()
}
