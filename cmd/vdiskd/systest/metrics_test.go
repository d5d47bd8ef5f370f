package systest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// The Prometheus exposition at GET /metrics, checked against what real
// NBD clients sent, against the REST statistics, by promtool, and by a
// real Prometheus scraping the daemon.

// metricsURL is the daemon's /metrics, served on the API's listener.
func (d *daemon) metricsURL() string { return strings.TrimSuffix(d.API, "/api") + "/metrics" }

// scrape is one GET /metrics (no token: it is unauthenticated), parsed.
type scrape struct {
	body string
	fams map[string]*dto.MetricFamily
}

func (d *daemon) scrape(t *testing.T) scrape {
	t.Helper()
	resp, err := vdiskdtest.HTTP.Get(d.metricsURL())
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /metrics: reading: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d\n%s", resp.StatusCode, b)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("GET /metrics: not the text format: %v\n%s", err, b)
	}
	return scrape{body: string(b), fams: fams}
}

// snippet is the lines of the scrape that mention every one of words, for
// failure messages.
func (s scrape) snippet(words ...string) string {
	var out []string
	for _, l := range strings.Split(s.body, "\n") {
		all := true
		for _, w := range words {
			if !strings.Contains(l, w) {
				all = false
				break
			}
		}
		if all && l != "" {
			out = append(out, "\t"+l)
		}
	}
	if len(out) == 0 {
		return "\t(no line has " + strings.Join(words, " and ") + ")"
	}
	return strings.Join(out, "\n")
}

func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// find returns the one sample of family name whose labels include want.
func (s scrape) find(t *testing.T, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := s.fams[name]
	if f == nil {
		t.Fatalf("no family %s in the scrape:\n%s", name, s.snippet("vdiskd_"))
	}
	var found []*dto.Metric
	for _, m := range f.GetMetric() {
		l := labelsOf(m)
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d samples, want 1:\n%s", name, want, len(found), s.snippet(name))
	}
	return found[0]
}

// value is the value of a counter, gauge or untyped sample.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return math.NaN()
}

// vdiskSeries lists every series labelled vdisk=id, as name{labels}.
func (s scrape) vdiskSeries(id string) []string {
	var out []string
	for name, f := range s.fams {
		for _, m := range f.GetMetric() {
			l := labelsOf(m)
			if l["vdisk"] != id {
				continue
			}
			delete(l, "vdisk")
			out = append(out, fmt.Sprintf("%s%v", name, l))
		}
	}
	sort.Strings(out)
	return out
}

// statistics is GET /vdis/{uuid}/statistics.
func (d *daemon) statistics(t *testing.T, id string) api.Statistics {
	t.Helper()
	var st api.Statistics
	d.MustCall(t, http.MethodGet, "/vdis/"+id+"/statistics", nil, &st)
	return st
}

// waitIdle waits until the daemon has seen every NBD client go, so the
// counters are final and the VDIs no longer in use.
func (d *daemon) waitIdle(t *testing.T) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.scrape(t)
		open := s.find(t, "vdiskd_nbd_connections", nil)
		if value(open) == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("vdiskd_nbd_connections stays at %g after every client exited:\n%s",
				value(open), s.snippet("vdiskd_nbd_connections"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The per-vDisk counters count to the byte what qemu-io sent, agree with
// the REST statistics, and leave the exposition with a destroyed vDisk.
func TestMetricsExposition(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io")
	d := startVdiskd(t)
	a := d.CreateVDI(t, "metrics-a", 64<<20)
	b := d.CreateVDI(t, "metrics-b", 32<<20)

	// One qemu-io connection per VDI; raw over NBD sends each request as
	// given (no probing reads).
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, a.UUID),
		"-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 4k", "-c", "write 2M 512",
		"-c", "read -P 0x11 0 64k", "-c", "read -P 0x22 1M 4k")
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, b.UUID),
		"-c", "write -P 0x33 0 8k", "-c", "read -P 0x33 0 8k", "-c", "read 4k 512", "-c", "read 16M 1k",
		"-c", "write -z 1M 64k") // WRITE_ZEROES: no write of data
	const connections = 2
	type ioWant struct{ readOps, readBytes, writeOps, writeBytes float64 }
	want := map[string]ioWant{
		a.UUID: {readOps: 2, readBytes: 65536 + 4096, writeOps: 3, writeBytes: 65536 + 4096 + 512},
		b.UUID: {readOps: 3, readBytes: 8192 + 512 + 1024, writeOps: 1, writeBytes: 8192},
	}
	d.waitIdle(t)

	// REST first, then the scrape, with no I/O in between: the REST
	// object is fresh (its first read) and must equal the live counters.
	rest := map[string]api.Statistics{a.UUID: d.statistics(t, a.UUID), b.UUID: d.statistics(t, b.UUID)}
	s := d.scrape(t)

	restToProm := map[string]string{
		"read_operations":          "vdiskd_vdisk_read_operations_total",
		"data_read":                "vdiskd_vdisk_read_bytes_total",
		"write_operations":         "vdiskd_vdisk_write_operations_total",
		"data_written":             "vdiskd_vdisk_write_bytes_total",
		"backend_read_operations":  "vdiskd_vdisk_backend_read_operations_total",
		"backend_data_read":        "vdiskd_vdisk_backend_read_bytes_total",
		"backend_write_operations": "vdiskd_vdisk_backend_write_operations_total",
		"backend_data_written":     "vdiskd_vdisk_backend_write_bytes_total",
		"metadata_store_hits":      "vdiskd_vdisk_metadata_store_hits_total",
		"metadata_store_misses":    "vdiskd_vdisk_metadata_store_misses_total",
		"cluster_cache_hits":       "vdiskd_vdisk_cluster_cache_hits_total",
		"cluster_cache_misses":     "vdiskd_vdisk_cluster_cache_misses_total",
	}
	for _, v := range []api.VDI{a, b} {
		lb := map[string]string{"vpool": v.SR, "vdisk": v.UUID}
		w := want[v.UUID]
		for name, exp := range map[string]float64{
			"vdiskd_vdisk_read_operations_total":  w.readOps,
			"vdiskd_vdisk_read_bytes_total":       w.readBytes,
			"vdiskd_vdisk_write_operations_total": w.writeOps,
			"vdiskd_vdisk_write_bytes_total":      w.writeBytes,
			"vdiskd_vdisk_virtual_size_bytes":     float64(v.VirtualSize),
		} {
			if got := value(s.find(t, name, lb)); got != exp {
				t.Errorf("%s %s = %g, want %g:\n%s", v.NameLabel, name, got, exp, s.snippet(name, v.UUID))
			}
		}
		if s.fams["vdiskd_vdisk_read_bytes_total"].GetType() != dto.MetricType_COUNTER {
			t.Errorf("vdiskd_vdisk_read_bytes_total is a %v, want a counter", s.fams["vdiskd_vdisk_read_bytes_total"].GetType())
		}
		info := s.find(t, "vdiskd_vdisk_info", lb)
		if l := labelsOf(info); l["name"] != v.NameLabel || value(info) != 1 {
			t.Errorf("vdiskd_vdisk_info of %s: labels %v value %g, want name=%q and 1", v.UUID, l, value(info), v.NameLabel)
		}
		// The block store wrote something for every write.
		if got := value(s.find(t, "vdiskd_vdisk_backend_write_operations_total", lb)); got < w.writeOps {
			t.Errorf("%s backend writes %g < client writes %g", v.NameLabel, got, w.writeOps)
		}
		st := rest[v.UUID]
		for key, name := range restToProm {
			got, ok := st[key]
			if !ok {
				t.Errorf("REST statistics of %s lack %s: %v", v.NameLabel, key, st)
				continue
			}
			if prom := value(s.find(t, name, lb)); prom != got {
				t.Errorf("%s: REST %s = %g, Prometheus %s = %g:\n%s", v.NameLabel, key, got, name, prom, s.snippet(name, v.UUID))
			}
		}
	}

	// The vPool.
	if l := labelsOf(s.find(t, "vdiskd_vpool_info", map[string]string{"vpool": a.SR})); l["name"] == "" {
		t.Errorf("vdiskd_vpool_info of %s has no name: %v", a.SR, l)
	}

	// NBD: connections accepted, latency observed per command.
	if got := value(s.find(t, "vdiskd_nbd_connections_accepted_total", nil)); got < connections {
		t.Errorf("vdiskd_nbd_connections_accepted_total = %g, want >= %d", got, connections)
	}
	for cmd, ops := range map[string]float64{
		"read":  want[a.UUID].readOps + want[b.UUID].readOps,
		"write": want[a.UUID].writeOps + want[b.UUID].writeOps,
	} {
		h := s.find(t, "vdiskd_nbd_request_duration_seconds", map[string]string{"command": cmd}).GetHistogram()
		if h == nil {
			t.Fatalf("vdiskd_nbd_request_duration_seconds is not a histogram:\n%s", s.snippet("vdiskd_nbd_request_duration_seconds"))
		}
		if float64(h.GetSampleCount()) < ops || h.GetSampleSum() <= 0 {
			t.Errorf("NBD %s latency: count %d sum %g, want count >= %g and a positive sum:\n%s", cmd,
				h.GetSampleCount(), h.GetSampleSum(), ops, s.snippet("vdiskd_nbd_request_duration_seconds_count"))
		}
	}
	if h := s.find(t, "vdiskd_nbd_request_duration_seconds", map[string]string{"command": "write_zeroes"}).GetHistogram(); h.GetSampleCount() < 1 {
		t.Errorf("NBD write_zeroes latency: count %d, want >= 1", h.GetSampleCount())
	}

	// REST calls, by call and status. The statistics calls above were
	// answered before this scrape was asked for.
	if got := value(s.find(t, "vdiskd_http_requests_total", map[string]string{"call": "VDI.statistics", "code": "200"})); got < 2 {
		t.Errorf(`vdiskd_http_requests_total{call="VDI.statistics",code="200"} = %g, want >= 2:\n%s`, got, s.snippet("vdiskd_http_requests_total"))
	}

	// Destroying b takes all its series away, and none of a's.
	beforeA := s.vdiskSeries(a.UUID)
	if len(beforeA) < len(restToProm)+3 || len(s.vdiskSeries(b.UUID)) != len(beforeA) {
		t.Errorf("series per vDisk: a %d %v, b %d", len(beforeA), beforeA, len(s.vdiskSeries(b.UUID)))
	}
	if st := d.Call(t, http.MethodDelete, "/vdis/"+b.UUID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /vdis/%s: HTTP %d", b.UUID, st)
	}
	after := d.scrape(t)
	if left := after.vdiskSeries(b.UUID); len(left) > 0 || strings.Contains(after.body, b.UUID) {
		t.Errorf("series of the destroyed vDisk %s remain: %v\n%s", b.UUID, left, after.snippet(b.UUID))
	}
	if got := after.vdiskSeries(a.UUID); strings.Join(got, "\n") != strings.Join(beforeA, "\n") {
		t.Errorf("the other vDisk's series changed with the destroy:\nbefore %v\nafter  %v", beforeA, got)
	}
	if got := value(after.find(t, "vdiskd_vdisk_write_bytes_total", map[string]string{"vdisk": a.UUID})); got != want[a.UUID].writeBytes {
		t.Errorf("vdisk a write bytes after the destroy: %g, want %g", got, want[a.UUID].writeBytes)
	}
	if got := value(after.find(t, "vdiskd_http_requests_total", map[string]string{"call": "VDI.destroy", "code": "204"})); got != 1 {
		t.Errorf(`vdiskd_http_requests_total{call="VDI.destroy",code="204"} = %g, want 1:\n%s`, got, after.snippet("VDI.destroy"))
	}
}

// promtool, Prometheus's own linter, finds nothing to say about a scrape
// of a daemon that has served I/O.
func TestMetricsPromtool(t *testing.T) {
	vdiskdtest.RequireTool(t, "promtool", "qemu-io")
	d := startVdiskd(t)
	v := d.CreateVDI(t, "lint", 16<<20)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID), "-c", "write 0 4k", "-c", "read 0 4k")
	d.statistics(t, v.UUID)
	s := d.scrape(t)
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(s.body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s\n--- scrape ---\n%s", err, out, s.body)
	}
}

// The *_ps rates of the REST statistics: 0 on a first read, the change
// over the seconds between two reads at least the 4 s cache apart, the
// same object within the cache, and back to 0 when idle. The vPool keeps
// its own history with the same rules.
func TestStatisticsRatesAfterBurst(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io")
	const cacheFor = 4 * time.Second // metrics.NewRates: OVS's cache
	d := startVdiskd(t)
	v := d.CreateVDI(t, "burst", 64<<20)
	uri := d.URI(t, v.UUID)
	pool := func() api.Statistics {
		t.Helper()
		var p api.VPool
		d.MustCall(t, http.MethodGet, "/vpools/"+v.SR, nil, &p)
		return p.Statistics
	}

	// The first reads: no previous sample, every rate 0.
	start := time.Now()
	st0, p0 := d.statistics(t, v.UUID), pool()
	for _, k := range api.StatKeys {
		if st0[k+"_ps"] != 0 || p0[k+"_ps"] != 0 {
			t.Errorf("first read: %s_ps = %g (vPool %g), want 0", k, st0[k+"_ps"], p0[k+"_ps"])
		}
	}

	// The burst.
	const writes, size = 20, 64 << 10
	args := []string{"-f", "raw", uri}
	for i := 0; i < writes; i++ {
		args = append(args, "-c", fmt.Sprintf("write -P %d %d %d", i+1, i*size, size))
	}
	vdiskdtest.RunTool(t, "qemu-io", args...)
	d.waitIdle(t)

	// Within the cache: the first object again, counters unread.
	if time.Since(start) < cacheFor-500*time.Millisecond {
		if st := d.statistics(t, v.UUID); st["timestamp"] != st0["timestamp"] || st["write_operations"] != st0["write_operations"] {
			t.Errorf("a read %v after the first is not the cached object: timestamp %f/%f, write_operations %g/%g",
				time.Since(start), st["timestamp"], st0["timestamp"], st["write_operations"], st0["write_operations"])
		}
	}

	// After the cache: the burst over the seconds since the first read.
	time.Sleep(time.Until(start.Add(cacheFor + 200*time.Millisecond)))
	st1, p1 := d.statistics(t, v.UUID), pool()
	check := func(who string, prev, cur api.Statistics) {
		t.Helper()
		dt := cur["timestamp"] - prev["timestamp"]
		if dt < cacheFor.Seconds() || dt > 30 {
			t.Fatalf("%s: %.3f s between the samples, want >= %v", who, dt, cacheFor)
		}
		for k, w := range map[string]float64{"write_operations": writes, "data_written": writes * size} {
			if got := cur[k] - prev[k]; got != w {
				t.Errorf("%s: %s grew by %g, want %g", who, k, got, w)
			}
			want := w / dt
			if got := cur[k+"_ps"]; !(got > 0) || math.Abs(got-want) > want*1e-4 {
				t.Errorf("%s: %s_ps = %g, want %g (%g over %.3f s)", who, k, got, want, w, dt)
			}
		}
		if cur["read_operations_ps"] != 0 || cur["data_read_ps"] != 0 {
			t.Errorf("%s: read rates %g, %g without reads", who, cur["read_operations_ps"], cur["data_read_ps"])
		}
		if !(cur["backend_write_operations_ps"] > 0) || !(cur["backend_data_written_ps"] >= cur["data_written_ps"]) {
			t.Errorf("%s: backend_write_operations_ps %g, backend_data_written_ps %g (data_written_ps %g)", who,
				cur["backend_write_operations_ps"], cur["backend_data_written_ps"], cur["data_written_ps"])
		}
		if cur["operations_ps"] != cur["write_operations_ps"] || cur["data_transferred_ps"] != cur["data_written_ps"] {
			t.Errorf("%s: operations_ps %g, data_transferred_ps %g; want the write rates", who, cur["operations_ps"], cur["data_transferred_ps"])
		}
	}
	check("vDisk", st0, st1)
	check("vPool", p0, p1)

	// Idle: the next fresh sample of each (a new timestamp, once the cache
	// expires) has every rate back at 0.
	deadline := time.Now().Add(15 * time.Second)
	for _, o := range []struct {
		who  string
		last api.Statistics
		read func() api.Statistics
	}{{"vDisk", st1, func() api.Statistics { return d.statistics(t, v.UUID) }}, {"vPool", p1, pool}} {
		for {
			st := o.read()
			if st["timestamp"] == o.last["timestamp"] {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no fresh statistics within 15 s of the burst's: %v", o.who, st)
				}
				time.Sleep(250 * time.Millisecond)
				continue
			}
			if dt := st["timestamp"] - o.last["timestamp"]; dt < cacheFor.Seconds() {
				t.Errorf("%s: a fresh object %.3f s after the previous, inside the %v cache", o.who, dt, cacheFor)
			}
			for _, k := range api.StatKeys {
				if st[k] != o.last[k] {
					t.Errorf("%s: idle, yet %s moved from %g to %g", o.who, k, o.last[k], st[k])
				}
				if st[k+"_ps"] != 0 {
					t.Errorf("%s: idle %.3f s, yet %s_ps = %g", o.who, st["timestamp"]-o.last["timestamp"], k, st[k+"_ps"])
				}
			}
			break
		}
	}
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// promSample is one element of an instant-vector answer.
type promSample struct {
	Metric map[string]string
	Value  float64
}

// promQuery runs an instant query against Prometheus's HTTP API.
func promQuery(t *testing.T, base, q string) []promSample {
	t.Helper()
	resp, err := vdiskdtest.HTTP.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status, Error string
		Data          struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: HTTP %d %v: %s", q, resp.StatusCode, err, b)
	}
	var out []promSample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("query %s: value %v: %v", q, s.Value, err)
		}
		out = append(out, promSample{Metric: s.Metric, Value: v})
	}
	return out
}

// promOne is promQuery for a query with exactly one answer; ok is false
// when it has none yet.
func promOne(t *testing.T, base, q string) (v float64, ok bool) {
	t.Helper()
	res := promQuery(t, base, q)
	switch len(res) {
	case 0:
		return 0, false
	case 1:
		return res[0].Value, true
	}
	t.Fatalf("query %s: %d series, want 1: %v", q, len(res), res)
	return 0, false
}

// A real Prometheus (2.42) scrapes the daemon: the target is up, the
// per-vDisk counters arrive exact, their rate is positive while a client
// writes, and pebble's and the NBD histogram's series are queryable.
func TestPrometheusScrapesVdiskd(t *testing.T) {
	vdiskdtest.RequireTool(t, "prometheus", "qemu-io")
	d := startVdiskd(t)
	v := d.CreateVDI(t, "scraped", 64<<20)
	uri := d.URI(t, v.UUID)

	dir := t.TempDir()
	target := strings.TrimPrefix(strings.TrimSuffix(d.API, "/api"), "http://")
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: vdiskd
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target)), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := "http://" + listen
	var plog vdiskdtest.Buffer
	prom := exec.Command("prometheus", "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+listen, "--storage.tsdb.retention.time=1h", "--log.level=warn")
	prom.Stdout, prom.Stderr = &plog, &plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	promExited := make(chan struct{})
	go func() { prom.Wait(); close(promExited) }()
	t.Cleanup(func() {
		prom.Process.Signal(syscall.SIGTERM)
		select {
		case <-promExited:
		case <-time.After(10 * time.Second):
			prom.Process.Kill()
			<-promExited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", plog.String())
		}
	})
	// poll retries cond until it is true or the deadline passes; cond
	// may leave what it last saw in last.
	var last string
	poll := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		last = ""
		for !cond() {
			select {
			case <-promExited:
				t.Fatalf("prometheus exited (%v) while waiting for %s:\n%s", prom.ProcessState, what, plog.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v (last seen: %s); /metrics has:\n%s", what, limit, last, d.scrape(t).snippet(v.UUID))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	poll("ready Prometheus", 30*time.Second, func() bool {
		resp, err := vdiskdtest.HTTP.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	poll(`up{job="vdiskd"} == 1`, 15*time.Second, func() bool {
		up, ok := promOne(t, base, `up{job="vdiskd"}`)
		last = fmt.Sprintf("%v %g", ok, up)
		return ok && up == 1
	})

	// Steady writes from one client: 20 × 4 KiB, 200 ms apart.
	const writes, size = 20, 4096
	args := []string{"-f", "raw", uri}
	for i := 0; i < writes; i++ {
		args = append(args, "-c", fmt.Sprintf("write -P %d %d %d", i+1, i*size, size), "-c", "sleep 200")
	}
	var qlog vdiskdtest.Buffer
	writer := vdiskdtest.ToolCmd(t, "qemu-io", args...)
	writer.Stdout, writer.Stderr = &qlog, &qlog
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan error, 1)
	go func() { writerDone <- writer.Wait() }()
	t.Cleanup(func() {
		select {
		case <-writerDone:
		default:
			writer.Process.Kill()
			<-writerDone
		}
	})
	sel := fmt.Sprintf(`{vdisk=%q}`, v.UUID)
	rateQ := `rate(vdiskd_vdisk_write_operations_total` + sel + `[10s])`
	var rate float64
	poll("positive write rate while writing", 20*time.Second, func() bool {
		r, ok := promOne(t, base, rateQ)
		select {
		case err := <-writerDone:
			writerDone <- err
			if !(ok && r > 0) {
				t.Fatalf("qemu-io finished (%v) before %s was positive (last %v %g):\n%s", err, rateQ, ok, r, qlog.String())
			}
		default:
		}
		rate, last = r, fmt.Sprintf("%v %g", ok, r)
		return ok && r > 0
	})
	if rate > 8 { // 5/s at most, with Prometheus's extrapolation
		t.Errorf("%s = %g, faster than one write per 200 ms", rateQ, rate)
	}
	if err := <-writerDone; err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, qlog.String())
	}
	writerDone <- nil

	// Every byte arrives: the last scrape after the writer finished has
	// the exact total, which max_over_time then sees.
	total := float64(writes * size)
	poll("exact write bytes in Prometheus", 15*time.Second, func() bool {
		got, ok := promOne(t, base, `vdiskd_vdisk_write_bytes_total`+sel)
		last = fmt.Sprintf("vdiskd_vdisk_write_bytes_total%s %v %g, want %g", sel, ok, got, total)
		return ok && got == total
	})
	if got, _ := promOne(t, base, `max_over_time(vdiskd_vdisk_write_bytes_total`+sel+`[1m])`); got != total {
		t.Errorf("max_over_time(write bytes) = %g, want %g", got, total)
	}
	if got, _ := promOne(t, base, `vdiskd_vdisk_write_operations_total`+sel); got != writes {
		t.Errorf("write operations = %g, want %d", got, writes)
	}
	if n, _ := promOne(t, base, `count_over_time(vdiskd_vdisk_write_bytes_total`+sel+`[1m])`); n < 2 {
		t.Errorf("%g samples of the write bytes, want >= 2", n)
	}
	if got, ok := promOne(t, base, fmt.Sprintf(`vdiskd_vdisk_info{vdisk=%q,name="scraped"}`, v.UUID)); !ok || got != 1 {
		t.Errorf("vdiskd_vdisk_info: %v %g", ok, got)
	}
	walWant := 1.0 // segments (the default): the WAL logs pointers only
	if os.Getenv("VDISKD_DATA_PATH") == "pebble" {
		walWant = total // each 4 KiB block is a pebble value, logged first
	} else if got, ok := promOne(t, base, `vdiskd_segment_bytes{job="vdiskd"}`); !ok || !(got >= total) {
		t.Errorf("vdiskd_segment_bytes = %g (%v), want >= %g: every byte written went to a segment", got, ok, total)
	}
	if got, ok := promOne(t, base, `vdiskd_pebble_wal_written_bytes_total{job="vdiskd"}`); !ok || !(got >= walWant) {
		t.Errorf("vdiskd_pebble_wal_written_bytes_total = %g (%v), want >= %g", got, ok, walWant)
	}
	q := `histogram_quantile(0.9, sum by (le) (rate(vdiskd_nbd_request_duration_seconds_bucket{command="write"}[30s])))`
	if got, ok := promOne(t, base, q); !ok || !(got > 0) || got > 10 {
		t.Errorf("%s = %g (%v), want a latency in seconds", q, got, ok)
	}
	if up, _ := promOne(t, base, `up{job="vdiskd"}`); up != 1 {
		t.Errorf(`up{job="vdiskd"} = %g after the writes`, up)
	}
}
