package metrics

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestRates runs testdata/rates: "counters k=v..." sets the raw counters,
// "advance d" moves the clock, "read key" prints the statistics object.
func TestRates(t *testing.T) {
	datadriven.RunTest(t, "testdata/rates", func(t *testing.T, d *datadriven.TestData) string {
		return ratesCmd(t, d)
	})
}

var (
	ratesNow      time.Time
	ratesR        *Rates
	ratesCounters map[string]float64
)

func ratesCmd(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "reset":
		ratesNow = time.Unix(1412169916, 0)
		ratesR = NewRates(func() time.Time { return ratesNow })
		ratesCounters = map[string]float64{}
		return ""
	case "counters":
		for _, a := range d.CmdArgs {
			v, err := strconv.ParseFloat(a.Vals[0], 64)
			if err != nil {
				t.Fatal(err)
			}
			ratesCounters[a.Key] = v
		}
		return ""
	case "advance":
		dur, err := time.ParseDuration(d.CmdArgs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		ratesNow = ratesNow.Add(dur)
		return ""
	case "read":
		reads := 0
		obj := ratesR.Statistics(d.CmdArgs[0].Key, func() map[string]float64 {
			reads++
			return clone(ratesCounters)
		})
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			if k == "timestamp" {
				fmt.Fprintf(&b, "%s=%.3f ", k, obj[k]-1412169916)
				continue
			}
			fmt.Fprintf(&b, "%s=%g ", k, obj[k])
		}
		fmt.Fprintf(&b, "(sampled %d)", reads)
		return b.String()
	case "forget":
		ratesR.Forget(d.CmdArgs[0].Key)
		return ""
	}
	t.Fatalf("unknown command %q", d.Cmd)
	return ""
}
