package blockstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestDeadVersions runs testdata/dead_versions. Input lines:
//
//	dead pins=<g,g,...> [head] [parent]
//	<gen>[h] ...        versions newest first; h marks a discard marker
//
// and the output marks each version live or dead.
func TestDeadVersions(t *testing.T) {
	datadriven.RunTest(t, "testdata/dead_versions", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "dead" {
			return "unknown command " + d.Cmd
		}
		var pins []uint64
		var pinArg string
		d.MaybeScanArgs(t, "pins", &pinArg)
		for _, f := range strings.FieldsFunc(pinArg, func(r rune) bool { return r == ',' }) {
			g, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			pins = append(pins, g)
		}
		var vs []version
		for _, f := range strings.Fields(d.Input) {
			hole := strings.HasSuffix(f, "h")
			g, err := strconv.ParseUint(strings.TrimSuffix(f, "h"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			vs = append(vs, version{gen: g, hole: hole})
		}
		dead := deadVersions(vs, pins, d.HasArg("head"), d.HasArg("parent"))
		var out strings.Builder
		for i, v := range vs {
			state := "live"
			if dead[i] {
				state = "dead"
			}
			h := ""
			if v.hole {
				h = " (hole)"
			}
			fmt.Fprintf(&out, "gen %d%s: %s\n", v.gen, h, state)
		}
		return out.String()
	})
}
