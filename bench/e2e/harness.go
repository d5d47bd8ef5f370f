package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one NBD server under test: vdiskd or an anchor.
type server struct {
	name string
	uri  string
	proc *child
	note string // how it was started, for the report
	io0  procIO // /proc/PID/io when measuring began
	// writtenByFio is the bytes fio reported writing to it (anchors'
	// write amplification; vdiskd's comes from its own counters).
	writtenByFio int64
	// prepare, if set, readies the server before each run: the
	// copy-on-write peers restart on a fresh snapshot or overlay, so every
	// round's writes are copy-on-write, as vdiskd's are.
	prepare func(ctx context.Context) error
	// diskBefore is what processes of this server that prepare stopped
	// sent to storage (/proc write_bytes).
	diskBefore int64
	// file: fio runs on this local file (libaio, direct=1) instead of
	// NBD: the disk's own rates, the limit of the no-page-cache table.
	file string
	// cached are the files (or directories of them) whose page cache the
	// no-page-cache table drops before each run.
	cached []string
}

// workload is one fio job shape, run against every server in turn.
type workload struct {
	key, title string
	args       func(c *config) []string
	// targets: SPEC §7 minimum of vdiskd's IOPS over the anchor's.
	targets map[string]float64
}

var workloads = []workload{
	{key: "randwrite", title: "4k randwrite QD32",
		args: func(c *config) []string {
			return []string{"--rw=randwrite", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=" + secs(c.runtime)}
		},
		targets: map[string]float64{"nbdkit-file": 1.0, "nbdkit-memory": 0.8}},
	{key: "randread", title: "4k randread QD32",
		args: func(c *config) []string {
			return []string{"--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=" + secs(c.runtime)}
		},
		targets: map[string]float64{"nbdkit-file": 1.0, "nbdkit-memory": 0.8}},
	{key: "seqwrite", title: "1M seqwrite QD8 +fsync",
		// Not time-based: --seq-size bytes from offset 0, then one FLUSH
		// (--end_fsync=1) inside the measured time, so every server pays
		// for durability.
		args: func(c *config) []string {
			return []string{"--rw=write", "--bs=1M", "--iodepth=8", "--size=" + strconv.FormatInt(c.seqSize, 10), "--end_fsync=1"}
		},
		targets: map[string]float64{"nbdkit-file": 1.0}},
	{key: "seqread", title: "1M seqread QD8",
		args: func(c *config) []string {
			return []string{"--rw=read", "--bs=1M", "--iodepth=8", "--time_based", "--runtime=" + secs(c.runtime)}
		},
		targets: map[string]float64{"nbdkit-file": 1.0}},
	{key: "mixed", title: "4k randrw 70/30 QD64, 4 conns",
		// fio's nbd engine opens one connection per job: 4 jobs of depth
		// 16 are 64 requests in flight over 4 connections (every server
		// here advertises CAN_MULTI_CONN); group_reporting sums them.
		args: func(c *config) []string {
			return []string{"--rw=randrw", "--rwmixread=70", "--bs=4k", "--iodepth=16", "--numjobs=4",
				"--group_reporting", "--time_based", "--runtime=" + secs(c.runtime)}
		}},
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

// ioOutcome is one (workload, server) cell of the table.
type ioOutcome struct {
	res fioResult
	err error
	// cpu is the server process's CPU time (user + system) during the
	// run; cpuOK says it was read.
	cpu   time.Duration
	cpuOK bool
}

// cpuPerGiB is the server's CPU seconds per GiB moved (read + written).
func (o ioOutcome) cpuPerGiB() float64 {
	moved := float64(o.res.Read.IOBytes+o.res.Write.IOBytes) / float64(1<<30)
	if !o.cpuOK || moved == 0 {
		return math.NaN()
	}
	return o.cpu.Seconds() / moved
}

type snapOutcome struct {
	ran                bool
	snap1, snapN       []float64 // ns per round
	lcb1, lcbN         []float64 // ns (median of 5 calls) per round
	changed1, changedN []float64
	restFloor          time.Duration
}

type chainOutcome struct {
	ran               bool
	depth0, top, old  []float64 // IOPS per pass
	depth0P99, topP99 []float64
}

type wampOutcome struct {
	ran         bool
	disk        int64   // vdiskd's /proc write_bytes over the run
	cancelled   int64   // its cancelled_write_bytes (truncated dirty pages)
	client      float64 // bytes NBD clients wrote (vdiskd_vdisk_write_bytes_total)
	clientTally int64   // the same, as the harness counted it
	walWritten  float64
	pebbleWAmp  float64
	diskUsage   float64
	anchors     []anchorWAmp
}

type anchorWAmp struct {
	name         string
	disk, client int64
}

// harness runs the whole benchmark; its fields are what the report shows.
type harness struct {
	cfg *config
	log io.Writer

	root, work, binDir string
	removeWork         bool
	defaultWork        bool // h.work is under bench/e2e/.work
	children           []*child
	vd                 *server
	api                *rest
	servers            []*server
	mainVDI            vdiRecord
	rss                *rssSampler
	t0                 time.Time

	env          []string // machine and tool lines for the report
	notes        []string
	gobench      string
	io           map[string]map[string]ioOutcome
	direct       []*server // the no-page-cache table's servers
	ioDirect     map[string]map[string]ioOutcome
	bin, raw     string // vdiskd's binary, the anchors' raw file
	snap         snapOutcome
	chain        chainOutcome
	wamp         wampOutcome
	rssPeak      int64
	rssPeakPhase string
	rssHWM       int64
	prefillBW    float64
	failures     []string
	duration     time.Duration
	clientIO     int64 // bytes the harness wrote to vdiskd (prefill and fio)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "[%6.1fs] %s\n", time.Since(h.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) fail(what string, err error) {
	h.failures = append(h.failures, what+": "+err.Error())
	h.logf("FAILED %s: %v", what, err)
}

func (h *harness) run(ctx context.Context) error {
	h.t0 = time.Now()
	defer func() { h.duration = time.Since(h.t0) }()
	h.io, h.ioDirect = map[string]map[string]ioOutcome{}, map[string]map[string]ioOutcome{}
	if h.cfg.gobench != "" {
		set, err := readBenchFiles([]string{h.cfg.gobench}, nil)
		if err != nil {
			return fmt.Errorf("--gobench: %w", err)
		}
		h.gobench = benchTable(set)
		var msg strings.Builder
		if benchStatus(set, &msg) != 0 {
			h.fail("go benchmarks", errors.New(strings.TrimSpace(msg.String())))
		}
	}
	if err := h.checkTools(); err != nil {
		return err
	}
	if err := h.setup(ctx); err != nil {
		return err
	}
	if h.cfg.phases["io"] {
		if err := h.runIO(ctx, h.servers, h.io, false); err != nil {
			return err
		}
	}
	if h.cfg.phases["direct"] {
		if err := h.directPhase(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			h.fail("the no-page-cache table", err)
		}
	}
	if h.cfg.phases["snapshot"] {
		if err := h.snapshotPhase(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			h.fail("snapshot/list_changed_blocks", err)
		}
	}
	if h.cfg.phases["chain"] {
		if err := h.chainPhase(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			h.fail("snapshot chain", err)
		}
	}
	h.finalSamples(ctx)
	return nil
}

func (h *harness) checkTools() error {
	need := []string{"fio", "nbdcopy"}
	for _, a := range h.cfg.anchors {
		switch a {
		case "nbdkit-file", "nbdkit-memory":
			need = append(need, "nbdkit")
		case "qemu-nbd":
			need = append(need, "qemu-nbd")
		case "qcow2-snapshot", "qcow2-overlay":
			need = append(need, "qemu-nbd", "qemu-img")
		}
	}
	if h.cfg.vdiskd == "" {
		need = append(need, "go")
	}
	var missing []string
	for _, n := range need {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s (run `make tools`, scripts/ensure-tools.sh; nbdkit is Debian's nbdkit package)", strings.Join(missing, ", "))
	}
	return nil
}

// setup: work dir, binary, raw file, vdiskd with its prefilled VDI and a
// snapshot, the anchors.
func (h *harness) setup(ctx context.Context) error {
	c := h.cfg
	root, err := moduleRoot()
	if err != nil && (c.vdiskd == "" || c.dir == "") {
		return err
	}
	h.root = root
	h.work = c.dir
	if h.work == "" {
		h.work = filepath.Join(root, "bench", "e2e", ".work", "run-"+time.Now().Format("20060102-150405"))
		h.removeWork, h.defaultWork = !c.keep, true
	} else if _, err := os.Stat(h.work); errors.Is(err, os.ErrNotExist) {
		h.removeWork = !c.keep
	}
	if err := os.MkdirAll(h.work, 0o755); err != nil {
		return err
	}
	fsName := fsType(h.work)
	if fsName == "tmpfs" {
		h.notes = append(h.notes, "WARNING: the work directory is on tmpfs: nothing reaches a disk, durability costs nothing; use --dir on a real filesystem.")
	}
	h.collectEnv(fsName)

	bin := c.vdiskd
	if bin == "" {
		if h.binDir, err = os.MkdirTemp("", "vdiskd-e2e-bin-"); err != nil {
			return err
		}
		bin = filepath.Join(h.binDir, "vdiskd")
		h.logf("building vdiskd (go build -tags=pebblegozstd ./cmd/vdiskd)")
		cmd := exec.CommandContext(ctx, "go", "build", "-tags=pebblegozstd", "-o", bin, "./cmd/vdiskd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/vdiskd: %v\n%s", err, out)
		}
	}

	h.bin = bin
	raw := filepath.Join(h.work, "anchor.raw")
	h.raw = raw
	h.logf("writing %s of random data to %s (%s)", fmtBytes(c.size), raw, fsName)
	if err := writeRandomFile(ctx, raw, c.size); err != nil {
		return err
	}

	if err := h.startVdiskd(ctx, bin); err != nil {
		return err
	}
	h.rss.during("prefill (nbdcopy)")
	if h.mainVDI, h.vd.uri, h.prefillBW, err = h.prefilledVDI(ctx, h.api, "e2e-main"); err != nil {
		return err
	}
	h.clientIO += c.size
	h.vd.note = fmt.Sprintf("CBT on, 1 snapshot, prefilled (nbdcopy %.0f MiB/s)", h.prefillBW/float64(mib))

	for _, a := range c.anchors {
		s, err := h.startAnchor(ctx, a, raw)
		if err != nil {
			return err
		}
		h.servers = append(h.servers, s)
	}
	for _, s := range h.servers {
		if s.io0, err = readProcIO(s.proc.pid()); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) startVdiskd(ctx context.Context, bin string) error {
	ch, api, err := h.launchVdiskd(ctx, bin, "vdiskd", filepath.Join(h.work, "vdiskd-data"))
	if err != nil {
		return err
	}
	h.api = api
	h.vd = &server{name: "vdiskd", proc: ch}
	h.servers = append(h.servers, h.vd)
	h.rss = sampleRSS(ch.pid(), 100*time.Millisecond)
	return nil
}

// launchVdiskd starts a vdiskd on data with free loopback ports and logs
// in to it.
func (h *harness) launchVdiskd(ctx context.Context, bin, name, data string, extra ...string) (*child, *rest, error) {
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)
	argv := append([]string{bin, "--data-dir", data, "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"}, extra...)
	ch, err := startChild(name, filepath.Join(h.work, name+".log"), []string{"VDISKD_ADMIN_PASSWORD=" + password},
		syscall.SIGTERM, argv...)
	if err != nil {
		return nil, nil, err
	}
	h.children = append(h.children, ch)
	if err := ch.waitOutput(ctx, "vdiskd ready", 60*time.Second); err != nil {
		return nil, nil, err
	}
	m := regexp.MustCompile(`api=(\S+) nbd=(\S+)`).FindStringSubmatch(ch.out.String())
	if m == nil {
		return nil, nil, fmt.Errorf("%s: no addresses in its ready line:\n%s", name, ch.out.String())
	}
	h.logf("%s %s ready: api=%s nbd=%s data=%s", name, bin, m[1], m[2], data)
	api, err := login(ctx, m[1], "admin", password)
	if err != nil {
		return nil, nil, err
	}
	return ch, api, nil
}

// prefilledVDI makes a VDI of --size with CBT on, fills it from the raw
// file (nbdcopy --flush) and snapshots it, so every later write is
// copy-on-write; it answers the VDI, its NBD URI and the fill's rate.
func (h *harness) prefilledVDI(ctx context.Context, api *rest, name string) (vdiRecord, string, float64, error) {
	v, err := api.createVDI(ctx, name, h.cfg.size)
	if err != nil {
		return v, "", 0, err
	}
	if err := api.enableCBT(ctx, v.UUID); err != nil {
		return v, "", 0, err
	}
	uri, err := api.nbdURI(ctx, v.UUID)
	if err != nil {
		return v, "", 0, err
	}
	h.logf("prefilling VDI %s from the raw file (nbdcopy --flush)", v.UUID)
	t := time.Now()
	if err := nbdcopy(ctx, h.raw, uri); err != nil {
		return v, "", 0, err
	}
	bw := float64(h.cfg.size) / time.Since(t).Seconds()
	if _, err := api.snapshot(ctx, v.UUID); err != nil {
		return v, "", 0, err
	}
	return v, uri, bw, nil
}

// startAnchor starts one anchor on a free loopback port, serving export ""
// with the raw file's size.
func (h *harness) startAnchor(ctx context.Context, name, raw string) (*server, error) {
	var argv []string
	var note string
	switch name {
	case "nbdkit-file":
		argv = []string{"nbdkit", "--exit-with-parent", "-f", "-i", "127.0.0.1", "-p", "PORT", "file", raw}
		note = "nbdkit file plugin, defaults (page cache, 16 threads)"
	case "qemu-nbd":
		// -t: keep serving after a client leaves; -e 16: several
		// connections at once (the mixed workload opens 4).
		argv = []string{"qemu-nbd", "-f", "raw", "-t", "-e", "16", "-x", "", "-b", "127.0.0.1", "-p", "PORT",
			"--cache=writeback", "--aio=threads", raw}
		note = "--cache=writeback (page cache; FLUSH = fdatasync), --aio=threads"
	case "nbdkit-memory":
		argv = []string{"nbdkit", "--exit-with-parent", "-f", "-i", "127.0.0.1", "-p", "PORT", "memory", "size=" + strconv.FormatInt(h.cfg.size, 10)}
		note = "nbdkit memory plugin (sparse allocator), prefilled from the raw file"
	case "qcow2-snapshot", "qcow2-overlay":
		return h.startCOW(ctx, name, raw)
	default:
		return nil, fmt.Errorf("unknown anchor %s", name)
	}
	s, err := h.startServer(ctx, name, argv)
	if err != nil {
		return nil, err
	}
	s.note = note
	if name == "nbdkit-memory" {
		if err := nbdcopy(ctx, raw, s.uri); err != nil {
			return nil, fmt.Errorf("prefilling nbdkit-memory: %w", err)
		}
	}
	return s, nil
}

func nbdcopy(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "nbdcopy", "--flush", src, dst)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("nbdcopy %s -> %s: %v\n%s", src, dst, err, out)
	}
	return nil
}

// writeRandomFile writes size bytes of incompressible data and syncs them,
// so the page cache holds no dirty pages when the measurements start.
func writeRandomFile(ctx context.Context, path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.NewChaCha8(seed)
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(int64(len(buf)), size-off)
		_, _ = rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// runIO: for each workload, every server in turn with the same options,
// into results; dropCache empties the page cache of each server's files
// first (the no-page-cache table).
func (h *harness) runIO(ctx context.Context, servers []*server, results map[string]map[string]ioOutcome, dropCache bool) error {
	total := len(h.cfg.workloads) * len(servers)
	i := 0
	for _, w := range workloads {
		if !contains(h.cfg.workloads, w.key) {
			continue
		}
		results[w.key] = map[string]ioOutcome{}
		for _, s := range servers {
			i++
			t := time.Now()
			if s.prepare != nil {
				if err := s.prepare(ctx); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					results[w.key][s.name] = ioOutcome{err: err}
					h.fail("preparing "+s.name+" for "+w.title, err)
					continue
				}
			}
			if dropCache {
				dropPageCache(s.cached...)
			}
			h.rss.during(w.title + " (fio on " + s.name + ")")
			var o ioOutcome
			var cpu0 time.Duration
			if s.proc != nil {
				cpu0, o.cpuOK = mustCPU(s.proc.pid())
			}
			o.res, o.err = runFio(ctx, h.work, fioJob{Name: w.key + "-" + s.name, URI: s.uri, File: s.file, Args: w.args(h.cfg)})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if o.cpuOK {
				cpu1, ok := mustCPU(s.proc.pid())
				o.cpu, o.cpuOK = cpu1-cpu0, ok
			}
			results[w.key][s.name] = o
			if o.err != nil {
				h.fail(w.title+" on "+s.name, o.err)
				continue
			}
			r := o.res
			s.writtenByFio += r.Write.IOBytes
			if s == h.vd {
				h.clientIO += r.Write.IOBytes
			}
			h.logf("[%2d/%d] %-30s %-18s %9.0f IOPS %8.1f MiB/s  p50 %-9s p99 %-9s %5.2f CPU s/GiB (%.1fs)", i, total, w.title, s.name,
				r.IOPS(), r.BW()/float64(mib), fmtLat(latOf(r, 50)), fmtLat(latOf(r, 99)), o.cpuPerGiB(), time.Since(t).Seconds())
		}
	}
	return nil
}

// mustCPU is procCPU, false if it could not be read.
func mustCPU(pid int) (time.Duration, bool) {
	d, err := procCPU(pid)
	return d, err == nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// randWrite writes n bytes of 4 KiB random writes at depth 32 over the
// whole export, at fresh random offsets each call (randrepeat=0), and
// flushes.
func (h *harness) randWrite(ctx context.Context, name, uri string, n int64) error {
	r, err := runFio(ctx, h.work, fioJob{Name: name, URI: uri, Args: []string{"--rw=randwrite", "--bs=4k", "--iodepth=32",
		"--io_size=" + strconv.FormatInt(n, 10), "--randrepeat=0", "--end_fsync=1"}})
	if err == nil {
		h.clientIO += r.Write.IOBytes
	}
	return err
}

// snapshotPhase times snapshot and list_changed_blocks over REST after an
// interval of 1x and of 8x the data (random 4 KiB writes on the main VDI),
// alternating the two sizes for --snap-rounds rounds. The snapshot call is
// timed once, as it ends the interval, when pebble has gone quiet. list_changed_blocks between each
// interval's two snapshots is read-only, so it is timed afterwards, once
// pebble has stopped flushing and compacting what the intervals wrote (timed
// right after 8x the data, it measured the compactions sharing the two
// cores), as the median of 5 calls, intervals alternating.
func (h *harness) snapshotPhase(ctx context.Context) error {
	c := h.cfg
	h.snap.ran = true
	h.rss.during("snapshot and list_changed_blocks")
	uuid := h.mainVDI.UUID
	prev, err := h.api.snapshot(ctx, uuid)
	if err != nil {
		return err
	}
	type interval struct {
		from, to string
		mult     int
	}
	var intervals []interval
	for r := 0; r < c.snapRounds; r++ {
		for _, mult := range []int{1, c.snapMult} {
			n := c.snapData * int64(mult)
			if err := h.randWrite(ctx, fmt.Sprintf("snapdata-%dx-%d", mult, r), h.vd.uri, n); err != nil {
				return err
			}
			// The snapshot is one synced metadata commit; right after 8x
			// the data its fsync queued behind pebble's flushes and
			// compactions (1.7 to 7.9 ms, against 1.6 to 4.3 after 1x).
			// Time what the snapshot costs, not what the writes left.
			h.quiesce(ctx)
			t := time.Now()
			s, err := h.api.snapshot(ctx, uuid)
			if err != nil {
				return err
			}
			took := time.Since(t)
			h.logf("after %s written: snapshot %s", fmtBytes(n), fmtLat(took))
			if mult == 1 {
				h.snap.snap1 = append(h.snap.snap1, float64(took))
			} else {
				h.snap.snapN = append(h.snap.snapN, float64(took))
			}
			intervals = append(intervals, interval{prev.UUID, s.UUID, mult})
			prev = s
		}
	}
	h.quiesce(ctx)
	if h.snap.restFloor, err = timeCall(5, func() error { _, err := h.api.getVDI(ctx, uuid); return err }); err != nil {
		return err
	}
	for _, iv := range intervals {
		var cb changedBlocks
		lcb, err := timeCall(5, func() error {
			var err error
			cb, err = h.api.listChangedBlocks(ctx, iv.from, iv.to)
			return err
		})
		if err != nil {
			return err
		}
		h.logf("list_changed_blocks over the %dx interval: %s (%d blocks of 64 KiB changed)", iv.mult, fmtLat(lcb), cb.ChangedBlocks)
		if iv.mult == 1 {
			h.snap.lcb1 = append(h.snap.lcb1, float64(lcb))
			h.snap.changed1 = append(h.snap.changed1, float64(cb.ChangedBlocks))
		} else {
			h.snap.lcbN = append(h.snap.lcbN, float64(lcb))
			h.snap.changedN = append(h.snap.changedN, float64(cb.ChangedBlocks))
		}
	}
	return nil
}

func (h *harness) chainPhase(ctx context.Context) error {
	c := h.cfg
	h.chain.ran = true
	h.rss.during("snapshot chain")
	chain, err := h.api.createVDI(ctx, "e2e-chain", c.chainSize)
	if err != nil {
		return err
	}
	if err := h.api.enableCBT(ctx, chain.UUID); err != nil {
		return err
	}
	chainURI, err := h.api.nbdURI(ctx, chain.UUID)
	if err != nil {
		return err
	}
	h.logf("chain: filling %s, then %d x (snapshot, %s of random 4 KiB writes)", fmtBytes(c.chainSize), c.chainDepth, fmtBytes(c.chainWrite))
	r, err := runFio(ctx, h.work, fioJob{Name: "chain-fill", URI: chainURI, Args: []string{"--rw=write", "--bs=1M", "--iodepth=8",
		"--size=" + strconv.FormatInt(c.chainSize, 10), "--end_fsync=1"}})
	if err != nil {
		return err
	}
	h.clientIO += r.Write.IOBytes
	var oldest vdiRecord
	for i := 0; i < c.chainDepth; i++ {
		s, err := h.api.snapshot(ctx, chain.UUID)
		if err != nil {
			return err
		}
		if i == 0 {
			oldest = s
		}
		if err := h.randWrite(ctx, fmt.Sprintf("chain-layer-%d", i), chainURI, c.chainWrite); err != nil {
			return err
		}
	}
	flat, err := h.api.createVDI(ctx, "e2e-depth0", c.chainSize)
	if err != nil {
		return err
	}
	flatURI, err := h.api.nbdURI(ctx, flat.UUID)
	if err != nil {
		return err
	}
	oldURI, err := h.api.nbdURI(ctx, oldest.UUID)
	if err != nil {
		return err
	}
	h.logf("chain: copying the top into a depth-0 VDI (nbdcopy)")
	if err := nbdcopy(ctx, chainURI, flatURI); err != nil {
		return err
	}
	h.clientIO += c.chainSize
	// The depth-0 twin was written last: let pebble finish flushing and
	// compacting it, or its reads pay for the writes that just ended.
	h.quiesce(ctx)
	targets := []struct {
		name string
		uri  string
		iops *[]float64
		p99  *[]float64
	}{
		{"depth0", flatURI, &h.chain.depth0, &h.chain.depth0P99},
		{fmt.Sprintf("depth%d-top", c.chainDepth), chainURI, &h.chain.top, &h.chain.topP99},
		{fmt.Sprintf("depth%d-oldest-snapshot", c.chainDepth), oldURI, &h.chain.old, nil},
	}
	for p := 0; p < c.chainPasses; p++ {
		for k := range targets {
			// Each pass starts one target later, so no target always
			// comes first.
			t := targets[(k+p)%len(targets)]
			r, err := runFio(ctx, h.work, fioJob{Name: fmt.Sprintf("chainread-%s-%d", t.name, p), URI: t.uri,
				Args: []string{"--rw=randread", "--bs=4k", "--iodepth=32", "--time_based", "--runtime=" + secs(c.runtime)}})
			if err != nil {
				return err
			}
			*t.iops = append(*t.iops, r.IOPS())
			if t.p99 != nil {
				*t.p99 = append(*t.p99, float64(r.Read.P99))
			}
			h.logf("chain read pass %d %-26s %9.0f IOPS p99 %s", p+1, t.name, r.IOPS(), fmtLat(r.Read.P99))
		}
	}
	return nil
}

// quiesce waits (at most a minute) until vdiskd has written less than
// 1 MiB to storage over 3 seconds: no flush or compaction running.
func (h *harness) quiesce(ctx context.Context) {
	t0 := time.Now()
	pid := h.vd.proc.pid()
	var last int64 = -1
	quiet := 0
	for time.Since(t0) < time.Minute && quiet < 3 {
		io, err := readProcIO(pid)
		if err != nil {
			return
		}
		if last >= 0 && io.WriteBytes-last < mib/3 {
			quiet++
		} else {
			quiet = 0
		}
		last = io.WriteBytes
		if sleepCtx(ctx, time.Second) != nil {
			return
		}
	}
	h.logf("waited %s for vdiskd's background writes to stop", time.Since(t0).Round(time.Second))
}

// finalSamples reads RSS, /proc io and /metrics while everything still
// runs.
func (h *harness) finalSamples(ctx context.Context) {
	if h.vd == nil {
		return
	}
	pid := h.vd.proc.pid()
	if v, err := procStatus(pid, "VmHWM"); err == nil {
		h.rssHWM = v
	}
	h.rssPeak = h.rss.Stop()
	if ph := h.rss.PeakPhase(); ph != "" {
		h.rssPeakPhase = "peak during " + ph
	}
	h.env = append(h.env, "load average at the end "+loadAvg()+" (the harness itself keeps about 2 busy; more means other work shared the machine)",
		"memory at the end: "+memState("/proc/meminfo"))
	w := &h.wamp
	if io1, err := readProcIO(pid); err == nil {
		w.ran = true
		w.disk = io1.WriteBytes - h.vd.io0.WriteBytes
		w.cancelled = io1.CancelledWriteBytes - h.vd.io0.CancelledWriteBytes
	} else {
		h.fail("reading vdiskd's /proc io", err)
	}
	w.clientTally = h.clientIO
	if m, err := h.api.scrapeMetrics(ctx); err == nil {
		w.client = m["vdiskd_vdisk_write_bytes_total"]
		w.walWritten = m["vdiskd_pebble_wal_written_bytes_total"]
		w.pebbleWAmp = m["vdiskd_pebble_write_amplification"]
		w.diskUsage = m["vdiskd_pebble_disk_usage_bytes"]
	} else {
		h.fail("scraping /metrics", err)
	}
	for _, s := range h.servers {
		if s == h.vd || s.writtenByFio == 0 || s.name == "nbdkit-memory" || s.proc == nil { // RAM only: nothing to count
			continue
		}
		if io1, err := readProcIO(s.proc.pid()); err == nil {
			w.anchors = append(w.anchors, anchorWAmp{name: s.name, disk: s.diskBefore + io1.WriteBytes - s.io0.WriteBytes, client: s.writtenByFio})
		}
	}
}

// cleanup stops every child (anchors first, vdiskd last with a clean
// SIGTERM) and removes what the harness made.
func (h *harness) cleanup() error {
	if h.rss != nil {
		h.rss.Stop()
	}
	var errs []error
	for i := len(h.children) - 1; i >= 0; i-- {
		ch := h.children[i]
		timeout := 10 * time.Second
		if ch.name == "vdiskd" {
			timeout = 60 * time.Second
		}
		if err := ch.stop(timeout); err != nil {
			errs = append(errs, err)
		}
	}
	h.children = nil
	if h.binDir != "" {
		os.RemoveAll(h.binDir)
	}
	if h.work != "" {
		if h.removeWork {
			os.RemoveAll(h.work)
			if h.defaultWork {
				// Also bench/e2e/.work if this run was its only content.
				_ = os.Remove(filepath.Dir(h.work))
			}
		} else {
			h.logf("kept %s (vdiskd data, logs, fio reports)", h.work)
		}
	}
	return errors.Join(errs...)
}

func (h *harness) collectEnv(fsName string) {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if v, err := procStatusFile("/proc/meminfo", "MemTotal"); err == nil {
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(v)/float64(1<<30))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	dev := ""
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		dev = mountSource(string(b), h.work)
	}
	h.env = append(h.env,
		fmt.Sprintf("%d CPU %s%s, Linux %s, %s; load average at the start %s", runtime.NumCPU(), cpu, mem,
			strings.TrimSpace(string(kernel)), runtime.Version(), loadAvg()),
		fmt.Sprintf("work directory on %s %s (vdiskd's data and the anchors' raw file side by side)", fsName, dev),
		"tools: "+strings.Join([]string{toolVersion("fio", "--version"), toolVersion("nbdkit", "--version"),
			toolVersion("qemu-nbd", "--version"), toolVersion("nbdcopy", "--version")}, ", "),
		"memory at the start: "+memState("/proc/meminfo"),
	)
}

// memState says how much memory is free and how much the page cache
// holds. Writes into new space take fresh page-cache pages: on a VM whose
// balloon hands free pages back to the host, the first touch of each costs
// a host fault, several times the copy (bench/RESULTS.md), so sequential
// writes into new space run far slower with much memory free than with the
// page cache full.
func memState(meminfo string) string {
	free, err1 := procStatusFile(meminfo, "MemFree")
	cached, err2 := procStatusFile(meminfo, "Cached")
	if err := errors.Join(err1, err2); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return fmt.Sprintf("%.1f GiB free, %.1f GiB page cache", float64(free)/float64(1<<30), float64(cached)/float64(1<<30))
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute averages: anything else
// running on the machine skews every number here.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func toolVersion(name, flag string) string {
	out, err := exec.Command(name, flag).Output()
	if err != nil {
		return name + " (version unknown)"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// procStatusFile reads "Key: N kB" from a /proc file in bytes.
func procStatusFile(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if len(f) > 1 && f[1] == "kB" {
					n <<= 10
				}
				return n, err
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

// mountSource finds the device of the longest mount point holding path.
func mountSource(mountinfo, path string) string {
	best, src := "", ""
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			for i := 6; i < len(f)-2; i++ {
				if f[i] == "-" {
					best, src = mp, "("+f[i+2]+" at "+mp+")"
					break
				}
			}
		}
	}
	return src
}
