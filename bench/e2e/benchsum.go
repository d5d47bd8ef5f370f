package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The benchsum subcommand (`go run ./bench/e2e benchsum FILE...`) reads
// `go test -bench -count N` output and prints one markdown row per
// benchmark with the median of every unit over its N runs, the same
// numbers benchstat would centre on, without a new module dependency.

// benchStat gathers every run of one benchmark.
type benchStat struct {
	Pkg, Name string
	Units     []string // in order of first appearance
	Vals      map[string][]float64
}

// Runs is how many result lines the benchmark had.
func (b *benchStat) Runs() int {
	n := 0
	for _, v := range b.Vals {
		n = max(n, len(v))
	}
	return n
}

// Median of one unit; NaN when the benchmark never reported it.
func (b *benchStat) Median(unit string) float64 { return median(b.Vals[unit]) }

// Spread is half the range of one unit over its runs, relative to the
// median (0.08 means ±8%).
func (b *benchStat) Spread(unit string) float64 {
	v := b.Vals[unit]
	if len(v) < 2 {
		return 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	m := median(v)
	if m == 0 {
		return 0
	}
	return (hi - lo) / 2 / m
}

// benchSet is the parsed output: benchmarks in order of first appearance.
type benchSet struct {
	Stats  []*benchStat
	Failed []string // FAIL / panic lines seen
}

var (
	benchLine   = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(\S.*)$`)
	benchName   = regexp.MustCompile(`^(Benchmark\S+)\s*$`)
	benchCont   = regexp.MustCompile(`^\s+(\d+)\s+(\d\S*\s+\S.*)$`)
	procsSuffix = regexp.MustCompile(`-\d+$`)
)

// parseBench reads standard `go test -bench` output. A benchmark that logs
// gets its name and its numbers on separate lines; both forms are read.
// The -GOMAXPROCS suffix is dropped from names.
func parseBench(r io.Reader) (*benchSet, error) {
	set := &benchSet{}
	index := map[string]*benchStat{}
	pkg, pending := "", ""
	add := func(name, rest string) error {
		name = procsSuffix.ReplaceAllString(name, "")
		f := strings.Fields(rest)
		if len(f)%2 != 0 {
			return fmt.Errorf("benchmark %s: odd value/unit fields %q", name, rest)
		}
		key := pkg + "\x00" + name
		b := index[key]
		if b == nil {
			b = &benchStat{Pkg: pkg, Name: name, Vals: map[string][]float64{}}
			index[key] = b
			set.Stats = append(set.Stats, b)
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("benchmark %s: value %q: %v", name, f[i], err)
			}
			u := f[i+1]
			if _, seen := b.Vals[u]; !seen {
				b.Units = append(b.Units, u)
			}
			b.Vals[u] = append(b.Vals[u], v)
		}
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
			pending = ""
		case strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "panic:"):
			set.Failed = append(set.Failed, line)
		default:
			if m := benchLine.FindStringSubmatch(line); m != nil {
				if err := add(m[1], m[3]); err != nil {
					return nil, err
				}
				pending = ""
			} else if m := benchName.FindStringSubmatch(line); m != nil {
				pending = m[1]
			} else if m := benchCont.FindStringSubmatch(line); m != nil && pending != "" {
				if err := add(pending, m[2]); err != nil {
					return nil, err
				}
				pending = ""
			}
		}
	}
	return set, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// benchTable renders the medians as a markdown table: ns/op and MB/s get
// columns of their own, every other unit goes into the last one.
func benchTable(set *benchSet) string {
	t := &table{header: []string{"package", "benchmark", "runs", "ns/op (median)", "± (half range)", "MB/s", "other units (median)"}}
	for _, b := range set.Stats {
		var other []string
		for _, u := range b.Units {
			if u == "ns/op" || u == "MB/s" {
				continue
			}
			other = append(other, fmtG(b.Median(u))+" "+u)
		}
		ns, mbs := "", ""
		if _, ok := b.Vals["ns/op"]; ok {
			ns = fmtNs(b.Median("ns/op"))
		}
		if _, ok := b.Vals["MB/s"]; ok {
			mbs = fmtG(b.Median("MB/s"))
		}
		spread := ""
		if b.Runs() > 1 {
			spread = fmt.Sprintf("%.0f%%", 100*b.Spread("ns/op"))
		}
		pkg := b.Pkg
		if i := strings.LastIndex(pkg, "/"); i >= 0 {
			pkg = pkg[i+1:]
		}
		t.add(pkg, strings.TrimPrefix(b.Name, "Benchmark"), strconv.Itoa(b.Runs()), ns, spread, mbs, strings.Join(other, ", "))
	}
	return t.String()
}

// fmtNs prints nanoseconds in the unit that keeps 3-4 digits.
func fmtNs(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return ""
	case ns < 1e3:
		return fmt.Sprintf("%.4g ns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.4g µs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.4g ms", ns/1e6)
	}
	return fmt.Sprintf("%.4g s", ns/1e9)
}

// fmtG prints a number with 4 significant digits, without exponent for
// everyday magnitudes.
func fmtG(v float64) string {
	if math.IsNaN(v) {
		return ""
	}
	if a := math.Abs(v); a >= 1e4 && a < 1e12 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// benchsumMain is the benchsum subcommand: files (or stdin) in, table out.
// It exits 1 when the output shows a failure or holds no benchmark.
func benchsumMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	set, err := readBenchFiles(args, stdin)
	if err != nil {
		fmt.Fprintln(stderr, "benchsum:", err)
		return 1
	}
	fmt.Fprint(stdout, benchTable(set))
	return benchStatus(set, stderr)
}

func readBenchFiles(files []string, stdin io.Reader) (*benchSet, error) {
	var readers []io.Reader
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		readers = append(readers, fh, strings.NewReader("\n"))
	}
	if len(files) == 0 {
		readers = append(readers, stdin)
	}
	return parseBench(io.MultiReader(readers...))
}

func benchStatus(set *benchSet, stderr io.Writer) int {
	if len(set.Failed) > 0 {
		fmt.Fprintf(stderr, "benchsum: the benchmark run failed:\n  %s\n", strings.Join(set.Failed, "\n  "))
		return 1
	}
	if len(set.Stats) == 0 {
		fmt.Fprintln(stderr, "benchsum: no benchmark results in the input")
		return 1
	}
	return 0
}
