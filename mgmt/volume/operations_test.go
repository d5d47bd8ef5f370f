package volume

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/vdiskd/vdiskd/blockstore"
)

// TestOperations drives checkOperation, the pure rule of which operation
// may run on a VDI in which state, from testdata/operations:
//
//	allowed <state>            the allowed_operations list
//	check op=<op> <state>      ok, or the XenAPI error code and params
//
// where <state> is any of kind=live|snapshot|cbt_metadata, type=<vdi_type>,
// cbt, sharable, reset (on_boot), vbds=N, rw=N (writable ones among them),
// current=<op>,... (operations of running tasks), copy-target.
func TestOperations(t *testing.T) {
	datadriven.RunTest(t, "testdata/operations", func(t *testing.T, d *datadriven.TestData) string {
		st := OpState{UUID: "V", Kind: blockstore.KindLive, Type: "user"}
		op := ""
		for _, a := range d.CmdArgs {
			val := ""
			if len(a.Vals) > 0 {
				val = a.Vals[0]
			}
			switch a.Key {
			case "op":
				op = val
			case "kind":
				st.Kind = blockstore.Kind(val)
			case "type":
				st.Type = val
			case "cbt":
				st.CBT = true
			case "sharable":
				st.Sharable = true
			case "reset":
				st.ResetOnBoot = true
			case "vbds", "rw":
				n, err := strconv.Atoi(val)
				if err != nil {
					d.Fatalf(t, "%s: %v", a.Key, err)
				}
				if a.Key == "vbds" {
					st.VBDs = n
				} else {
					st.RWVBDs = n
				}
			case "current":
				st.Current = map[string]string{}
				for i, o := range a.Vals {
					st.Current[fmt.Sprintf("task%d", i)] = o
				}
			case "copy-target":
				st.CopyTarget = true
			case "group":
				st.Group = val
			case "group-snapshot":
				st.GroupSnapshot = val
			default:
				d.Fatalf(t, "unknown argument %q", a.Key)
			}
		}
		switch d.Cmd {
		case "allowed":
			return strings.Join(Allowed(st), " ") + "\n"
		case "check":
			if err := checkOperation(st, op); err != nil {
				return fmt.Sprintf("%s %q\n", err.Code, err.Params)
			}
			return "ok\n"
		}
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	})
}
