package systest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
	"github.com/vdiskd/vdiskd/mgmt/stats"
	"github.com/vdiskd/vdiskd/mgmt/vstats/vstatsapi"
)

// Statistics count to the byte what real NBD clients sent: qemu-io and
// nbdsh against the real daemon.
func TestStatisticsFromRealClients(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io", "nbdsh")
	d := startVdiskd(t)
	v := d.CreateVDI(t, "stats", 64<<20)
	uri := d.URI(t, v.UUID)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", uri,
		"-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 4k", "-c", "write 2M 512",
		"-c", "read -P 0x11 0 64k", "-c", "write -z 4M 1M", "-c", "discard 8M 64k")
	vdiskdtest.RunTool(t, "nbdsh", "-u", uri, "-c", "h.pwrite(b'x'*1536, 3*1024*1024); h.pread(512, 0); h.pread(4096, 1<<20)")
	var st api.Statistics
	if code := d.Call(t, http.MethodGet, "/vdis/"+v.UUID+"/statistics", nil, &st); code != http.StatusOK {
		t.Fatalf("statistics: HTTP %d", code)
	}
	want := map[string]float64{
		"write_operations": 4, "data_written": 65536 + 4096 + 512 + 1536,
		"read_operations": 3, "data_read": 65536 + 512 + 4096,
	}
	for k, w := range want {
		if st[k] != w {
			t.Errorf("%s = %g, want %g (all: %v)", k, st[k], w, st)
		}
	}
}

// vStats against the real daemon: a vSphere session, a spec sampling a
// VDI every second, qemu-io's writes between two samples; the data
// points move by exactly what qemu-io sent, and equal what REST answers.
func TestVStatsFromRealClients(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io")
	d := startVdiskd(t)
	v := d.CreateVDI(t, "stats", 64<<20)
	req, err := http.NewRequest(http.MethodPost, d.URL+"/api/session", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", testAdminPassword)
	var sid string
	if code := d.Do(t, req, &sid); code != http.StatusCreated || sid == "" {
		t.Fatalf("POST /api/session: %d %q", code, sid)
	}
	vsphere := func(method, path string, body, out any) int {
		t.Helper()
		var rd *strings.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		} else {
			rd = strings.NewReader("")
		}
		req, err := http.NewRequest(method, d.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("vmware-api-session-id", sid)
		return d.Do(t, req, out)
	}
	var id string
	if code := vsphere("POST", "/api/stats/acq-specs/", map[string]any{
		"counters":  map[string]any{"set_id": "vdisk-io"},
		"resources": []any{map[string]any{"type": "VDISK", "id_value": v.UUID}}, "interval": 1}, &id); code != http.StatusCreated {
		t.Fatalf("creating a spec: %d", code)
	}
	// Points of one counter, oldest first.
	points := func(cid string) []stats.DataPoint {
		var dp vstatsapi.DataPoints
		if code := vsphere("GET", "/api/stats/data/dp?cid="+cid+"&rsrcs=type.VDISK="+v.UUID, nil, &dp); code != http.StatusOK {
			t.Fatalf("data points: %d", code)
		}
		return dp.DataPoints
	}
	waitPoints := func(cid string, n int) []stats.DataPoint {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if p := points(cid); len(p) >= n {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d points of %s after 20 s", n, cid)
			}
		}
	}
	before := waitPoints("vdisk.data_written", 1)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID),
		"-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 4k", "-c", "write 2M 512")
	// A sample taken after the writes: two seconds on, the sampler has.
	time.Sleep(2100 * time.Millisecond)
	after := waitPoints("vdisk.data_written", len(before)+2)
	moved := after[len(after)-1].Val - before[len(before)-1].Val
	if moved != 65536+4096+512 {
		t.Fatalf("data_written moved %v between samples; qemu-io wrote %d", moved, 65536+4096+512)
	}
	ops := waitPoints("vdisk.write_operations", 1)
	// REST's statistics object is cached 4 s, as OpenvStorage's: past
	// that, with no I/O since, it holds the same counters.
	time.Sleep(4500 * time.Millisecond)
	var st api.Statistics
	if code := d.Call(t, http.MethodGet, "/vdis/"+v.UUID+"/statistics", nil, &st); code != http.StatusOK {
		t.Fatalf("statistics: HTTP %d", code)
	}
	if last := ops[len(ops)-1].Val; last != st["write_operations"] || last != 3 {
		t.Fatalf("vStats' last write_operations %v, REST's %v, qemu-io's 3", last, st["write_operations"])
	}
	if code := vsphere("DELETE", "/api/session", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/session: %d", code)
	}
}
