package main

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests cover the harness's parsers and its report; they need
// neither fio nor a daemon (the fixtures in testdata/ are real fio 3.33 and
// go test outputs, the fio ones from nbdkit's memory plugin).

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// squeeze collapses the padding of table cells, so expectations need not
// follow column widths.
func squeeze(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), " ")
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func TestParseFio(t *testing.T) {
	for _, tc := range []struct {
		file                   string
		jobs                   int
		readIOPS, writeIOPS    float64
		readIOs, writeIOs      int64
		writeBytes             int64
		readP50, readP99       time.Duration
		writeP50, writeP99     time.Duration
		readBWAtLeast, totalBW float64
	}{
		// fio's nbd engine prints a banner before the report (stdout capture).
		{file: "fio-randwrite.json", jobs: 1, writeIOPS: 91370.629371, writeIOs: 91462, writeBytes: 374628352,
			writeP50: 162816, writeP99: 3620864},
		// numjobs=4 with group_reporting: one entry, both directions.
		{file: "fio-mixed.json", jobs: 1, readIOPS: 92118.40796, writeIOPS: 40003.9801, readIOs: 92579, writeIOs: 40204,
			writeBytes: 164675584, readP50: 84480, readP99: 7110656, writeP50: 83456, writeP99: 7241728},
		// Two jobs without group_reporting: summed, largest percentiles kept.
		{file: "fio-twojobs.json", jobs: 2, readIOPS: 60160.839161 + 57290.709291, readIOs: 60221 + 57348,
			readP50: 51968, readP99: 1712128},
		{file: "fio-seqwrite.json", jobs: 1, writeIOPS: 1391.304348, writeIOs: 64, writeBytes: 64 << 20,
			writeP50: 2572288, writeP99: 27394048},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r, err := parseFio(readFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.Jobs != tc.jobs || !near(r.Read.IOPS, tc.readIOPS) || !near(r.Write.IOPS, tc.writeIOPS) ||
				r.Read.IOs != tc.readIOs || r.Write.IOs != tc.writeIOs || r.Write.IOBytes != tc.writeBytes {
				t.Errorf("got jobs %d, read %v IOPS %d IOs, write %v IOPS %d IOs %d bytes; want %d, %v %d, %v %d %d",
					r.Jobs, r.Read.IOPS, r.Read.IOs, r.Write.IOPS, r.Write.IOs, r.Write.IOBytes,
					tc.jobs, tc.readIOPS, tc.readIOs, tc.writeIOPS, tc.writeIOs, tc.writeBytes)
			}
			if r.Read.P50 != tc.readP50 || r.Read.P99 != tc.readP99 || r.Write.P50 != tc.writeP50 || r.Write.P99 != tc.writeP99 {
				t.Errorf("percentiles: read %v/%v write %v/%v; want %v/%v %v/%v", r.Read.P50, r.Read.P99, r.Write.P50, r.Write.P99,
					tc.readP50, tc.readP99, tc.writeP50, tc.writeP99)
			}
			if !near(r.IOPS(), tc.readIOPS+tc.writeIOPS) {
				t.Errorf("IOPS() %v", r.IOPS())
			}
			// bw_bytes is per second: bytes over runtime, within rounding.
			for _, d := range []dirStats{r.Read, r.Write} {
				if d.IOs == 0 {
					continue
				}
				if want := float64(d.IOBytes) / d.Runtime.Seconds(); math.Abs(d.BW-want)/want > 0.01*float64(tc.jobs) {
					t.Errorf("BW %v, io_bytes/runtime %v", d.BW, want)
				}
			}
		})
	}
}

func TestParseFioErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"job error":   readFixture(t, "fio-error.json"),
		"no JSON":     []byte("fio: connected to NBD server\nfio: pid=1, err=5/file:io_u.c:1889, func=io_u error\n"),
		"truncated":   readFixture(t, "fio-mixed.json")[:500],
		"no jobs":     []byte(`{"fio version":"fio-3.33","jobs":[]}`),
		"no I/O done": []byte(`{"jobs":[{"jobname":"x","error":0,"read":{"total_ios":0},"write":{"total_ios":0}}]}`),
	} {
		if _, err := parseFio(in); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestParseBench(t *testing.T) {
	set, err := parseBench(strings.NewReader(string(readFixture(t, "gobench.txt"))))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Failed) != 0 {
		t.Fatalf("failures: %q", set.Failed)
	}
	var names []string
	for _, b := range set.Stats {
		names = append(names, b.Pkg[strings.LastIndex(b.Pkg, "/")+1:]+":"+b.Name)
	}
	want := "blockstore:BenchmarkWrite4KRandom/store-valuesep blockstore:BenchmarkWrite4KRandom/pebble-valuesep " +
		"blockstore:BenchmarkSnapshot/256MiB metrics:BenchmarkCountersRead"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("benchmarks %q, want %q", got, want)
	}
	checks := []struct {
		i      int
		unit   string
		runs   int
		median float64
	}{
		{0, "ns/op", 3, 604015410},
		{0, "MB/s", 3, 111.10},
		{0, "ns/write", 3, 36866},
		{1, "wamp-window", 3, 2.227},
		{2, "ns/op", 3, 310000}, // the third run's name and numbers are on separate lines
		{3, "ns/op", 2, (20.31 + 20.50) / 2},
		{3, "allocs/op", 2, 0},
	}
	for _, c := range checks {
		b := set.Stats[c.i]
		if b.Runs() != c.runs || !near(b.Median(c.unit), c.median) {
			t.Errorf("%s %s: %d runs, median %v; want %d, %v", b.Name, c.unit, b.Runs(), b.Median(c.unit), c.runs, c.median)
		}
	}
	if got := set.Stats[0].Units; strings.Join(got, ",") != "ns/op,MB/s,blobcomp-window,ns/write,wamp-window" {
		t.Errorf("units in order: %q", got)
	}
	// (700-500)/2/604.0 ms
	if s := set.Stats[0].Spread("ns/op"); !near(s, 100000000/604015410.0) {
		t.Errorf("spread %v", s)
	}
	tab := squeeze(benchTable(set))
	for _, row := range []string{
		"| blockstore | Write4KRandom/store-valuesep | 3 | 604 ms | 17% | 111.1 | 0.4688 blobcomp-window, 36866 ns/write, 2.332 wamp-window |",
		"| metrics | CountersRead | 2 | 20.41 ns | 0% | | 0 B/op, 0 allocs/op |",
	} {
		if !strings.Contains(tab, row) {
			t.Errorf("table lacks %q:\n%s", row, tab)
		}
	}
	if code := benchStatus(set, io.Discard); code != 0 {
		t.Errorf("status %d for a good run", code)
	}
}

func TestBenchsumFailures(t *testing.T) {
	var out, errb strings.Builder
	if code := benchsumMain([]string{filepath.Join("testdata", "gobench-fail.txt")}, nil, &out, &errb); code != 1 {
		t.Errorf("exit %d for a failed run", code)
	}
	if !strings.Contains(errb.String(), "--- FAIL: BenchmarkRead4KRandom/pebble") || !strings.Contains(out.String(), "Read4KRandom/store") {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	errb.Reset()
	if code := benchsumMain(nil, strings.NewReader("PASS\nok x 1s\n"), io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "no benchmark") {
		t.Errorf("empty input: exit %d, %q", code, errb.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64K": 64 << 10, "512M": 512 << 20, "2G": 2 << 30,
		"2GiB": 2 << 30, "64MiB": 64 << 20, "1T": 1 << 40, "3g": 3 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1", "1.5G", "2X", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
	for n, want := range map[int64]string{2 << 30: "2 GiB", 64 << 20: "64 MiB", 1536 << 20: "1.50 GiB", 100: "100 B"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.size != 2<<30 || c.seqSize != c.size || c.snapData != 64<<20 || c.chainSize != 1<<30 || c.chainWrite != c.chainSize/32 || len(c.workloads) != 5 || len(c.anchors) != 5 ||
		!c.phases["io"] || !c.phases["direct"] || !c.phases["snapshot"] || !c.phases["chain"] || c.runtime != 10*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseFlags([]string{"--size", "512M", "--workloads", "mixed,randread", "--anchors", "", "--phases", "io"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.size != 512<<20 || c.snapData != 16<<20 || c.chainSize != 256<<20 || strings.Join(c.workloads, ",") != "randread,mixed" || len(c.anchors) != 0 || c.phases["chain"] {
		t.Errorf("parsed: %+v", c)
	}
	for _, bad := range [][]string{{"--size", "3M"}, {"--seq-size", "4G"}, {"--workloads", "nope"}, {"--runtime", "10ms"},
		{"--snap-data", "1G"}, {"extra"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseProcIO(t *testing.T) {
	p, err := parseProcIO(readFixture(t, "proc-io.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if p.WriteBytes != 1<<20 || p.CancelledWriteBytes != 4096 || p.ReadBytes != 8192 || p.WChar != 2000 || p.RChar != 1000 {
		t.Errorf("%+v", p)
	}
	if _, err := parseProcIO([]byte("nothing\n")); err == nil {
		t.Error("parsed nothing")
	}
}

func TestParsePromText(t *testing.T) {
	in := `# HELP vdiskd_vdisk_write_bytes_total Bytes NBD clients wrote.
# TYPE vdiskd_vdisk_write_bytes_total counter
vdiskd_vdisk_write_bytes_total{vdisk="a",vpool="p"} 1024
vdiskd_vdisk_write_bytes_total{vdisk="b",vpool="p q"} 2.5e+03
vdiskd_pebble_disk_usage_bytes 4.194304e+06
broken_line{
`
	m, err := parsePromText(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if m["vdiskd_vdisk_write_bytes_total"] != 3524 || m["vdiskd_pebble_disk_usage_bytes"] != 4194304 || len(m) != 2 {
		t.Errorf("%v", m)
	}
}

func TestTableAndCells(t *testing.T) {
	tab := &table{header: []string{"a", "µs"}}
	tab.add("long cell", "1")
	tab.add("x")
	want := "| a         | µs  |\n|-----------|-----|\n| long cell | 1   |\n| x         |     |\n"
	if got := tab.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	for _, c := range []struct {
		min, x float64
		want   string
	}{{0, 1, ""}, {1, 1.2, "≥ 1.0: met"}, {0.8, 0.5, "≥ 0.8: **not met**"}, {1, math.NaN(), "≥ 1.0: no data"}} {
		if got := targetCell(c.min, c.x); got != c.want {
			t.Errorf("targetCell(%v, %v) = %q, want %q", c.min, c.x, got, c.want)
		}
	}
	if got := fmtInt(1234567.4); got != "1,234,567" {
		t.Errorf("fmtInt: %q", got)
	}
	for d, want := range map[time.Duration]string{0: "–", 162816: "163 µs", 3620864: "3.62 ms", 2 * time.Second: "2.00 s"} {
		if got := fmtLat(d); got != want {
			t.Errorf("fmtLat(%v) = %q, want %q", d, got, want)
		}
	}
	mixed, err := parseFio(readFixture(t, "fio-mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := latCell(mixed, 50); got != "84 µs / 83 µs" {
		t.Errorf("latCell mixed: %q", got)
	}
}

// TestReport renders a report from canned results: the table rows, ratios
// and verdicts come out where they should.
func TestReport(t *testing.T) {
	c, err := parseFlags([]string{"--runtime", "3s", "--size", "512M"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res := func(file string) fioResult {
		r, err := parseFio(readFixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	h := &harness{cfg: c, duration: 90 * time.Second,
		servers: []*server{{name: "vdiskd"}, {name: "nbdkit-file"}, {name: "nbdkit-memory"}},
		io: map[string]map[string]ioOutcome{
			"randwrite": {"vdiskd": {res: res("fio-randwrite.json"), cpu: 1047 * time.Millisecond, cpuOK: true},
				"nbdkit-file":   {res: res("fio-randwrite.json"), cpu: 349 * time.Millisecond, cpuOK: true},
				"nbdkit-memory": {res: res("fio-seqwrite.json")}},
			"mixed": {"vdiskd": {res: res("fio-mixed.json")}, "nbdkit-file": {err: os.ErrDeadlineExceeded}},
		},
		direct: []*server{{name: "vdiskd-direct", note: "O_DIRECT"}, {name: "disk", note: "fio direct=1"}},
		ioDirect: map[string]map[string]ioOutcome{
			"randwrite": {"vdiskd-direct": {res: res("fio-randwrite.json"), cpu: 1047 * time.Millisecond, cpuOK: true},
				"disk": {res: res("fio-seqwrite.json")}},
		},
		snap:   snapOutcome{ran: true, snap1: []float64{1e6, 2e6, 3e6}, snapN: []float64{4e6}, lcb1: []float64{1e5}, lcbN: []float64{1.2e5}},
		chain:  chainOutcome{ran: true, depth0: []float64{1000}, top: []float64{900}, old: []float64{700}},
		rssHWM: 600 << 20, rssPeak: 590 << 20,
		wamp: wampOutcome{ran: true, disk: 3 << 30, client: float64(1 << 30)},
	}
	out := squeeze(h.report())
	for _, want := range []string{
		"| 4k randwrite QD32 | vdiskd | 91,371 | 356.9 | 3.00 | 163 µs | 3.62 ms | | |",
		"| | nbdkit-file | 91,371 | 356.9 | 1.00 | 163 µs | 3.62 ms | 1.00 | ≥ 1.0: met |",
		"| | nbdkit-memory | 1,391 | 1391.3 | | 2.57 ms | 27.39 ms | 65.67 | ≥ 0.8: met |",
		"| 4k randrw 70/30 QD64, 4 conns | vdiskd | 132,122 | 516.1 | | 84 µs / 83 µs | 7.11 ms / 7.24 ms | | |",
		"| | nbdkit-file | failed | | | | | | |",
		"## fio over NBD without the page cache",
		"- vdiskd-direct: O_DIRECT",
		"| 4k randwrite QD32 | vdiskd-direct | 91,371 | 356.9 | 3.00 | 163 µs | 3.62 ms | | |",
		"| | disk | 1,391 | 1391.3 | | 2.57 ms | 27.39 ms | 65.67 | |",
		"| snapshot after 128 MiB vs 16 MiB written | 4.00 ms (8x) | 2.00 ms (1x) | 2.00 | ≤ 1.5: **not met** |",
		"| list_changed_blocks over 128 MiB vs 16 MiB written | 120 µs (8x) | 100 µs (1x) | 1.20 | ≤ 1.5: met |",
		"| 4k randread QD32, top of a 16-deep snapshot chain vs depth 0 | 900 IOPS | 1,000 IOPS | 0.90 | ≥ 0.8: met |",
		"| … reading the oldest snapshot of the chain instead | 700 IOPS | 1,000 IOPS | 0.70 | |",
		"| RSS peak (VmHWM; polled VmRSS max) | 600 MiB; 590 MiB | | | < 512 MiB: **not met** |",
		"| write amplification: disk bytes / client bytes | 3.00 | 3 GiB / 1 GiB (vdiskd_vdisk_write_bytes_total) | | reported |",
		"ran for 1m30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestMemState(t *testing.T) {
	if got, want := memState("testdata/meminfo.txt"), "15.4 GiB free, 7.5 GiB page cache"; got != want {
		t.Errorf("memState = %q, want %q", got, want)
	}
	if got := memState("testdata/proc-io.txt"); !strings.HasPrefix(got, "unknown (") {
		t.Errorf("memState of a file without MemFree = %q", got)
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// A real line, with a command name holding a space and a parenthesis.
	line := "4242 (qemu-nbd (x)) S 1 4242 4242 0 -1 4194560 1543 0 0 0 250 75 0 0 20 0 5 0 123 456 789 18446744073709551615"
	got, err := parseProcStatCPU([]byte(line))
	if err != nil || got != 3250*time.Millisecond {
		t.Fatalf("got %v, %v; want 3.25s (325 ticks)", got, err)
	}
	if _, err := parseProcStatCPU([]byte("1 (x) S 1")); err == nil {
		t.Fatal("a short line parsed")
	}
	// This process's own: it grows as it spins (2 s at most).
	d0, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		for i := range 1000000 {
			x += i
		}
		if d, _ := procCPU(os.Getpid()); d > d0 {
			return
		}
	}
	t.Fatalf("procCPU(self) stayed at %v over 2 s of spinning (%d)", d0, x)
}
