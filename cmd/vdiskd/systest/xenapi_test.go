package systest

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
)

// Xen Orchestra's own client, npm xen-api 4.7.7 (installed from
// testdata/xo's lock file by make test), against the real daemon: its
// whole connect sequence and event loop, then the calls of a CBT backup,
// as testdata/xo/xo_backup.mjs makes them.
func TestXenOrchestraClient(t *testing.T) {
	vdiskdtest.RequireTool(t, "node", "qemu-io")
	dir, err := filepath.Abs("testdata/xo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "xen-api")); err != nil {
		t.Fatalf("npm xen-api is not installed in %s: make test (scripts/ensure-tools.sh) runs npm ci there", dir)
	}
	d := startVdiskd(t)
	v := d.CreateVDI(t, "xo", 64<<20)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID), "-c", "write -P 0x33 0 1M")

	cmd := exec.Command("node", filepath.Join(dir, "xo_backup.mjs"), d.URL, "admin", testAdminPassword, v.UUID)
	cmd.Dir = dir
	done := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	})
	var out struct {
		Pool        string
		CBTEnabled  bool `json:"cbt_enabled"`
		VirtualSize any  `json:"virtual_size"`
		Bitmap      string
		NBD         []map[string]any
		BaseType    string `json:"base_type"`
		Ref, Base   string
		Next        string
		Seen        struct{ Add, Update, Remove []string }
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer close(done)
		b, err := cmd.Output()
		ch <- result{b, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(60 * time.Second):
		t.Fatal("xo_backup.mjs did not end within 60 s")
	}
	if r.err != nil {
		var stderr string
		if ee, ok := r.err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("xo_backup.mjs: %v\n%s\n%s", r.err, r.b, stderr)
	}
	if err := json.Unmarshal(r.b, &out); err != nil {
		t.Fatalf("xo_backup.mjs printed %q: %v", r.b, err)
	}
	bits, err := base64.StdEncoding.DecodeString(out.Bitmap)
	switch {
	case out.Pool == "" || !out.CBTEnabled || out.BaseType != "cbt_metadata":
		t.Fatalf("what the client saw: %+v", out)
	case err != nil || len(bits)%4 != 0 || len(bits) != (64<<20)/(64<<10)/8:
		t.Fatalf("the bitmap %q: %d bytes, %v (XO reads one uint32 per 2 MiB)", out.Bitmap, len(bits), err)
	case len(out.NBD) != 1 || !strings.Contains(out.NBD[0]["exportname"].(string), "session_id=OpaqueRef:"):
		t.Fatalf("get_nbd_info %v", out.NBD)
	}
	// The event loop saw the snapshots come and the destroyed one go.
	if !slices.Contains(out.Seen.Add, "VDI:"+out.Base) || !slices.Contains(out.Seen.Add, "VDI:"+out.Next) {
		t.Fatalf("events: the snapshots were not added: %+v", out.Seen)
	}
	nextUUID := strings.TrimPrefix(out.Next, "OpaqueRef:")
	if !slices.Contains(out.Seen.Remove, nextUUID) && !slices.Contains(out.Seen.Remove, out.Next) {
		t.Fatalf("events: the destroyed snapshot was not removed: %+v", out.Seen)
	}
}
