package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// report renders everything measured so far as markdown. It works on a
// partial run too (a failure or Ctrl-C): missing cells stay empty.
func (h *harness) report() string {
	c := h.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "# vdiskd end-to-end benchmark\n\n")
	fmt.Fprintf(&b, "%s, %s.\n", time.Now().Format("2006-01-02 15:04 MST"), roundDur(h.duration))
	fmt.Fprintf(&b, "- `go run ./bench/e2e %s`\n", strings.Join(c.args, " "))
	for _, e := range h.env {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	for _, n := range h.notes {
		fmt.Fprintf(&b, "\n**%s**\n", n)
	}

	if h.gobench != "" {
		fmt.Fprintf(&b, "\n## Go benchmarks (medians; raw output in %s)\n\n%s", c.gobench, h.gobench)
	}

	if len(h.io) > 0 {
		fmt.Fprintf(&b, "\n## fio over NBD, TCP loopback\n\n")
		fmt.Fprintf(&b, "fio's nbd engine, one server at a time, workload by workload, same options for all. "+
			"Time-based runs last %s; the sequential write is %s from offset 0 ending with a FLUSH (--end_fsync=1), inside the measured time. "+
			"Exports are %s, prefilled with random data. p50/p99: completion latency (mixed: read / write). "+
			"vdiskd ÷ server: vdiskd's IOPS over that server's (the same ratio as MiB/s). "+
			"CPU s/GiB: the server process's user + system CPU time during the run (/proc/PID/stat) per GiB read and written.\n\n",
			secs(c.runtime), fmtBytes(c.seqSize), fmtBytes(c.size))
		writeNotes(&b, h.servers)
		b.WriteString(ioTable(h.servers, h.io, "vdiskd"))
	}

	if len(h.ioDirect) > 0 {
		fmt.Fprintf(&b, "\n## fio over NBD without the page cache\n\n")
		fmt.Fprintf(&b, "The same workloads with every server keeping its data out of the page cache, as a server whose data "+
			"outgrows RAM sees it; before each run the page cache of each server's files is dropped (fdatasync, then "+
			"POSIX_FADV_DONTNEED). disk: fio itself on a file with direct=1, the limit of this table.\n\n")
		writeNotes(&b, h.direct)
		b.WriteString(ioTable(h.direct, h.ioDirect, "vdiskd-direct"))
	}

	if h.snap.ran || h.chain.ran || h.wamp.ran || h.rssHWM > 0 {
		fmt.Fprintf(&b, "\n## Snapshots, changed blocks, snapshot chain, memory, write amplification (vdiskd)\n\n")
		b.WriteString(h.extrasTable())
		fmt.Fprintf(&b, "\nSnapshot and list_changed_blocks: REST round trips on the main VDI after an interval of "+
			"%s (1x) or %s (%dx) of random 4 KiB writes, each timed once pebble stopped flushing and compacting, %d rounds alternating, medians (list_changed_blocks: median of 5 calls per interval). "+
			"Chain: %s VDI, %d x (snapshot, %s of random 4 KiB writes), 4 KiB randread QD32 for %s on its top, on a depth-0 VDI "+
			"nbdcopy filled from the top, and on the oldest snapshot, %d alternating passes, medians. "+
			"Write amplification: bytes vdiskd's process sent to storage (/proc/PID/io write_bytes) over bytes NBD clients wrote to it, whole run "+
			"(the kernel counts a page-cache folio when a write dirties it, whole, and not again until it is clean: a 4 KiB write into a large folio counts the folio, "+
			"a rewrite of a still-dirty one counts nothing; so in-place servers can show more or less than 1).\n",
			fmtBytes(c.snapData), fmtBytes(c.snapData*int64(c.snapMult)), c.snapMult, c.snapRounds,
			fmtBytes(c.chainSize), c.chainDepth, fmtBytes(c.chainWrite), secs(c.runtime), c.chainPasses)
	}

	if len(h.failures) > 0 {
		fmt.Fprintf(&b, "\n## Failures\n\n")
		for _, f := range h.failures {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(f, "\n", "\n  "))
		}
	}
	return b.String()
}

// writeNotes lists how each server was run.
func writeNotes(b *strings.Builder, servers []*server) {
	for _, s := range servers {
		if s.note != "" {
			fmt.Fprintf(b, "- %s: %s\n", s.name, s.note)
		}
	}
	if !strings.HasSuffix(b.String(), "\n\n") {
		b.WriteString("\n")
	}
}

// ioTable is one table of fio results, each server against ref (vdiskd's
// row).
func ioTable(servers []*server, results map[string]map[string]ioOutcome, ref string) string {
	t := &table{header: []string{"workload", "server", "IOPS", "MiB/s", "CPU s/GiB", "p50", "p99", "vdiskd ÷ server", "SPEC target"}}
	for _, w := range workloads {
		cells, ok := results[w.key]
		if !ok {
			continue
		}
		vd, vdok := cells[ref]
		first := true
		for _, s := range servers {
			o, ok := cells[s.name]
			if !ok {
				continue
			}
			title := ""
			if first {
				title, first = w.title, false
			}
			if o.err != nil {
				t.add(title, s.name, "failed", "", "", "", "", "", targetCell(w.targets[s.name], math.NaN()))
				continue
			}
			r := o.res
			ratio, target := "", ""
			if s.name != ref {
				x := math.NaN()
				if vdok && vd.err == nil && r.IOPS() > 0 {
					x = vd.res.IOPS() / r.IOPS()
					ratio = fmt.Sprintf("%.2f", x)
				}
				target = targetCell(w.targets[s.name], x)
			}
			cpu := ""
			if c := o.cpuPerGiB(); !math.IsNaN(c) {
				cpu = fmt.Sprintf("%.2f", c)
			}
			t.add(title, s.name, fmtInt(r.IOPS()), fmt.Sprintf("%.1f", r.BW()/float64(mib)), cpu,
				latCell(r, 50), latCell(r, 99), ratio, target)
		}
	}
	return t.String()
}

// targetCell says whether ratio x meets a SPEC minimum (none: empty).
func targetCell(min, x float64) string {
	if min == 0 {
		return ""
	}
	s := fmt.Sprintf("≥ %.1f", min)
	switch {
	case math.IsNaN(x):
		return s + ": no data"
	case x >= min:
		return s + ": met"
	}
	return s + ": **not met**"
}

func (h *harness) extrasTable() string {
	c := h.cfg
	t := &table{header: []string{"measurement", "vdiskd", "reference", "ratio", "SPEC target"}}
	if h.snap.ran {
		ratioRow := func(what string, n, one []float64) {
			if len(n) == 0 || len(one) == 0 {
				t.add(what, "no data", "", "", "≤ 1.5: no data")
				return
			}
			mn, m1 := median(n), median(one)
			x := mn / m1
			verdict := "met"
			if x > 1.5 {
				verdict = "**not met**"
			}
			t.add(what, fmt.Sprintf("%s (%dx)", fmtLat(time.Duration(mn)), c.snapMult), fmt.Sprintf("%s (1x)", fmtLat(time.Duration(m1))),
				fmt.Sprintf("%.2f", x), "≤ 1.5: "+verdict)
		}
		ratioRow(fmt.Sprintf("snapshot after %s vs %s written", fmtBytes(c.snapData*int64(c.snapMult)), fmtBytes(c.snapData)), h.snap.snapN, h.snap.snap1)
		ratioRow(fmt.Sprintf("list_changed_blocks over %s vs %s written", fmtBytes(c.snapData*int64(c.snapMult)), fmtBytes(c.snapData)), h.snap.lcbN, h.snap.lcb1)
		if len(h.snap.changedN) > 0 && len(h.snap.changed1) > 0 {
			t.add("… 64 KiB blocks changed in those intervals", fmtInt(median(h.snap.changedN)), fmtInt(median(h.snap.changed1)), "", "")
		}
		if h.snap.restFloor > 0 {
			t.add("REST round trip floor (GET /api/vdis/{uuid})", fmtLat(h.snap.restFloor), "", "", "")
		}
	}
	if h.chain.ran {
		if len(h.chain.top) > 0 && len(h.chain.depth0) > 0 {
			top, d0 := median(h.chain.top), median(h.chain.depth0)
			verdict := "met"
			if top/d0 < 0.8 {
				verdict = "**not met**"
			}
			t.add(fmt.Sprintf("4k randread QD32, top of a %d-deep snapshot chain vs depth 0", c.chainDepth),
				fmtInt(top)+" IOPS", fmtInt(d0)+" IOPS", fmt.Sprintf("%.2f", top/d0), "≥ 0.8: "+verdict)
			if len(h.chain.topP99) > 0 && len(h.chain.depth0P99) > 0 {
				t.add("… p99 latency", fmtLat(time.Duration(median(h.chain.topP99))), fmtLat(time.Duration(median(h.chain.depth0P99))), "", "")
			}
			if len(h.chain.old) > 0 {
				old := median(h.chain.old)
				t.add("… reading the oldest snapshot of the chain instead", fmtInt(old)+" IOPS", fmtInt(d0)+" IOPS", fmt.Sprintf("%.2f", old/d0), "")
			}
		} else {
			t.add("snapshot chain reads", "no data", "", "", "≥ 0.8: no data")
		}
	}
	if h.rssHWM > 0 {
		verdict := "met"
		if max(h.rssHWM, h.rssPeak) >= 512*mib {
			verdict = "**not met**"
		}
		t.add("RSS peak (VmHWM; polled VmRSS max)", fmt.Sprintf("%s; %s", fmtMiB(h.rssHWM), fmtMiB(h.rssPeak)), h.rssPeakPhase, "", "< 512 MiB: "+verdict)
	}
	if w := h.wamp; w.ran {
		client := w.client
		src := "vdiskd_vdisk_write_bytes_total"
		if client == 0 {
			client, src = float64(w.clientTally), "harness tally"
		}
		if client > 0 {
			t.add("write amplification: disk bytes / client bytes", fmt.Sprintf("%.2f", float64(w.disk)/client),
				fmt.Sprintf("%s / %s (%s)", fmtBytes(w.disk), fmtBytes(int64(client)), src), "", "reported")
		}
		if w.cancelled > 0 {
			t.add("… net of cancelled writes (files deleted while dirty)", fmt.Sprintf("%.2f", float64(w.disk-w.cancelled)/client), fmtBytes(w.cancelled)+" cancelled", "", "")
		}
		if w.walWritten > 0 && client > 0 {
			t.add("… pebble WAL bytes / client bytes", fmt.Sprintf("%.2f", w.walWritten/client), "", "", "")
		}
		if w.pebbleWAmp > 0 {
			t.add("… pebble's own write amplification (flush+compaction over ingest)", fmt.Sprintf("%.2f", w.pebbleWAmp), "", "", "")
		}
		if w.diskUsage > 0 {
			t.add("… pebble disk usage at the end", fmtBytes(int64(w.diskUsage)), "", "", "")
		}
		for _, a := range w.anchors {
			if a.client > 0 {
				t.add("write amplification of "+a.name+" (fio runs only)", fmt.Sprintf("%.2f", float64(a.disk)/float64(a.client)),
					fmt.Sprintf("%s / %s", fmtBytes(a.disk), fmtBytes(a.client)), "", "")
			}
		}
	}
	return t.String()
}

// latOf is the p-th completion-latency percentile of the direction that
// did most of the requests.
func latOf(r fioResult, p int) time.Duration {
	d := r.Read
	if r.Write.IOs > r.Read.IOs {
		d = r.Write
	}
	if p == 50 {
		return d.P50
	}
	return d.P99
}

// latCell is latOf, or "read / write" when both directions ran.
func latCell(r fioResult, p int) string {
	pick := func(d dirStats) time.Duration {
		if p == 50 {
			return d.P50
		}
		return d.P99
	}
	if r.Read.IOs > 0 && r.Write.IOs > 0 {
		return fmtLat(pick(r.Read)) + " / " + fmtLat(pick(r.Write))
	}
	return fmtLat(latOf(r, p))
}

func fmtLat(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func fmtMiB(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/float64(mib)) }

// fmtInt prints a rounded number with thousands separators.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ""
	}
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func roundDur(d time.Duration) string {
	if d <= 0 {
		return "not run"
	}
	return "ran for " + d.Round(time.Second).String()
}
