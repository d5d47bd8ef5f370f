package systest

import (
	"net/http"
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
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
