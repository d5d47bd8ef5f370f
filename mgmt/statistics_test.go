package mgmt

import (
	"net/http"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/nbd"
)

// The statistics of a vDisk count what its NBD clients read and wrote, to
// the byte; the vPool sums its vDisks; rates follow OVS.
func TestStatisticsCountClientIO(t *testing.T) {
	e := newEnv(t)
	a := e.createVDI(map[string]any{"name_label": "a"})
	b := e.createVDI(map[string]any{"name_label": "b"})
	ex := e.s.NBDExports(NBDAuthToken)
	open := func(id string) nbd.Export {
		x, _, err := ex.Open(&nbd.Conn{}, exportName(id, e.admin))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Close() })
		return x
	}
	xa, xb := open(a.UUID), open(b.UUID)
	stats := func(path string) api.Statistics {
		var st api.Statistics
		e.must(http.StatusOK, "GET", path, e.admin, nil, &st)
		return st
	}
	first := stats("/api/vdis/" + a.UUID + "/statistics")
	for _, k := range api.StatKeys {
		if _, ok := first[k]; !ok {
			t.Errorf("statistics lack %s", k)
		}
		if _, ok := first[k+"_ps"]; !ok {
			t.Errorf("statistics lack %s_ps", k)
		}
	}

	buf := pattern(7, 12345)
	for i := 0; i < 3; i++ {
		if err := xa.WriteAt(buf, uint64(i)*65536, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := xa.ReadAt(buf[:1000], 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := xa.Zero(0, 4096, 0); err != nil { // not a write of data
		t.Fatal(err)
	}
	if err := xb.WriteAt(buf[:512], 0, true); err != nil {
		t.Fatal(err)
	}
	if err := xb.WriteAt(buf, 1<<30, false); err == nil { // past the end: fails, counts nothing
		t.Fatal("a write past the end succeeded")
	}

	e.advance(5 * time.Second)
	st := stats("/api/vdis/" + a.UUID + "/statistics")
	want := map[string]float64{"write_operations": 3, "data_written": 3 * 12345, "read_operations": 1, "data_read": 1000,
		"operations": 4, "data_transferred": 3*12345 + 1000}
	for k, v := range want {
		if st[k] != v {
			t.Errorf("vdisk a %s = %g, want %g", k, st[k], v)
		}
	}
	// The block store's side: one batch per write or zero, the one block
	// read found in the index, one cache verdict for the one read.
	if st["backend_write_operations"] != 4 || st["backend_data_written"] < 3*12345 ||
		st["metadata_store_hits"] != 1 || st["metadata_store_misses"] != 0 ||
		st["cluster_cache_hits"]+st["cluster_cache_misses"] != 1 || st["backend_read_operations"] < 1 ||
		st["cache_hits"] != st["cluster_cache_hits"] || st["sco_cache_hits"] != 0 {
		t.Errorf("block-store keys: %v", st)
	}
	if st["data_written_ps"] != 3*12345/5.0 || st["operations_ps"] != 4/5.0 {
		t.Errorf("rates after 5 s: data_written_ps %g, operations_ps %g", st["data_written_ps"], st["operations_ps"])
	}
	if st["timestamp"] != float64(e.clock().UnixNano())/1e9 {
		t.Errorf("timestamp %f, want the clock's %v", st["timestamp"], e.clock())
	}

	var pool api.VPool
	e.must(http.StatusOK, "GET", "/api/vpools/local", e.admin, nil, &pool)
	if pool.Statistics["write_operations"] != 4 || pool.Statistics["data_written"] != 3*12345+512 {
		t.Errorf("vPool sums: %v", pool.Statistics)
	}

	// Idle: the rates fall back to 0.
	e.advance(5 * time.Second)
	if st := stats("/api/vdis/" + a.UUID + "/statistics"); st["operations_ps"] != 0 || st["operations"] != 4 {
		t.Errorf("idle: operations %g, operations_ps %g", st["operations"], st["operations_ps"])
	}

	// A destroyed vDisk's counters go with it.
	xb.Close()
	e.must(http.StatusNoContent, "DELETE", "/api/vdis/"+b.UUID, e.admin, nil, nil)
	if got := e.s.opts.Counters.Sample(b.UUID); got.WriteOps != 0 {
		t.Errorf("counters of a destroyed vDisk remain: %+v", got)
	}
}
