package mgmt

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vdiskd/vdiskd/blockstore"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/volume"
	"github.com/vdiskd/vdiskd/nbd"
	"github.com/vdiskd/vdiskd/nbd/nbdtest"
)

// The management plane's cost must not grow with the number of VDIs
// (SPEC §7): one VDI's record, a getter, a snapshot and an NBD connect at
// 100, 1,000 and 10,000 VDIs; 16 clients at once while logins run; a
// restart. Calls go over real HTTP on loopback, client included; the store
// is in memory, so fsync does not hide the API's own cost.
//
//	go test -run '^$' -bench BenchmarkManagement -benchtime 2000x ./mgmt
func BenchmarkManagement(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("vdis=%d", n), func(b *testing.B) {
			e := newEnv(b)
			ids := seedVDIs(e, n)
			cl := benchClient()
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			pick := func() string { return ids[rng.IntN(len(ids))] }

			b.Run("get", func(b *testing.B) {
				for b.Loop() {
					benchGet(b, cl, e, "/api/vdis/"+pick(), e.admin)
				}
			})
			b.Run("getter", func(b *testing.B) {
				for b.Loop() {
					benchGet(b, cl, e, "/api/vdis/"+pick()+"/get_virtual_size", e.admin)
				}
			})
			b.Run("nbd_connect", func(b *testing.B) {
				// A whole connect over loopback: TCP, the handshake with
				// XenServer's export name (its token checked, the VDI
				// looked up and attached), then DISC.
				addr := serveNBD(b, e)
				for b.Loop() {
					c := nbdtest.Connect(b, "tcp", addr, nbdtest.Negotiation{Export: exportName(pick(), e.admin), Structured: true})
					c.Disconnect()
				}
			})
			b.Run("clients=16+logins", func(b *testing.B) {
				benchConcurrent(b, e, ids)
			})
			b.Run("restart", func(b *testing.B) {
				for b.Loop() {
					e.restart()
					benchGet(b, cl, e, "/api/vdis/"+pick(), e.admin)
				}
			})
			b.Run("idle", func(b *testing.B) {
				// What the index costs: the heap with n idle VDIs (the
				// in-memory store's files included).
				for b.Loop() {
					runtime.GC()
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
			})
			// Last: it adds a volume per call.
			b.Run("snapshot", func(b *testing.B) {
				for b.Loop() {
					benchCall(b, cl, e, "POST", "/api/vdis/"+pick()+"/snapshot", e.admin, http.StatusOK)
				}
			})
		})
	}
}

// benchConcurrent runs 16 clients, each alternating GET of a random VDI and
// one getter, while one more client logs in again and again (as another
// user: past 64 logins a user's oldest token is revoked, and the clients'
// is admin's). b.N counts the calls of the 16.
func benchConcurrent(b *testing.B, e *env, ids []string) {
	code, _ := e.request("POST", "/api/users", e.admin, map[string]any{"username": "logins", "password": "logins-password", "role": "read-only"})
	if code != http.StatusCreated && code != http.StatusConflict {
		b.Fatalf("creating the logins user: %d", code)
	}
	stop := make(chan struct{})
	var logins atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := benchClient()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", e.srv.URL+"/api/token", nil)
			req.SetBasicAuth("logins", "logins-password")
			resp, err := cl.Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			logins.Add(1)
		}
	}()
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	b.Cleanup(halt)

	const clients = 16
	var next atomic.Int64
	var seed atomic.Uint64
	start := time.Now()
	b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		cl := benchClient()
		rng := rand.New(rand.NewPCG(seed.Add(1), 7))
		for pb.Next() {
			path := "/api/vdis/" + ids[rng.IntN(len(ids))]
			if next.Add(1)%2 == 0 {
				path += "/get_name_label"
			}
			benchGet(b, cl, e, path, e.admin)
		}
	})
	took := time.Since(start)
	halt()
	b.ReportMetric(float64(b.N)/took.Seconds(), "calls/s")
	b.ReportMetric(float64(logins.Load())/took.Seconds(), "logins/s")
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
}

func benchGet(b *testing.B, cl *http.Client, e *env, path, token string) {
	benchCall(b, cl, e, "GET", path, token, http.StatusOK)
}

func benchCall(b *testing.B, cl *http.Client, e *env, method, path, token string, want int) {
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := cl.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("%s %s: %d: %s", method, path, resp.StatusCode, body)
	}
}

// serveNBD serves the VDIs over NBD on a loopback port until the
// benchmark ends.
func serveNBD(b *testing.B, e *env) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := nbd.NewServer(nbd.Options{Exports: e.s.NBDExports(NBDAuthToken)})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// seedVDIs puts n VDIs straight into the store, as n creates would, but
// without n HTTP round trips.
func seedVDIs(e *env, n int) []string {
	var pool api.VPool
	e.must(http.StatusOK, "GET", "/api/vpools/local", e.admin, nil, &pool)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
		if _, err := e.store.Create(blockstore.CreateRequest{ID: ids[i], Pool: pool.GUID, Size: 4 << 20,
			Attrs: seedAttrs(fmt.Sprintf("vdi-%d", i))}); err != nil {
			e.t.Fatal(err)
		}
	}
	e.restart() // the index is built at start
	return ids
}

// seedAttrs are a fresh VDI's attributes as the store keeps them.
func seedAttrs(name string) []byte {
	return volume.Attrs{Xen: volume.XenAttrs{NameLabel: name}}.Encode()
}
