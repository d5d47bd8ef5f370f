package systest

import (
	"strings"
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// A VDI exported with the URI from get_nbd_info takes a write and reads it
// back through qemu-io: the path every other interop test builds on.
func TestNBDSmoke(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io")
	d := startVdiskd(t)
	v := d.CreateVDI(t, "smoke", 64<<20)
	uri := d.URI(t, v.UUID)
	out := vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", uri, "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k")
	if !strings.Contains(out, "read 65536/65536") {
		t.Fatalf("qemu-io:\n%s", out)
	}
}
