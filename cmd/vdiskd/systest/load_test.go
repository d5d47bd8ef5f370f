package systest

import (
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// soak reports whether the long variants run (VDISKD_SOAK=1, make soak).
func soak() bool { return os.Getenv("VDISKD_SOAK") == "1" }

// loadPlan sizes TestLoadManyVDIs: make test runs a few rounds, make soak
// minutes of them, -race a smaller daemon (it runs ten times slower).
type loadPlan struct {
	vdis, clients, rounds int
	round                 time.Duration
}

func planLoad() loadPlan {
	switch {
	case soak():
		return loadPlan{vdis: 1000, clients: 16, rounds: 30, round: 10 * time.Second}
	case vdiskdtest.Race:
		return loadPlan{vdis: 200, clients: 16, rounds: 2, round: 3 * time.Second}
	}
	return loadPlan{vdis: 1000, clients: 16, rounds: 3, round: 4 * time.Second}
}

// processGauges are what a leak would grow: goroutines from /metrics,
// live heap from the profiler, descriptors from /proc. pebble's files are
// counted apart: its table cache keeps tables open by design, and their
// number follows compaction (18 to 529 and back over a soak).
type processGauges struct {
	goroutines, heap      float64
	sockets, files, store int
}

func (g processGauges) String() string {
	return fmt.Sprintf("%.0f goroutines, %d sockets, %d pebble files, %d other fds, %.1f MiB live heap",
		g.goroutines, g.sockets, g.store, g.files, g.heap/(1<<20))
}

// gauges reads the counts; the heap is the bytes live right after a forced
// GC (the profiler's heap?gc=1): the daemon's Go memory limit (memory.go) lets
// garbage sit in the heap, and heap in use counts half-empty spans too
// (it swung 10-23 MiB over a soak whose live heap stayed 4.5-7.6 MB).
func (d *daemon) gauges(t *testing.T) processGauges {
	t.Helper()
	s := d.scrape(t)
	g := processGauges{goroutines: value(s.find(t, "go_goroutines", nil))}
	m := regexp.MustCompile(`msg="profiler listening" addr=(\S+)`).FindStringSubmatch(d.Log())
	if m == nil {
		t.Fatalf("no profiler address in the log (start the daemon with --pprof-addr)")
	}
	resp, err := vdiskdtest.HTTP.Get(m[1] + "heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	h := regexp.MustCompile(`# HeapAlloc = (\d+)`).FindSubmatch(body)
	if h == nil {
		t.Fatalf("no HeapAlloc in the heap profile")
	}
	g.heap, _ = strconv.ParseFloat(string(h[1]), 64)
	dir := fmt.Sprintf("/proc/%d/fd", d.PID())
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := filepath.Abs(filepath.Join(d.DataDir, "store"))
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		switch {
		case err == nil && strings.HasPrefix(l, "socket:"):
			g.sockets++
		case err == nil && strings.HasPrefix(l, store+"/"):
			g.store++
		default:
			g.files++
		}
	}
	return g
}

// goroutineSlack is what comes and goes without clients: pebble's flush
// and compaction goroutines. A leaked connection would leave at least
// three (reader, writer, worker) per client, 48 a round.
const goroutineSlack = 4

// settle waits until the goroutines are back to at most want (clients and
// their connections gone), and returns the gauges then.
func (d *daemon) settle(t *testing.T, want float64) processGauges {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		g := d.gauges(t)
		if g.goroutines <= want || time.Now().After(deadline) {
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadJob is a fio job file: one section per VDI, 70/30 random 4 KiB
// reads and writes at depth 8 for the round's length.
func loadJob(t *testing.T, uris []string, runtime time.Duration) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nioengine=nbd\nrw=randrw\nrwmixread=70\nbs=4k\niodepth=8\ntime_based\nruntime=%ds\n",
		int(runtime.Seconds()))
	for i, u := range uris {
		fmt.Fprintf(&b, "[vdi%d]\nuri=%s\n", i, u)
	}
	p := filepath.Join(t.TempDir(), "load.fio")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// restChurn lists, reads statistics of, and snapshots then destroys VDIs
// while fio runs, until stop is closed; it counts 5xx answers.
func restChurn(t *testing.T, d *daemon, vdis []api.VDI, stop <-chan struct{}, wg *sync.WaitGroup, errs *atomic.Int64) {
	defer wg.Done()
	rng := rand.New(rand.NewSource(1))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		v := vdis[rng.Intn(len(vdis))]
		var st int
		switch i % 3 {
		case 0:
			var l api.List[api.VDI]
			st = d.Call(t, http.MethodGet, fmt.Sprintf("/vdis?page=%d&page_size=100", 1+rng.Intn(10)), nil, &l)
		case 1:
			st = d.Call(t, http.MethodGet, "/vdis/"+v.UUID+"/statistics", nil, nil)
		case 2:
			var s api.VDI
			if st = d.Call(t, http.MethodPost, "/vdis/"+v.UUID+"/snapshot", nil, &s); st < 300 {
				st = d.Call(t, http.MethodDelete, "/vdis/"+s.UUID, nil, nil)
			}
		}
		if st >= 500 {
			errs.Add(1)
		}
	}
}

// TestLoadManyVDIs: 1,000 VDIs, 16 of them under fio at a time (a new 16
// each round, so connections and VBDs churn across the pool), REST calls
// alongside; after every round the daemon's goroutines and file
// descriptors are back where they started and its heap does not grow
// round over round. Then SIGTERM under load: exit 0, and every VDI and
// every write acknowledged before it are there after a restart.
func TestLoadManyVDIs(t *testing.T) {
	vdiskdtest.RequireTool(t, "fio", "nbdsh")
	plan := planLoad()
	d := startVdiskd(t, "--pprof-addr", "127.0.0.1:0")
	vdis := make([]api.VDI, plan.vdis)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < plan.vdis; i += 4 {
				vdis[i] = d.CreateVDI(t, fmt.Sprintf("load-%04d", i), 64<<20)
			}
		}(w)
	}
	wg.Wait()
	uris := make([]string, plan.vdis)
	for i, v := range vdis {
		uris[i] = d.URI(t, v.UUID)
	}
	time.Sleep(time.Second) // let the creations' HTTP connections go idle
	base := d.gauges(t)
	t.Logf("%d VDIs, idle: %s", plan.vdis, base)

	var first processGauges
	for r := 0; r < plan.rounds; r++ {
		pick := make([]string, plan.clients)
		for i := range pick {
			pick[i] = uris[(r*plan.clients+i)%plan.vdis]
		}
		stop := make(chan struct{})
		var churn sync.WaitGroup
		var restErrs atomic.Int64
		churn.Add(1)
		go restChurn(t, d, vdis, stop, &churn, &restErrs)
		rc, jobs, out := clFio(t, loadJob(t, pick, plan.round))
		close(stop)
		churn.Wait()
		if rc != 0 || len(jobs) != plan.clients {
			t.Fatalf("round %d: fio exit %d, %d jobs\n%s", r, rc, len(jobs), out)
		}
		var ios int64
		for _, j := range jobs {
			if j.Error != 0 {
				t.Fatalf("round %d: fio job %s error %d", r, j.Name, j.Error)
			}
			ios += j.Read.TotalIOs + j.Write.TotalIOs
		}
		if n := restErrs.Load(); n > 0 {
			t.Errorf("round %d: %d REST calls answered 5xx under load", r, n)
		}
		// Replace the round's VDIs with empty ones: the pool keeps its
		// size and the data held stays bounded, so what the heap holds for
		// pebble's files does not grow round over round (with every round
		// filling 16 more VDIs, the live heap followed the data: 7 to 15 MiB
		// over 30 rounds, flat at 7-8 MiB on a fixed 16).
		for i := range pick {
			k := (r*plan.clients + i) % plan.vdis
			if st := d.Call(t, http.MethodDelete, "/vdis/"+vdis[k].UUID, nil, nil); st >= 300 {
				t.Fatalf("round %d: destroying VDI %s: HTTP %d", r, vdis[k].UUID, st)
			}
			vdis[k] = d.CreateVDI(t, fmt.Sprintf("load-%04d-%d", k, r), 64<<20)
			uris[k] = d.URI(t, vdis[k].UUID)
		}
		g := d.settle(t, base.goroutines+goroutineSlack)
		t.Logf("round %d: %d requests on %d VDIs; after: %s", r, ios, plan.clients, g)
		if r == 0 {
			first = g
		}
		if g.goroutines > base.goroutines+goroutineSlack {
			t.Errorf("round %d: %.0f goroutines 15s after the clients left, %.0f before", r, g.goroutines, base.goroutines)
		}
		if g.sockets > base.sockets+2 { // the test's own keep-alive connections
			t.Errorf("round %d: %d sockets open after the clients left, %d before", r, g.sockets, base.sockets)
		}
		if g.files > base.files+2 {
			t.Errorf("round %d: %d descriptors open besides sockets and pebble's files, %d before", r, g.files, base.files)
		}
	}
	last := d.settle(t, base.goroutines+goroutineSlack)
	// The block cache and memtables live outside the Go heap; live heap
	// that grows round over round is a leak.
	if plan.rounds > 1 && last.heap > first.heap+max(4<<20, first.heap/2) {
		t.Errorf("Go heap grew from %.1f MiB after the first round to %.1f MiB after the last", first.heap/(1<<20), last.heap/(1<<20))
	}

	// Graceful shutdown under load: fio on 16 VDIs plus a writer that
	// records what the daemon acknowledged.
	writer := vdis[plan.vdis-1]
	wuri := uris[plan.vdis-1]
	pick := uris[:plan.clients-1]
	fioDone := make(chan int, 1)
	go func() {
		rc, _, _ := clFio(t, loadJob(t, pick, 60*time.Second))
		fioDone <- rc
	}()
	ackFile := filepath.Join(t.TempDir(), "acked")
	wcmd := vdiskdtest.ToolCmd(t, "nbdsh", "-u", wuri, "-c", "import os", "-c", ackScript)
	wcmd.Env = append(wcmd.Env, "ACKS="+ackFile)
	var wout strings.Builder
	wcmd.Stdout, wcmd.Stderr = &wout, &wout
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	d.Signal(t, syscall.SIGTERM)
	if code := d.WaitExit(t, 30*time.Second).ExitCode(); code != 0 {
		t.Fatalf("vdiskd exited %d after SIGTERM under load\n%s", code, vdiskdtest.Tail(d.Log(), 30))
	}
	wcmd.Wait()
	<-fioDone
	acked, err := os.ReadFile(ackFile)
	if err != nil {
		t.Fatalf("the writer recorded nothing: %v\n%s", err, wout.String())
	}
	n := strings.Count(string(acked), "\n")
	if n == 0 {
		t.Fatalf("no write acknowledged in 2s of load\n%s", wout.String())
	}

	d2 := launchVdiskd(t, d.DataDir)
	d2.Token = d2.Login(t, "admin", testAdminPassword)
	var l api.List[api.VDI]
	d2.MustCall(t, http.MethodGet, "/vdis?page_size=1", nil, &l)
	if l.Paging.TotalItems != plan.vdis {
		t.Errorf("after the restart: %d VDIs, want %d", l.Paging.TotalItems, plan.vdis)
	}
	r := runNbdshScript(t, d2.URI(t, writer.UUID), ackCheckScript, fmt.Sprintf("N=%d", n))
	if len(r.Bad) > 0 {
		t.Fatalf("%d of %d writes acknowledged before SIGTERM read back wrong: chunks %v", len(r.Bad), n, r.Bad)
	}
	t.Logf("SIGTERM under load: exit 0; %d acknowledged writes read back after the restart", n)
}

// ackScript writes 64 KiB chunks of random bytes round and round the
// export, write i to chunk i mod n seeded with i, one at a time, and
// appends each acknowledged i to $ACKS, until the server goes away.
const ackScript = `
import random
chunk = 64 << 10
n = h.get_size() // chunk
i = 0
with open(os.environ["ACKS"], "w", buffering=1) as acks:
    while True:
        try:
            h.pwrite(random.Random(i).randbytes(chunk), (i % n) * chunk)
        except nbd.Error:
            break
        acks.write("%d\n" % i)
        i += 1
`

// ackCheckScript checks every chunk holds its last acknowledged write of
// the $N acknowledged; the chunk of write N, in flight at the shutdown,
// may hold it too (done, its reply lost) or not (refused).
const ackCheckScript = `
import json, random
chunk = 64 << 10
n = h.get_size() // chunk
acked = int(os.environ["N"])
bad = []
for c in range(min(n, acked + 1)):
    last = c + ((acked - 1 - c) // n) * n if c < acked else None
    ok = [random.Random(i).randbytes(chunk) for i in (last, acked) if i is not None and i % n == c]
    if last is None:
        ok.append(bytes(chunk))  # never written before
    if h.pread(chunk, c * chunk) not in ok:
        bad.append(c)
print(json.dumps({"bad": bad}))
`
