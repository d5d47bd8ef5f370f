package stats

import (
	"fmt"
	"slices"
	"strings"
)

// Resource types.
const (
	TypeVDisk = "VDISK" // a vDisk (VDI), by uuid
	TypeVPool = "VPOOL" // a vPool, by guid
	TypeNode  = "NODE"  // this daemon, by its node guid
)

// ResourceTypes are the types resources are named by.
var ResourceTypes = []string{TypeVDisk, TypeVPool, TypeNode}

// Counter is a metric on one type of resource: its cid is the type in
// lower case, a dot and the metric (vdisk.data_read).
type Counter struct {
	Cid    string
	Metric string
	Type   string
	Units  string // vStats' metric units
	Sample string // vStats' sample type: ABSOLUTE (a running total or a level) or RATE
	Scale  string // vStats' units factor, "" for ONE
	Label  string
	Doc    string
}

// Mid is the one edition of every counter's metadata.
const Mid = "1"

// nbdQuantiles are the NODE counters: latency quantiles of the NBD
// commands that move or persist data.
var nbdQuantiles = []struct {
	cmd string
	q   float64
}{{"read", 0.5}, {"read", 0.9}, {"read", 0.99}, {"write", 0.5}, {"write", 0.9}, {"write", 0.99},
	{"flush", 0.5}, {"flush", 0.99}}

// NBDQuantileMetric names the metric of an NBD command's latency quantile
// q (nbd_read_latency_p99).
func NBDQuantileMetric(cmd string, q float64) string {
	return fmt.Sprintf("nbd_%s_latency_p%d", cmd, int(q*100+0.5))
}

// NBDQuantiles lists the NODE counters' commands and quantiles, for the
// reader that computes them.
func NBDQuantiles() (cmds []string, qs []float64) {
	for _, x := range nbdQuantiles {
		cmds, qs = append(cmds, x.cmd), append(qs, x.q)
	}
	return cmds, qs
}

// Metric is a counter of the OVS statistics object the catalogue offers
// on vDisks and vPools (the composition root passes metrics.Keys).
type Metric struct {
	Name, Unit, Doc string
}

// buildCatalogue is every counter: for vDisks and vPools each metric of
// the OVS statistics object and its *_ps rate, for the node the NBD
// latency quantiles.
func buildCatalogue(keys []Metric) []Counter {
	var out []Counter
	for _, t := range []string{TypeVDisk, TypeVPool} {
		of := "the vDisk"
		if t == TypeVPool {
			of = "the vPool's vDisks together"
		}
		for _, k := range keys {
			out = append(out, Counter{Cid: strings.ToLower(t) + "." + k.Name, Metric: k.Name, Type: t,
				Units: k.Unit, Sample: "ABSOLUTE", Label: k.Name,
				Doc: "Of " + of + " since the daemon started: " + k.Doc + "."})
			rate := "NUMBER"
			if k.Unit == "BYTE" {
				rate = "BYTESPERSECOND"
			}
			out = append(out, Counter{Cid: strings.ToLower(t) + "." + k.Name + "_ps", Metric: k.Name + "_ps", Type: t,
				Units: rate, Sample: "RATE", Label: k.Name + " per second",
				Doc: "Of " + of + ": " + k.Name + " per second, as OpenvStorage computes *_ps: its change since the previous " +
					"reading (at least 4 s before, at most 40 s) over the seconds between, never negative; the same value " +
					"GET /api/vdis/{uuid}/statistics answers."})
		}
	}
	for _, x := range nbdQuantiles {
		m := NBDQuantileMetric(x.cmd, x.q)
		out = append(out, Counter{Cid: "node." + m, Metric: m, Type: TypeNode, Units: "SECOND", Sample: "ABSOLUTE",
			Label: m, Doc: "Of this daemon: the " + fmt.Sprint(int(x.q*100+0.5)) + "th percentile of the time from reading an NBD " +
				strings.ToUpper(x.cmd) + " request to queueing its reply, over the requests since the previous sample " +
				"(estimated within vdiskd_nbd_request_duration_seconds' buckets; 0 when there were none)."})
	}
	return out
}

// Counters lists the catalogue, by cid.
func (s *Service) Counters() []Counter { return sortByCid(slices.Clone(s.catalogue)) }

// CatalogueOf is the catalogue a service with these metrics has, by cid
// (for the reference).
func CatalogueOf(metrics []Metric) []Counter { return sortByCid(buildCatalogue(metrics)) }

func sortByCid(cs []Counter) []Counter {
	slices.SortFunc(cs, func(a, b Counter) int { return strings.Compare(a.Cid, b.Cid) })
	return cs
}

// CounterByCid finds a counter.
func (s *Service) CounterByCid(cid string) (Counter, bool) {
	for _, c := range s.catalogue {
		if c.Cid == cid {
			return c, true
		}
	}
	return Counter{}, false
}

// CounterSet is a named group of counters a spec may ask for at once.
type CounterSet struct {
	ID       string
	Counters []string // cids
	Label    string
}

// CounterSets are the sets: per resource type, the client's I/O, its
// rates, and everything.
func (s *Service) CounterSets() []CounterSet {
	var out []CounterSet
	for _, t := range []string{TypeVDisk, TypeVPool} {
		lt := strings.ToLower(t)
		io := []string{lt + ".read_operations", lt + ".write_operations", lt + ".data_read", lt + ".data_written"}
		var rates, all []string
		for _, c := range s.catalogue {
			if c.Type != t {
				continue
			}
			all = append(all, c.Cid)
			if c.Sample == "RATE" {
				rates = append(rates, c.Cid)
			}
		}
		out = append(out,
			CounterSet{ID: lt + "-io", Counters: io, Label: "The client's reads and writes of each " + t},
			CounterSet{ID: lt + "-rates", Counters: rates, Label: "Every per-second rate of each " + t},
			CounterSet{ID: lt + "-all", Counters: all, Label: "Every counter of each " + t})
	}
	var node []string
	for _, c := range s.catalogue {
		if c.Type == TypeNode {
			node = append(node, c.Cid)
		}
	}
	return append(out, CounterSet{ID: "node-nbd-latency", Counters: node, Label: "The daemon's NBD latency quantiles"})
}

// CounterSetByID finds a set.
func (s *Service) CounterSetByID(id string) (CounterSet, bool) {
	for _, set := range s.CounterSets() {
		if set.ID == id {
			return set, true
		}
	}
	return CounterSet{}, false
}

// Metrics are the distinct metric names.
func (s *Service) Metrics() []string {
	var out []string
	for _, c := range s.catalogue {
		if !slices.Contains(out, c.Metric) {
			out = append(out, c.Metric)
		}
	}
	slices.Sort(out)
	return out
}

// Resources lists the ids of every resource of a type now.
func (s *Service) Resources(rtype string) []string { return s.opts.Resources(rtype) }
