package systest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// mountTmpfs mounts a size-limited tmpfs the test owns: a real file system
// that really fills, with no loop device. It needs root (CAP_SYS_ADMIN);
// without it the test fails under CI and is skipped, saying why, elsewhere.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a %s tmpfs for the disk-full test (needs root): %v %s", size, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillScript writes 4 MiB chunks of random bytes seeded by the chunk's
// index (incompressible: the store compresses), from START until LIMIT or
// an error, then flushes what it wrote; it prints how far it got and the
// errno that stopped it.
const fillScript = `
import json, random
chunk = 4 << 20
def pattern(off): return random.Random(off // chunk).randbytes(chunk)
start = int(os.environ["START"])
limit = int(os.environ["LIMIT"])
off, err, msg = start, None, ""
while off + chunk <= limit:
    try:
        h.pwrite(pattern(off), off)
    except nbd.Error as e:
        err, msg = e.errno, e.string
        break
    off += chunk
if off > start:
    h.flush()
print(json.dumps({"written": off, "errno": err, "msg": msg}))
`

// checkScript reads back [0, END) and counts chunks that differ from what
// fillScript wrote there.
const checkScript = `
import json, random
chunk = 4 << 20
def pattern(off): return random.Random(off // chunk).randbytes(chunk)
end = int(os.environ["END"])
bad = [off for off in range(0, end, chunk) if h.pread(chunk, off) != pattern(off)]
print(json.dumps({"bad": bad}))
`

type fillResult struct {
	Written int64   `json:"written"`
	Errno   *string `json:"errno"` // libnbd's name for it, as "ENOSPC"
	Msg     string  `json:"msg"`
	Bad     []int   `json:"bad"`
}

func runNbdshScript(t *testing.T, uri, script string, env ...string) fillResult {
	t.Helper()
	cmd := vdiskdtest.ToolCmd(t, "nbdsh", "-u", uri, "-c", "import os", "-c", script)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nbdsh: %v\n%s", err, out)
	}
	var r fillResult
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("nbdsh output %q: %v", out, err)
	}
	return r
}

// A vPool whose file system fills: NBD writes get ENOSPC with a message,
// REST calls that would take space get 507 SR_FULL, reads and destroys go
// on, pebble itself never meets ENOSPC, nothing written is lost, and
// writes resume by themselves once space is freed.
func TestDiskFull(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdsh")
	mnt := mountTmpfs(t, "768m")
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 256<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(mnt, "data")
	const reserve = "128M"
	d := launchVdiskd(t, data, "--min-free-space", reserve)
	d.Token = d.Login(t, "admin", testAdminPassword)
	const size = 1 << 30
	v := d.CreateVDI(t, "fill", size)
	spare := d.CreateVDI(t, "spare", 64<<20)
	uri := d.URI(t, v.UUID)

	r := runNbdshScript(t, uri, fillScript, "START=0", fmt.Sprintf("LIMIT=%d", size))
	if r.Errno == nil || *r.Errno != "ENOSPC" {
		t.Fatalf("filling a 1 GiB VDI on 512 MiB of free space: stopped at %d MiB with %+v, want ENOSPC", r.Written>>20, r)
	}
	if r.Written < 64<<20 {
		t.Fatalf("only %d MiB written before ENOSPC", r.Written>>20)
	}
	t.Logf("ENOSPC after %d MiB: %s", r.Written>>20, r.Msg)
	full := r.Written

	// REST calls that take space are refused with SR_FULL; nothing changes.
	var before api.List[api.VDI]
	d.MustCall(t, http.MethodGet, "/vdis", nil, &before)
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/vdis/" + v.UUID + "/snapshot"},
		{http.MethodPost, "/vdis/" + spare.UUID + "/clone"},
		{http.MethodPost, "/vdis"},
	} {
		var eb api.ErrorBody
		body := map[string]any{}
		if c.path == "/vdis" {
			body = map[string]any{"name_label": "more", "virtual_size": 1 << 20}
		}
		st := d.Call(t, c.method, c.path, body, &eb)
		if st != http.StatusInsufficientStorage || eb.Error == nil || eb.Error.Code != "SR_FULL" {
			t.Errorf("%s %s on a full file system: HTTP %d %+v, want 507 SR_FULL", c.method, c.path, st, eb.Error)
		}
	}
	var after api.List[api.VDI]
	d.MustCall(t, http.MethodGet, "/vdis", nil, &after)
	if len(after.Data) != len(before.Data) {
		t.Errorf("refused calls changed the VDI list: %d -> %d VDIs", len(before.Data), len(after.Data))
	}

	// Reads go on and return every acknowledged byte.
	if c := runNbdshScript(t, uri, checkScript, fmt.Sprintf("END=%d", full)); len(c.Bad) > 0 {
		t.Fatalf("on a full file system, chunks at %v read back wrong", c.Bad)
	}
	if m := d.scrape(t).body; !strings.Contains(m, `vdiskd_nbd_request_errors_total{command="write",errno="ENOSPC"}`) {
		t.Errorf("no ENOSPC write error counted in /metrics")
	}
	if strings.Contains(d.Log(), "returned ENOSPC to pebble") {
		t.Errorf("pebble met ENOSPC: the reserve did not hold\n%s", d.Log())
	}

	// Someone frees space: writes resume without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = runNbdshScript(t, uri, fillScript, fmt.Sprintf("START=%d", full), fmt.Sprintf("LIMIT=%d", full+(8<<20)))
		if r.Errno == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after freeing 256 MiB, writes still fail: %s %s", *r.Errno, r.Msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
	full = r.Written
	d.Snapshot(t, v.UUID)

	// Nothing was corrupted: a restart reads back everything acknowledged.
	d.Stop(t)
	d = launchVdiskd(t, data, "--min-free-space", reserve)
	d.Token = d.Login(t, "admin", testAdminPassword)
	if c := runNbdshScript(t, d.URI(t, v.UUID), checkScript, fmt.Sprintf("END=%d", full)); len(c.Bad) > 0 {
		t.Fatalf("after a restart, chunks at %v read back wrong", c.Bad)
	}
}
