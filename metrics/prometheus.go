package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vdiskd/vdiskd/nbd"
)

// DiskInfo is what the exposition reports of a vDisk besides its counters.
type DiskInfo struct {
	ID, Pool, Name      string
	VirtualSize         uint64
	PhysicalUtilisation uint64
	Sample              Sample // client and block-store counters
}

// PoolInfo is what it reports of a vPool.
type PoolInfo struct {
	GUID, Name       string
	Size, StoredData uint64
}

// Sources are where a scrape reads from; each is called once per scrape.
type Sources struct {
	Disks    func() []DiskInfo
	Pools    func() []PoolInfo
	Pebble   func() *pebble.Metrics // nil answer: the store is closed
	Segments func() SegmentSample
	// Replications are the replication relations and their progress.
	Replications func() []ReplicationInfo
}

// ReplicationInfo is one replication relation at one moment.
type ReplicationInfo struct {
	Seq            int
	VPool, DstZone string
	State          string // initializing, active, lagging, paused, broken
	LagSeconds     float64
	ShippedBytes   uint64
}

// SegmentSample is the block store's segment files at one moment.
type SegmentSample struct {
	Files            int
	Bytes            uint64 // written slots, live or dead
	Reclaimed, Moved uint64 // segments reclaimed and live blocks moved since start
	// Bytes written and read with O_DIRECT since start.
	DirectWritten, DirectRead uint64
}

// Exposition is the Prometheus registry behind GET /metrics: vDisk and
// vPool series read at scrape time, NBD and REST series updated as
// requests run, pebble's metrics, and the process and Go collectors.
type Exposition struct {
	reg  *prometheus.Registry
	NBD  *NBDMetrics
	HTTP *HTTPMetrics
}

// NewExposition registers everything.
func NewExposition(src Sources) *Exposition {
	reg := prometheus.NewRegistry()
	e := &Exposition{reg: reg, NBD: newNBDMetrics(reg), HTTP: newHTTPMetrics(reg)}
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(), &storeCollector{src: src})
	return e
}

// Handler serves the exposition.
func (e *Exposition) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests.
func (e *Exposition) Gatherer() prometheus.Gatherer { return e.reg }

// NBDMetrics implements nbd.Observer with a latency histogram, an
// in-flight gauge and an error counter per command, resolved once so a
// request costs a few atomic operations and no lookups.
type NBDMetrics struct {
	conns       prometheus.Gauge
	accepted    prometheus.Counter
	rejected    map[nbd.Reason]prometheus.Counter // read-only after construction
	latency     [16]prometheus.Observer
	latencyVec  *prometheus.HistogramVec
	inFlight    [16]prometheus.Gauge
	errors      *prometheus.CounterVec
	budgetWaits prometheus.Counter
	budgetWait  prometheus.Counter
}

func newNBDMetrics(reg *prometheus.Registry) *NBDMetrics {
	m := &NBDMetrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vdiskd_nbd_connections",
			Help: "NBD client connections open now."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "vdiskd_nbd_connections_accepted_total",
			Help: "NBD client connections accepted."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vdiskd_nbd_request_errors_total",
			Help: "NBD requests answered with an error, by command and NBD errno."}, []string{"command", "errno"}),
		rejected: map[nbd.Reason]prometheus.Counter{},
		budgetWaits: prometheus.NewCounter(prometheus.CounterOpts{Name: "vdiskd_nbd_budget_waits_total",
			Help: "NBD requests that waited for the server-wide in-flight byte budget (--nbd-max-inflight-bytes)."}),
		budgetWait: prometheus.NewCounter(prometheus.CounterOpts{Name: "vdiskd_nbd_budget_wait_seconds_total",
			Help: "Time NBD connections stood still waiting for the server-wide in-flight byte budget."}),
	}
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vdiskd_nbd_connections_rejected_total",
		Help: "NBD connections the server turned away or cut off, by reason: max_connections and max_handshakes " +
			"(closed at accept), handshake_timeout, idle_timeout, stalled (no progress for 2 min), " +
			"session_ended (its token was revoked or expired)."}, []string{"reason"})
	for _, r := range nbd.Reasons {
		m.rejected[r] = rejected.WithLabelValues(string(r)) // every reason shows, at 0 until it bites
	}
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vdiskd_nbd_request_duration_seconds",
		Help:    "Time from reading an NBD request to queueing its reply, by command.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2, 18)}, // 10 µs .. 1.3 s
		[]string{"command"})
	inFlight := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vdiskd_nbd_requests_in_flight",
		Help: "NBD requests read and not yet answered, by command."}, []string{"command"})
	m.latencyVec = latency
	for _, c := range nbd.Commands {
		m.latency[c] = latency.WithLabelValues(c.String())
		m.inFlight[c] = inFlight.WithLabelValues(c.String())
	}
	reg.MustRegister(m.conns, m.accepted, m.errors, latency, inFlight, rejected, m.budgetWaits, m.budgetWait)
	return m
}

func (m *NBDMetrics) ConnectionRejected(r nbd.Reason) {
	if c := m.rejected[r]; c != nil {
		c.Inc()
	}
}

func (m *NBDMetrics) BudgetWaited(took time.Duration) {
	m.budgetWaits.Inc()
	m.budgetWait.Add(took.Seconds())
}

func (m *NBDMetrics) Connections(delta int) {
	m.conns.Add(float64(delta))
	if delta > 0 {
		m.accepted.Inc()
	}
}

func (m *NBDMetrics) RequestStarted(c nbd.Command) {
	if int(c) < len(m.inFlight) && m.inFlight[c] != nil {
		m.inFlight[c].Inc()
	}
}

func (m *NBDMetrics) RequestDone(c nbd.Command, took time.Duration, errno nbd.Errno) {
	if int(c) < len(m.inFlight) && m.inFlight[c] != nil {
		m.inFlight[c].Dec()
		m.latency[c].Observe(took.Seconds())
	}
	if errno != 0 {
		m.errors.WithLabelValues(c.String(), errnoName(errno)).Inc()
	}
}

func errnoName(e nbd.Errno) string {
	switch e {
	case nbd.EPERM:
		return "EPERM"
	case nbd.EIO:
		return "EIO"
	case nbd.ENOMEM:
		return "ENOMEM"
	case nbd.EINVAL:
		return "EINVAL"
	case nbd.ENOSPC:
		return "ENOSPC"
	case nbd.EOVERFLOW:
		return "EOVERFLOW"
	case nbd.ENOTSUP:
		return "ENOTSUP"
	case nbd.ESHUTDOWN:
		return "ESHUTDOWN"
	}
	return strconv.Itoa(int(e))
}

// HTTPMetrics counts REST calls by call name and status, with latency.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg *prometheus.Registry) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vdiskd_http_requests_total",
			Help: "REST calls answered, by call (Class.call) and HTTP status."}, []string{"call", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vdiskd_http_request_duration_seconds",
			Help: "Time to answer a REST call, by call.", Buckets: prometheus.DefBuckets}, []string{"call"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// Observe records one answered call.
func (m *HTTPMetrics) Observe(call string, status int, took time.Duration) {
	m.requests.WithLabelValues(call, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(call).Observe(took.Seconds())
}
