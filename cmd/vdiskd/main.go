// Command vdiskd is the vdiskd daemon: virtual disks in storage pools,
// stored copy-on-write with changed-block tracking, managed over REST.
//
// Every flag has an environment twin VDISKD_<FLAG> (dashes as
// underscores); the flag wins when both are given.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/internal/bytesize"
	"github.com/vdiskd/vdiskd/internal/datadir"
	"github.com/vdiskd/vdiskd/metrics"
	"github.com/vdiskd/vdiskd/mgmt"
	apipkg "github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/nbd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// config is the daemon's configuration, from flags and their env twins.
type config struct {
	dataDir, nbdAddr, httpAddr string
	tlsCert, tlsKey            string
	nbdAuth, zone, logLevel    string
	cinderAuth                 string
	pprofAddr                  string
	minFreeSpace               string
	dataPath                   string
	directIO                   string
	minFree                    uint64 // minFreeSpace, parsed by check
	directIOMin                int    // directIO, parsed by check: 0 for off
	limits                     limitFlags
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*config, int) {
	fs := flag.NewFlagSet("vdiskd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	str := func(p *string, name, def, usage string) {
		env := "VDISKD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	}
	str(&c.dataDir, "data-dir", "./data", "where vdiskd keeps its data")
	str(&c.nbdAddr, "nbd-addr", "127.0.0.1:10809", "NBD listen address, or off")
	str(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address: REST under /api")
	str(&c.tlsCert, "tls-cert", "", "PEM certificate for HTTPS and NBD STARTTLS (with --tls-key)")
	str(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	str(&c.nbdAuth, "nbd-auth", "token", "NBD export auth: token (/<uuid>?session_id=<token>) or none")
	str(&c.zone, "zone", "local", "this daemon's zone name")
	str(&c.cinderAuth, "cinder-auth", "token", "Cinder API auth: token (X-Auth-Token carries a vdiskd token) or noauth (also Cinder's \"user:project\" tokens, as administrators of every project: test clouds only)")
	str(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.pprofAddr, "pprof-addr", "off", "Go profiler (net/http/pprof, no auth) listen address, or off")
	str(&c.minFreeSpace, "min-free-space", "256M", "free space kept on the data directory's file system: below it writes get ENOSPC (NBD) and SR_FULL (REST)")
	str(&c.dataPath, "data-path", "segments", "where new block data goes: segments (append-only segment files, 18-30 byte pointers in pebble) or pebble (each 4 KiB block a pebble value); either reads both")
	str(&c.directIO, "direct-io-min", "off", "off, or a size such as 256K: segment writes of at least that much, and reads of it the page cache does not hold, go straight to the disk (O_DIRECT), as qemu-nbd's --cache=none")
	c.limits.register(str)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vdiskd: unexpected arguments %q\n", fs.Args())
		return nil, 2
	}
	if msg := c.check(); msg != "" {
		fmt.Fprintf(stderr, "vdiskd: %s\n", msg)
		return nil, 2
	}
	return c, -1
}

// check refuses bad values before anything starts.
func (c *config) check() string {
	for _, a := range []struct{ name, addr string }{{"--nbd-addr", c.nbdAddr}, {"--http-addr", c.httpAddr},
		{"--pprof-addr", c.pprofAddr}} {
		if a.name != "--http-addr" && a.addr == "off" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Sprintf("%s %q: want host:port (%v)", a.name, a.addr, err)
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return "--tls-cert and --tls-key go together"
	}
	if c.nbdAuth != "token" && c.nbdAuth != "none" {
		return fmt.Sprintf("--nbd-auth %q: want token or none", c.nbdAuth)
	}
	if c.cinderAuth != "token" && c.cinderAuth != "noauth" {
		return fmt.Sprintf("--cinder-auth %q: want token or noauth", c.cinderAuth)
	}
	if c.zone == "" || strings.ContainsAny(c.zone, " /") {
		return fmt.Sprintf("--zone %q: want a name without spaces or slashes", c.zone)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	if c.dataPath != "pebble" && c.dataPath != "segments" {
		return fmt.Sprintf("--data-path %q: want pebble or segments", c.dataPath)
	}
	n, err := bytesize.Parse(c.minFreeSpace)
	if err != nil || n <= 0 {
		return fmt.Sprintf("--min-free-space %q: want a size above zero, such as 256M or 1G", c.minFreeSpace)
	}
	c.minFree = uint64(n)
	if c.directIO == "off" {
		c.directIOMin = 0
	} else if d, err := bytesize.Parse(c.directIO); err != nil || d < blockstore.BlockSize || d%blockstore.BlockSize != 0 || d > 1<<30 {
		return fmt.Sprintf("--direct-io-min %q: want off or a multiple of 4K up to 1G, such as 256K", c.directIO)
	} else {
		c.directIOMin = int(d)
	}
	return c.limits.check()
}

// run is main with its inputs injected, so tests drive it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	c, code := parseFlags(args, getenv, stderr)
	if c == nil {
		return code
	}
	limitGoMemory()
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.logLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	var tlsConf *tls.Config
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			log.Error("cannot load the TLS certificate", "cert", c.tlsCert, "key", c.tlsKey, "err", err)
			return 1
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	dir, err := datadir.Open(c.dataDir)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer dir.Close()
	if mode, open := dir.OpenToOthers(); open {
		log.Warn("the data directory is open to other users: it holds every disk's contents and the users' password hashes; chmod 700 it",
			"dir", dir.Path, "mode", fmt.Sprintf("%#o", mode))
	}
	store, err := blockstore.Open(dir.Store(), blockstore.Options{
		MinFreeSpace: c.minFree,
		Segments:     c.dataPath == "segments",
		DirectIOMin:  c.directIOMin,
		Logf:         func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) },
		Warnf:        func(format string, args ...any) { log.Warn(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		log.Error("cannot open the block store", "dir", dir.Store(), "err", err)
		return 1
	}
	defer func() {
		if store != nil {
			_ = store.Close()
		}
	}()
	if c.cinderAuth == "noauth" {
		log.Warn("--cinder-auth noauth: any X-Auth-Token of the form user:project is accepted on the Cinder API as an administrator of every project, as Cinder's noauth does; use it for test clouds only")
	}
	auth := mgmt.NBDAuthToken
	if c.nbdAuth == "none" {
		auth = mgmt.NBDAuthNone
	}
	// The NBD listener comes first: get_nbd_info reports its address.
	var nbdLn net.Listener
	var info func(string) []apipkg.NBDInfo
	if c.nbdAddr != "off" {
		if nbdLn, err = net.Listen("tcp", c.nbdAddr); err != nil {
			log.Error("cannot listen for NBD", "addr", c.nbdAddr, "err", err)
			return 1
		}
		info = newNBDInfo(nbdLn.Addr(), tlsConf).records
	}
	counters := metrics.NewRegistry()
	var expo *metrics.Exposition
	// The NBD latencies vStats samples come from the exposition, made
	// once the management plane (which its collectors read) is.
	var latencies atomic.Pointer[func() map[string]float64]
	api, err := mgmt.New(mgmt.Options{
		Store: store, DataDir: dir.Path, Logger: log.With("component", "mgmt"),
		AdminPassword: getenv("VDISKD_ADMIN_PASSWORD"), Zone: c.zone, Address: c.httpAddr,
		NBDInfo: info, NBDAuth: auth, Counters: counters, TokenTTL: c.limits.tokenTTL,
		DetachGrace: c.limits.detachGrace, CinderNoAuth: c.cinderAuth == "noauth",
		StatsRetention: c.limits.pointRetention, StatsTombstones: c.limits.tombstoneRetention,
		NodeCounters: func() map[string]float64 {
			if f := latencies.Load(); f != nil {
				return (*f)()
			}
			return nil
		},
		ObserveCall: func(call string, status int, took time.Duration) { expo.HTTP.Observe(call, status, took) },
	})
	if err != nil {
		if nbdLn != nil {
			nbdLn.Close()
		}
		log.Error("cannot start the management API", "err", err)
		return 1
	}
	disks, pools := api.MetricSources()
	segments := func() metrics.SegmentSample {
		st := store.SegmentStats()
		return metrics.SegmentSample{Files: st.Files, Bytes: st.Bytes, Reclaimed: st.Reclaimed, Moved: st.Moved,
			DirectWritten: st.DirectWritten, DirectRead: st.DirectRead}
	}
	expo = metrics.NewExposition(metrics.Sources{Disks: disks, Pools: pools, Pebble: store.Metrics, Segments: segments,
		Replications: api.ReplicationMetrics()})
	cmds, qs := stats.NBDQuantiles()
	quantiles := expo.NBD.LatencyQuantiles(cmds, qs, stats.NBDQuantileMetric)
	latencies.Store(&quantiles)
	var nbdSrv *nbd.Server
	nbdServed := make(chan error, 1)
	if nbdLn != nil {
		nbdSrv, err = nbd.NewServer(c.limits.nbdOptions(nbd.Options{Exports: api.NBDExports(auth), TLS: tlsConf,
			Logger: log.With("component", "nbd"), Observer: expo.NBD}))
		if err != nil {
			nbdLn.Close()
			log.Error("cannot start the NBD server", "err", err)
			return 1
		}
		go func() { nbdServed <- nbdSrv.Serve(nbdLn) }()
	}
	ln, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		log.Error("cannot listen for HTTP", "addr", c.httpAddr, "err", err)
		return 1
	}
	scheme := "http"
	if tlsConf != nil {
		ln, scheme = tls.NewListener(ln, tlsConf), "https"
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", expo.Handler()) // Prometheus text format; no auth, like node_exporter
	mux.Handle("/", api.Handler())
	// Bodies are at most 1 MiB (413 beyond), so a minute to send one is
	// generous; idle keep-alive connections go after two.
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	if c.pprofAddr != "off" {
		stopProfiler, err := serveProfiler(c.pprofAddr, log)
		if err != nil {
			log.Error("cannot listen for the profiler", "addr", c.pprofAddr, "err", err)
			return 1
		}
		defer stopProfiler()
	}
	nbdURL := "off"
	if nbdLn != nil {
		nbdURL = "nbd://" + nbdLn.Addr().String()
		if tlsConf != nil {
			nbdURL = "nbds://" + nbdLn.Addr().String()
		}
	}
	log.Info("vdiskd ready", "data_dir", dir.Path, "volumes", len(store.Volumes()),
		"api", scheme+"://"+ln.Addr().String()+"/api", "nbd", nbdURL, "nbd_auth", c.nbdAuth, "zone", c.zone,
		"cinder", scheme+"://"+ln.Addr().String()+"/v3/<project>")

	exit := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		log.Error("HTTP server failed", "err", err)
		exit = 1
	case err := <-nbdServed:
		log.Error("NBD server failed", "err", err)
		exit = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if nbdSrv != nil {
		// Clients get ESHUTDOWN for new requests; those in flight finish.
		if err := nbdSrv.Shutdown(sctx); err != nil {
			log.Warn("NBD shutdown cut clients that did not disconnect", "err", err)
		}
	}
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
	}
	_ = api.Close()
	err = store.Close()
	store = nil
	if err != nil {
		log.Error("closing the block store", "err", err)
		return 1
	}
	log.Info("stopped")
	return exit
}
