package systest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
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

// XenAPI.py, the classic XML-RPC client (from Debian's python3-os-xenapi,
// extracted by make test), against the real daemon: records, CBT between
// two snapshots with qemu-io's writes between them, get_nbd_info, a
// Failure, logout.
func TestXenAPIPy(t *testing.T) {
	vdiskdtest.RequireTool(t, "qemu-io")
	dir, err := filepath.Abs("testdata/xenapi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "XenAPI.py")); err != nil {
		t.Fatalf("XenAPI.py is not in %s: make test (scripts/ensure-tools.sh) extracts it", dir)
	}
	d := startVdiskd(t)
	v := d.CreateVDI(t, "py", 64<<20)
	cmd := exec.Command("/usr/bin/python3", filepath.Join(dir, "backup.py"), d.URL, "admin", testAdminPassword, v.UUID)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("backup.py ended before %s: %v\n%s", what, <-exited, stderr.String())
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("backup.py gave no %s in 30 s\n%s", what, stderr.String())
		}
		return ""
	}
	next("its first snapshot")
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID), "-c", "write -P 0x44 128k 64k", "-c", "write -P 0x45 10M 4k")
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	var out struct {
		API         []string
		NameLabel   string `json:"name_label"`
		VirtualSize string `json:"virtual_size"`
		SRName      string `json:"sr_name"`
		NBD         []map[string]any
		Changed     []int
		Failure     []string
	}
	if err := json.Unmarshal([]byte(next("its answer")), &out); err != nil {
		t.Fatal(err)
	}
	switch {
	case !slices.Equal(out.API, []string{"2", "21"}) || out.NameLabel != "py" || out.VirtualSize != "67108864" || out.SRName != "local":
		t.Fatalf("records as XenAPI.py read them: %+v", out)
	case !slices.Equal(out.Changed, []int{2, 160}):
		t.Fatalf("changed blocks %v, want [2 160] (64 KiB blocks qemu-io wrote)", out.Changed)
	case len(out.NBD) != 1 || out.NBD[0]["port"] == nil:
		t.Fatalf("get_nbd_info %v", out.NBD)
	case len(out.Failure) != 3 || out.Failure[0] != "HANDLE_INVALID":
		t.Fatalf("the Failure %v", out.Failure)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("backup.py: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("backup.py did not exit")
	}
}
