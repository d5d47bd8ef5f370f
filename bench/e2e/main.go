// Command e2e is vdiskd's end-to-end benchmark (SPEC §7): the real daemon
// over TCP loopback, driven by fio's nbd engine, side by side with three
// anchors serving the same workloads:
//
//   - nbdkit-file: nbdkit's file plugin on a raw file in the same
//     filesystem as vdiskd's data (what a user runs when they need no
//     snapshots);
//   - qemu-nbd: the same raw file, --cache=writeback (qemu-nbd's default:
//     page cache, FLUSH is an fdatasync);
//   - qcow2-snapshot and qcow2-overlay: the copy-on-write peers, qemu-nbd
//     on a qcow2 image with an internal snapshot, or a fresh overlay over
//     a raw backing file, renewed before each round (peers.go);
//   - nbdkit-memory: nbdkit's memory plugin (RAM only, the protocol
//     ceiling).
//
// For each workload it runs vdiskd and then every anchor, one after the
// other, with the same fio options, then goes on to the next workload; each
// cell has the server's CPU seconds per GiB moved (/proc/PID/stat), the
// figure that holds still on a noisy machine. A second table does the same
// with the page cache out of the way (vdiskd --direct-io-min 4K, qemu-nbd
// --cache=none --aio=native, nbdkit cache=none; each server's files
// dropped from the page cache before each run), beside fio with direct=1
// on a file: the disk's own rates.
// Then it measures, on vdiskd alone, snapshot and list_changed_blocks
// times after 1x and 8x the data, 4 KiB random reads through a 16-deep
// snapshot chain against a VDI of depth 0 with the same content, the
// daemon's peak RSS and its write amplification, and prints everything as
// markdown with the ratios and the SPEC targets.
//
//	go run ./bench/e2e [flags]                 # the full run (make bench runs it)
//	go run ./bench/e2e --runtime 3s --size 512M --snap-data 16M --chain-size 256M
//	go run ./bench/e2e benchsum bench/latest.txt   # medians of go test -bench -count N
//
// Everything it starts runs on 127.0.0.1 with free ports and stops when it
// ends, fails or is interrupted. It needs fio, nbdkit, qemu-nbd, qemu-img
// and nbdcopy (scripts/ensure-tools.sh installs them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "benchsum" {
		os.Exit(benchsumMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is the harness's flags.
type config struct {
	vdiskd      string
	dir         string
	keep        bool
	size        int64
	seqSize     int64
	runtime     time.Duration
	workloads   []string
	anchors     []string
	phases      map[string]bool
	snapData    int64
	snapMult    int
	snapRounds  int
	chainSize   int64
	chainDepth  int
	chainWrite  int64
	chainPasses int
	out         string
	gobench     string
	args        []string // as given, for the report
}

var allWorkloads = []string{"randwrite", "randread", "seqwrite", "seqread", "mixed"}
var allAnchors = []string{"nbdkit-file", "qemu-nbd", "qcow2-snapshot", "qcow2-overlay", "nbdkit-memory"}

const mib = int64(1) << 20

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{args: args}
	var size, seqSize, snapData, chainSize, chainWrite sizeFlag = 2 << 30, 0, 0, 0, 0
	var workloads, anchors, phases string
	fs.StringVar(&c.vdiskd, "vdiskd", "", "vdiskd binary (default: go build ./cmd/vdiskd into a temporary directory)")
	fs.StringVar(&c.dir, "dir", "", "work directory for vdiskd's data and the anchors' raw file, which must share a filesystem (default: bench/e2e/.work/run-<time> in the repository)")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (data, logs, fio reports) instead of removing it")
	fs.Var(&size, "size", "size of the main VDI and of each anchor's export (multiple of 2M)")
	fs.Var(&seqSize, "seq-size", "bytes of the 1 MiB sequential write (default: --size)")
	fs.DurationVar(&c.runtime, "runtime", 10*time.Second, "length of each time-based fio run")
	fs.StringVar(&workloads, "workloads", strings.Join(allWorkloads, ","), "fio workloads to run")
	fs.StringVar(&anchors, "anchors", strings.Join(allAnchors, ","), "anchors to compare with (empty: vdiskd alone)")
	fs.StringVar(&phases, "phases", "io,direct,snapshot,chain", "parts to run: io (fio table), direct (the same without the page cache, beside the disk's direct rates), snapshot (snapshot and list_changed_blocks times), chain (16-deep chain reads)")
	fs.Var(&snapData, "snap-data", "the 1x data written (random 4 KiB writes) before a timed snapshot; 8x is --snap-mult times it (default: --size / 32)")
	fs.IntVar(&c.snapMult, "snap-mult", 8, "multiple of --snap-data for the large interval")
	fs.IntVar(&c.snapRounds, "snap-rounds", 3, "rounds of (1x, 8x) intervals; medians are reported")
	fs.Var(&chainSize, "chain-size", "size of the snapshot-chain VDI and its depth-0 twin, a multiple of 2M (default: --size / 2)")
	fs.IntVar(&c.chainDepth, "chain-depth", 16, "snapshots in the chain")
	fs.Var(&chainWrite, "chain-write", "random 4 KiB writes between two snapshots of the chain (default: chain size / 32)")
	fs.IntVar(&c.chainPasses, "chain-passes", 2, "alternating read passes over (depth 0, chain top, oldest snapshot); medians are reported")
	fs.StringVar(&c.out, "out", "", "also write the report (markdown) to this file")
	fs.StringVar(&c.gobench, "gobench", "", "`go test -bench` output to summarize (medians) at the top of the report")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.size, c.seqSize, c.snapData, c.chainSize, c.chainWrite = int64(size), int64(seqSize), int64(snapData), int64(chainSize), int64(chainWrite)
	if c.seqSize == 0 {
		c.seqSize = c.size
	}
	if c.snapData == 0 {
		c.snapData = max(4096, c.size/32/4096*4096)
	}
	if c.chainSize == 0 {
		c.chainSize = max(2*mib, c.size/2/(2*mib)*(2*mib))
	}
	if c.chainWrite == 0 {
		c.chainWrite = c.chainSize / 32
	}
	var err error
	if c.workloads, err = pickList("--workloads", workloads, allWorkloads); err != nil {
		return nil, err
	}
	if c.anchors, err = pickList("--anchors", anchors, allAnchors); err != nil {
		return nil, err
	}
	ph, err := pickList("--phases", phases, []string{"io", "direct", "snapshot", "chain"})
	if err != nil {
		return nil, err
	}
	c.phases = map[string]bool{}
	for _, p := range ph {
		c.phases[p] = true
	}
	const align = 2 * mib
	switch {
	case c.size <= 0 || c.size%align != 0:
		return nil, fmt.Errorf("--size %d: want a positive multiple of 2 MiB (vdiskd rounds VDIs up to 2 MiB)", c.size)
	case c.chainSize <= 0 || c.chainSize%align != 0:
		return nil, fmt.Errorf("--chain-size %d: want a positive multiple of 2 MiB", c.chainSize)
	case c.seqSize <= 0 || c.seqSize > c.size || c.seqSize%mib != 0:
		return nil, fmt.Errorf("--seq-size %d: want a multiple of 1 MiB, at most --size", c.seqSize)
	case c.snapData < 4096 || int64(c.snapMult)*c.snapData > c.size:
		return nil, fmt.Errorf("--snap-data %d x --snap-mult %d: want at least 4 KiB and at most --size", c.snapData, c.snapMult)
	case c.snapMult < 2 || c.snapRounds < 1 || c.chainDepth < 1 || c.chainPasses < 1:
		return nil, errors.New("--snap-mult must be >= 2, --snap-rounds, --chain-depth and --chain-passes >= 1")
	case c.chainWrite < 4096 || c.chainWrite > c.chainSize:
		return nil, fmt.Errorf("--chain-write %d: want 4 KiB to --chain-size", c.chainWrite)
	case c.runtime < time.Second:
		return nil, fmt.Errorf("--runtime %v: want at least 1s", c.runtime)
	}
	return c, nil
}

// pickList checks a comma-separated subset of known names, keeping the
// order of known.
func pickList(flagName, s string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		ok := false
		for _, k := range known {
			ok = ok || k == f
		}
		if !ok {
			return nil, fmt.Errorf("%s: unknown %q (known: %s)", flagName, f, strings.Join(known, ", "))
		}
		want[f] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

// sizeFlag is a byte count written as 4096, 64K, 512M, 2G or 2GiB (binary
// units).
type sizeFlag int64

func (s *sizeFlag) String() string { return fmtBytes(int64(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "i")
	shift := 0
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift > 0 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: want a byte count such as 4096, 64K, 512M or 2G", v)
	}
	return n << shift, nil
}

// fmtBytes prints a byte count in the largest binary unit that keeps it
// whole, else with two decimals.
func fmtBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for i < len(units)-1 && (f >= 1024 || f <= -1024) {
		f /= 1024
		i++
	}
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d %s", int64(f), units[i])
	}
	return fmt.Sprintf("%.2f %s", f, units[i])
}

// run is main without the process: flags, the harness, the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "e2e:", err)
		return 2
	}
	h := &harness{cfg: c, log: stderr}
	err = h.run(ctx)
	cerr := h.cleanup()
	report := h.report()
	fmt.Fprint(stdout, report)
	if c.out != "" {
		if werr := os.WriteFile(c.out, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(stderr, "e2e:", werr)
			return 1
		}
		fmt.Fprintln(stderr, "e2e: report written to", c.out)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "e2e: interrupted; the report above is partial")
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "e2e:", err)
		return 1
	}
	if cerr != nil {
		fmt.Fprintln(stderr, "e2e:", cerr)
		return 1
	}
	if len(h.failures) > 0 {
		fmt.Fprintf(stderr, "e2e: %d measurement(s) failed; see the report\n", len(h.failures))
		return 1
	}
	return 0
}
