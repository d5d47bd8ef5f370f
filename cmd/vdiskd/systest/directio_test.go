package systest

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// With --direct-io-min, nbdcopy's 256 KiB writes and the reads of them go
// past the page cache (counted in /metrics), and the disk reads back
// byte for byte through qemu-img compare and nbdcopy, after a restart too.
func TestDirectIOWithRealClients(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdcopy", "qemu-img")
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, 32<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	d := launchVdiskd(t, dataDir, "--direct-io-min", "256K")
	d.Token = d.Login(t, "admin", testAdminPassword)
	v := d.CreateVDI(t, "direct", int64(len(data)))
	uri := d.URI(t, v.UUID)
	vdiskdtest.RunTool(t, "nbdcopy", "--flush", src, uri)
	s := d.scrape(t)
	if w := value(s.find(t, "vdiskd_segment_direct_bytes_total", map[string]string{"op": "write"})); w < float64(len(data)) {
		t.Fatalf("direct bytes written %g after nbdcopy of %d bytes: its 256 KiB writes should all go direct", w, len(data))
	}
	back := filepath.Join(dir, "back.raw")
	vdiskdtest.RunTool(t, "nbdcopy", uri, back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("nbdcopy read back differs (%v)", err)
	}
	if r := value(d.scrape(t).find(t, "vdiskd_segment_direct_bytes_total", map[string]string{"op": "read"})); r == 0 {
		t.Error("no direct reads counted: the read-back never left the page cache path")
	}
	vdiskdtest.RunTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, uri)

	d.Stop(t)
	d = launchVdiskd(t, dataDir, "--direct-io-min", "256K")
	d.Token = d.Login(t, "admin", testAdminPassword)
	vdiskdtest.RunTool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", src, d.URI(t, v.UUID))
}
