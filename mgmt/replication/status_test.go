package replication

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestStatus runs testdata/status: each case a relation's settings, the
// replicator's progress and the peer's answer, and the status they make.
//
//	status [interval=<s>] [paused] [synced] [cycle-ago=<s>] [error=<text>] [down=<text>]
func TestStatus(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	datadriven.RunTest(t, "testdata/status", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "status" {
			d.Fatalf(t, "unknown command %q", d.Cmd)
		}
		r := Relation{DstZone: "b", Interval: DefaultInterval}
		var p Progress
		reachable, peerErr := true, ""
		for _, a := range d.CmdArgs {
			val := ""
			if len(a.Vals) > 0 {
				val = a.Vals[0]
			}
			num := func() int {
				n, err := strconv.Atoi(val)
				if err != nil {
					d.Fatalf(t, "%s: %v", a.Key, err)
				}
				return n
			}
			switch a.Key {
			case "interval":
				r.Interval = num()
			case "paused":
				r.Paused = true
			case "synced":
				p.Synced = true
			case "cycle-ago":
				p.LastCycle = now.Add(-time.Duration(num()) * time.Second)
			case "error":
				p.LastError = val
			case "down":
				reachable, peerErr = false, val
			default:
				d.Fatalf(t, "unknown argument %q", a.Key)
			}
		}
		st := StatusOf(r, p, reachable, peerErr, now)
		out := fmt.Sprintf("%s lag=%s", st.State, st.Lag)
		if st.Reason != "" {
			out += ": " + st.Reason
		}
		return out + "\n"
	})
}
