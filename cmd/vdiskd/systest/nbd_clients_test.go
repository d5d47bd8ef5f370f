package systest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

// The NBD data path, proven with real clients (nbdinfo, qemu-io, qemu-img,
// nbdcopy, fio, libnbd python) against the real vdiskd binary. One daemon
// serves every subtest of TestNBDClients; each subtest works on its own
// VDIs. TLS and crash durability need daemons of their own.

const (
	clMiB = int64(1) << 20
	clKiB = int64(1) << 10
)

func TestNBDClients(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdinfo", "nbdcopy", "nbdsh", "qemu-img", "qemu-io", "fio")
	d := startVdiskd(t)
	t.Run("nbdinfo", func(t *testing.T) { clTestNbdinfo(t, d) })
	t.Run("qemu-io", func(t *testing.T) { clTestQemuIO(t, d) })
	t.Run("qemu-img", func(t *testing.T) { clTestQemuImg(t, d) })
	t.Run("nbdcopy", func(t *testing.T) { clTestNbdcopy(t, d) })
	t.Run("fio", func(t *testing.T) { clTestFio(t, d) })
	t.Run("incremental-backup", func(t *testing.T) { clTestIncremental(t, d) })
	t.Run("nbdsh", func(t *testing.T) { clTestNbdsh(t, d) })
	t.Run("snapshot-under-open-connection", func(t *testing.T) { clTestLiveSnapshot(t, d) })
	t.Run("on_boot-reset", func(t *testing.T) { clTestOnBootReset(t, d) })
	t.Run("large-sparse-disk", func(t *testing.T) { clTestLargeSparse(t, d) })
	t.Run("sub-block-writes-4-connections", func(t *testing.T) { clTestSectorWriters(t, d) })
	t.Run("clone-copy-on-write", func(t *testing.T) { clTestClone(t, d) })
	t.Run("resize-online", func(t *testing.T) { clTestResizeOnline(t, d) })
}

// ---------------------------------------------------------------------------
// 1. nbdinfo: what the handshake advertises.

type clInfo struct {
	Protocol   string `json:"protocol"`
	TLS        bool   `json:"TLS"`
	Structured bool   `json:"structured"`
	Exports    []struct {
		ExportName     string   `json:"export-name"`
		Description    string   `json:"description"`
		Contexts       []string `json:"contexts"`
		IsRotational   bool     `json:"is_rotational"`
		IsReadOnly     bool     `json:"is_read_only"`
		CanCache       bool     `json:"can_cache"`
		CanDF          bool     `json:"can_df"`
		CanFastZero    bool     `json:"can_fast_zero"`
		CanFlush       bool     `json:"can_flush"`
		CanFUA         bool     `json:"can_fua"`
		CanMultiConn   bool     `json:"can_multi_conn"`
		CanTrim        bool     `json:"can_trim"`
		CanZero        bool     `json:"can_zero"`
		BlockMin       int64    `json:"block_size_minimum"`
		BlockPreferred int64    `json:"block_size_preferred"`
		BlockMax       int64    `json:"block_size_maximum"`
		ExportSize     int64    `json:"export-size"`
	} `json:"exports"`
}

func clNbdinfo(t *testing.T, uri string) clInfo {
	t.Helper()
	out, err := vdiskdtest.ToolCmd(t, "nbdinfo", "--json", uri).Output()
	if err != nil {
		t.Fatalf("nbdinfo --json %s: %v", uri, clErrOut(err))
	}
	var info clInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	if len(info.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %d exports, want 1\n%s", len(info.Exports), out)
	}
	return info
}

func clTestNbdinfo(t *testing.T, d *daemon) {
	// 10 MiB + 1 byte rounds up to 12 MiB (VDI sizes are whole 2 MiB).
	v := d.CreateVDI(t, "info-disk", 10*clMiB+1)
	if v.VirtualSize != 12*clMiB {
		t.Errorf("virtual_size %d, want %d", v.VirtualSize, 12*clMiB)
	}
	plainURI := d.URI(t, v.UUID)
	plainInfo := clNbdinfo(t, plainURI) // before CBT: base:allocation only

	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	s0 := d.Snapshot(t, v.UUID)
	s1 := d.Snapshot(t, v.UUID)
	dirty := func(s api.VDI) string { return "qemu:dirty-bitmap:" + s.UUID }

	cases := []struct {
		name     string
		vdi      string
		info     *clInfo
		ro       bool
		contexts []string
	}{
		{"writable, no CBT", v.UUID, &plainInfo, false, []string{"base:allocation"}},
		{"writable, CBT with 2 snapshots", v.UUID, nil, false, []string{"base:allocation", dirty(s0), dirty(s1)}},
		{"first snapshot", s0.UUID, nil, true, []string{"base:allocation"}},
		{"second snapshot", s1.UUID, nil, true, []string{"base:allocation", dirty(s0)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			uri := d.URI(t, c.vdi)
			info := c.info
			if info == nil {
				i := clNbdinfo(t, uri)
				info = &i
			}
			e := info.Exports[0]
			rw := !c.ro
			got := map[string]any{
				"protocol": info.Protocol, "TLS": info.TLS, "structured": info.Structured,
				"export-name": e.ExportName, "description": e.Description,
				"is_rotational": e.IsRotational, "is_read_only": e.IsReadOnly,
				"can_cache": e.CanCache, "can_df": e.CanDF, "can_fast_zero": e.CanFastZero,
				"can_flush": e.CanFlush, "can_fua": e.CanFUA, "can_multi_conn": e.CanMultiConn,
				"can_trim": e.CanTrim, "can_zero": e.CanZero,
				"block_size_minimum": e.BlockMin, "block_size_preferred": e.BlockPreferred,
				"block_size_maximum": e.BlockMax, "export-size": e.ExportSize,
			}
			want := map[string]any{
				"protocol": "newstyle-fixed", "TLS": false, "structured": true,
				"export-name": d.ExportName(t, c.vdi), "description": d.VDI(t, c.vdi).NameLabel,
				"is_rotational": false, "is_read_only": c.ro,
				// 0x0ded writable, 0x058f read-only (see the brief/nbd.md §4).
				"can_cache": true, "can_df": true, "can_fast_zero": rw,
				"can_flush": true, "can_fua": true, "can_multi_conn": true,
				"can_trim": rw, "can_zero": rw,
				"block_size_minimum": int64(512), "block_size_preferred": int64(65536),
				"block_size_maximum": int64(32 << 20), "export-size": 12 * clMiB,
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s = %v, want %v", k, got[k], w)
				}
			}
			gotCtx := slices.Sorted(slices.Values(e.Contexts))
			wantCtx := slices.Sorted(slices.Values(c.contexts))
			if !slices.Equal(gotCtx, wantCtx) {
				t.Errorf("contexts %q, want %q", gotCtx, wantCtx)
			}
		})
	}

	// nbdinfo --can/--is answer with the exit code: 0 true, 2 false.
	snapURI := d.URI(t, s1.UUID)
	rwURI := d.URI(t, v.UUID)
	for _, c := range []struct {
		uri, what string
		args      []string
		rc        int
	}{
		{rwURI, "rw", []string{"--is", "read-only"}, 2},
		{rwURI, "rw", []string{"--can", "trim"}, 0},
		{rwURI, "rw", []string{"--can", "zero"}, 0},
		{rwURI, "rw", []string{"--can", "fast-zero"}, 0},
		{rwURI, "rw", []string{"--can", "multi-conn"}, 0},
		{rwURI, "rw", []string{"--can", "df"}, 0},
		{rwURI, "rw", []string{"--can", "structured-reply"}, 0},
		{snapURI, "snapshot", []string{"--is", "read-only"}, 0},
		{snapURI, "snapshot", []string{"--can", "trim"}, 2},
		{snapURI, "snapshot", []string{"--can", "zero"}, 2},
		{snapURI, "snapshot", []string{"--can", "cache"}, 0},
		{snapURI, "snapshot", []string{"--can", "multi-conn"}, 0},
	} {
		rc, out := clNbdinfoRC(t, append(c.args, c.uri)...)
		if rc != c.rc {
			t.Errorf("nbdinfo %s on the %s export: exit %d, want %d\n%s", strings.Join(c.args, " "), c.what, rc, c.rc, out)
		}
	}
	// --size of the snapshot, and a refusal for a bad session.
	if out := strings.TrimSpace(vdiskdtest.RunTool(t, "nbdinfo", "--size", snapURI)); out != strconv.FormatInt(12*clMiB, 10) {
		t.Errorf("nbdinfo --size: %q", out)
	}
	bad := strings.Replace(rwURI, "session_id=", "session_id=x", 1)
	if rc, out := clNbdinfoRC(t, "--size", bad); rc == 0 {
		t.Errorf("nbdinfo with a bad session_id succeeded:\n%s", out)
	}
}

// clNbdinfoRC runs nbdinfo with args and returns its exit code and output.
func clNbdinfoRC(t *testing.T, args ...string) (int, string) {
	return vdiskdtest.ExecTool(t, "nbdinfo", args...)
}

func clErrOut(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Sprintf("%v\n%s", err, ee.Stderr)
	}
	return err.Error()
}

// ---------------------------------------------------------------------------
// Extents as nbdinfo --map reports them.

type clExtent struct {
	Offset      int64  `json:"offset"`
	Length      int64  `json:"length"`
	Type        int    `json:"type"`
	Description string `json:"description"`
}

// clMap is `nbdinfo --json --map[=ctx] uri`, checked to tile the export.
func clMap(t *testing.T, uri, ctx string, size int64) []clExtent {
	t.Helper()
	flag := "--map"
	if ctx != "" {
		flag += "=" + ctx
	}
	out, err := vdiskdtest.ToolCmd(t, "nbdinfo", "--json", flag, uri).Output()
	if err != nil {
		t.Fatalf("nbdinfo --json %s: %v", flag, clErrOut(err))
	}
	var ext []clExtent
	if err := json.Unmarshal(out, &ext); err != nil {
		t.Fatalf("nbdinfo --json %s: %v\n%s", flag, err, out)
	}
	var off int64
	for _, e := range ext {
		if e.Offset != off || e.Length <= 0 {
			t.Fatalf("nbdinfo %s: extents do not tile the export at %d: %+v", flag, off, ext)
		}
		off += e.Length
	}
	if off != size {
		t.Fatalf("nbdinfo %s: extents cover %d bytes, want %d: %+v", flag, off, size, ext)
	}
	return ext
}

// clTypes is the set of extent types that overlap [off, off+n).
func clTypes(ext []clExtent, off, n int64) []int {
	var types []int
	for _, e := range ext {
		if e.Offset < off+n && off < e.Offset+e.Length && !slices.Contains(types, e.Type) {
			types = append(types, e.Type)
		}
	}
	sort.Ints(types)
	return types
}

// clExpectTypes fails unless every extent over [off, off+n) has a type ok
// accepts.
func clExpectTypes(t *testing.T, ext []clExtent, off, n int64, what string, ok func(int) bool) {
	t.Helper()
	types := clTypes(ext, off, n)
	if len(types) == 0 {
		t.Errorf("%s [%d,+%d): no extents", what, off, n)
	}
	for _, ty := range types {
		if !ok(ty) {
			t.Errorf("%s [%d,+%d): extent types %v\nmap: %+v", what, off, n, types, ext)
			return
		}
	}
}

// base:allocation flags: bit0 HOLE, bit1 ZERO.
func clIsData(ty int) bool      { return ty == 0 }
func clIsZero(ty int) bool      { return ty&2 != 0 }
func clIsHoleZero(ty int) bool  { return ty == 3 }
func clIsAllocZero(ty int) bool { return ty == 2 }

// ---------------------------------------------------------------------------
// 2. qemu-io: every command qemu's NBD client sends, then verification on a
// new connection.

// clQemuIO runs qemu-io on a raw NBD image and fails on any error.
func clQemuIO(t *testing.T, uri string, cmds ...string) string {
	t.Helper()
	return clQemuIOArgs(t, []string{"-f", "raw", uri}, cmds...)
}

func clQemuIOArgs(t *testing.T, open []string, cmds ...string) string {
	t.Helper()
	args := slices.Clone(open)
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := vdiskdtest.RunTool(t, "qemu-io", args...)
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io %q:\n%s", cmds, out)
	}
	return out
}

func clTestQemuIO(t *testing.T, d *daemon) {
	const size = 64 * clMiB
	v := d.CreateVDI(t, "qemu-io", size)
	uri := d.URI(t, v.UUID)

	// qemu-io opens writethrough: every write below also carries FUA.
	clQemuIO(t, uri,
		"write -P 0x77 1M 3M", // data the zero/discard commands below replace
		"write -P 0xaa 0 64k",
		"read -P 0xaa 0 64k",
		"write -f -P 0xbb 64k 4k", // explicit FUA
		"write -z 1M 1M",          // WRITE_ZEROES with NO_HOLE
		"write -z -u 2M 1M",       // WRITE_ZEROES that may punch a hole
		"discard 3M 64k",          // TRIM
		"flush",
		"aio_write -P 0xcc 4M 64k",
		"aio_write -P 0xdd 5M 64k",
		"aio_flush",
		"read -P 0xdd 5M 64k",
		"read -P 0 1M 2M",
		"write -P 0x12 6291556 1000", // 6M+100: unaligned, not a multiple of 512
		"read -P 0x12 6291556 1000",
		"write -P 0x5c 16M 40M", // larger than the 32 MiB max payload: qemu splits it
		"read -P 0x5c 16M 40M",
		"write -P 0x3e 63M 1M", // the last MiB
	)

	// A new connection sees all of it.
	clQemuIO(t, uri,
		"read -P 0xaa 0 64k",
		"read -P 0xbb 64k 4k",
		"read -P 0 68k 956k",
		"read -P 0 1M 2M",
		"read -P 0 3M 64k", // vdiskd's TRIM reads back as zeros (blockstore.Disk.Trim)
		"read -P 0x77 3211264 983040",
		"read -P 0xcc 4M 64k",
		"read -P 0xdd 5M 64k",
		"read -P 0 6M 100",
		"read -P 0x12 6291556 1000",
		"read -P 0 6292556 1024436", // the rest of that MiB
		"read -P 0x5c 16M 40M",
		"read -P 0 56M 7M",
		"read -P 0x3e 63M 1M",
	)

	// Verification must be able to fail: a wrong pattern exits 1.
	rc, out := vdiskdtest.ExecTool(t, "qemu-io", "-f", "raw", uri, "-c", "read -P 0xab 0 64k")
	if rc != 1 || !strings.Contains(out, "Pattern verification failed at offset 0") {
		t.Errorf("qemu-io read with a wrong pattern: exit %d, want 1 and a verification failure\n%s", rc, out)
	}

	// base:allocation over what was written.
	ext := clMap(t, uri, "", size)
	clExpectTypes(t, ext, 0, 68*clKiB, "written 0xaa/0xbb", clIsData)
	clExpectTypes(t, ext, 68*clKiB, clMiB-68*clKiB, "never written", clIsHoleZero)
	clExpectTypes(t, ext, clMiB, clMiB, "write -z (NO_HOLE)", clIsAllocZero)
	clExpectTypes(t, ext, 2*clMiB, clMiB, "write -z -u (may punch)", clIsZero)
	clExpectTypes(t, ext, 3*clMiB, 64*clKiB, "discard", clIsHoleZero)
	clExpectTypes(t, ext, 3*clMiB+64*clKiB, clMiB-64*clKiB, "0x77 left after the discard", clIsData)
	clExpectTypes(t, ext, 4*clMiB, 64*clKiB, "aio_write 0xcc", clIsData)
	clExpectTypes(t, ext, 5*clMiB, 64*clKiB, "aio_write 0xdd", clIsData)
	clExpectTypes(t, ext, 16*clMiB, 40*clMiB, "write 40M", clIsData)
	clExpectTypes(t, ext, 56*clMiB, 7*clMiB, "never written", clIsHoleZero)
	clExpectTypes(t, ext, 63*clMiB, clMiB, "the last MiB", clIsData)

	// A snapshot is read-only: qemu-io cannot write it, and it keeps the data.
	s := d.Snapshot(t, v.UUID)
	suri := d.URI(t, s.UUID)
	if rc, out := vdiskdtest.ExecTool(t, "qemu-io", "-f", "raw", suri, "-c", "write -P 0x01 0 4k"); rc == 0 {
		t.Errorf("qemu-io wrote to a snapshot export:\n%s", out)
	}
	clQemuIOArgs(t, []string{"-r", "-f", "raw", suri}, "read -P 0xaa 0 64k", "read -P 0x3e 63M 1M")
}

// ---------------------------------------------------------------------------
// 3. qemu-img: convert a sparse qcow2 in and out, compare, map.

type clQemuMap struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

// clQemuImgMap is `qemu-img map --output=json` with the given image
// arguments, checked to tile size bytes.
func clQemuImgMap(t *testing.T, size int64, args ...string) []clQemuMap {
	t.Helper()
	out, err := vdiskdtest.ToolCmd(t, "qemu-img", append([]string{"map", "--output=json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("qemu-img map %q: %v", args, clErrOut(err))
	}
	var m []clQemuMap
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var off int64
	for _, e := range m {
		if e.Start != off || e.Length <= 0 {
			t.Fatalf("qemu-img map: entries do not tile at %d: %+v", off, m)
		}
		off += e.Length
	}
	if off != size {
		t.Fatalf("qemu-img map: covers %d bytes, want %d", off, size)
	}
	return m
}

// clRanges merges the entries keep selects into [start, length] ranges.
func clRanges[E any](entries []E, span func(E) (int64, int64), keep func(E) bool) [][2]int64 {
	var r [][2]int64
	for _, e := range entries {
		if !keep(e) {
			continue
		}
		s, n := span(e)
		if k := len(r); k > 0 && r[k-1][0]+r[k-1][1] == s {
			r[k-1][1] += n
		} else {
			r = append(r, [2]int64{s, n})
		}
	}
	return r
}

func clQemuSpan(e clQemuMap) (int64, int64) { return e.Start, e.Length }

func clTestQemuImg(t *testing.T, d *daemon) {
	const size = 64 * clMiB
	dir := t.TempDir()
	src := filepath.Join(dir, "src.qcow2")
	vdiskdtest.RunTool(t, "qemu-img", "create", "-q", "-f", "qcow2", src, "64M")
	vdiskdtest.RunTool(t, "qemu-io", "-f", "qcow2", src,
		"-c", "write -P 0x11 0 1M",
		"-c", "write -P 0x22 5M 64k",
		"-c", "write -P 0x33 20M 3M",
		"-c", "write -z 30M 1M", // a zero cluster: reads as zero, no data
		"-c", "write -P 0x44 63M 1M")
	wantData := [][2]int64{{0, clMiB}, {5 * clMiB, 64 * clKiB}, {20 * clMiB, 3 * clMiB}, {63 * clMiB, clMiB}}

	v := d.CreateVDI(t, "qemu-img", size)
	uri := d.URI(t, v.UUID)
	// Stale data where the source has holes: convert -n must zero it.
	clQemuIO(t, uri, "write -P 0xee 40M 2M", "write -P 0xee 30M 1M")

	vdiskdtest.RunTool(t, "qemu-img", "convert", "-n", "-f", "qcow2", "-O", "raw", src, uri)
	if rc, out := vdiskdtest.ExecTool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, uri); rc != 0 || !strings.Contains(out, "Images are identical.") {
		t.Fatalf("qemu-img compare src.qcow2 NBD: exit %d\n%s", rc, out)
	}

	var info struct {
		VirtualSize int64  `json:"virtual-size"`
		Format      string `json:"format"`
	}
	if err := json.Unmarshal([]byte(vdiskdtest.RunTool(t, "qemu-img", "info", "--output=json", uri)), &info); err != nil {
		t.Fatal(err)
	}
	if info.VirtualSize != size || info.Format != "raw" {
		t.Errorf("qemu-img info: %+v", info)
	}

	// The NBD image's data is exactly the source's; the rest reads as zero.
	m := clQemuImgMap(t, size, "-f", "raw", uri)
	if got := clRanges(m, clQemuSpan, func(e clQemuMap) bool { return e.Data }); !slices.Equal(got, wantData) {
		t.Errorf("qemu-img map of the export: data %v, want %v\n%+v", got, wantData, m)
	}
	for _, e := range m {
		if !e.Data && !e.Zero {
			t.Errorf("qemu-img map: %+v is neither data nor zero", e)
		}
	}

	// And back: NBD -> local qcow2, identical and still sparse.
	back := filepath.Join(dir, "back.qcow2")
	vdiskdtest.RunTool(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", uri, back)
	if rc, out := vdiskdtest.ExecTool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", src, back); rc != 0 || !strings.Contains(out, "Images are identical.") {
		t.Fatalf("qemu-img compare src.qcow2 back.qcow2: exit %d\n%s", rc, out)
	}
	bm := clQemuImgMap(t, size, "-f", "qcow2", back)
	if got := clRanges(bm, clQemuSpan, func(e clQemuMap) bool { return e.Data }); !slices.Equal(got, wantData) {
		t.Errorf("qemu-img map back.qcow2: data %v, want %v", got, wantData)
	}

	// qemu-img convert without -n (it first "creates" the image: a zero
	// write at 0 and a flush on a connection of its own), with 16
	// coroutines writing out of order (-W).
	w := d.CreateVDI(t, "qemu-img-w", size)
	wuri := d.URI(t, w.UUID)
	vdiskdtest.RunTool(t, "qemu-img", "convert", "-W", "-m", "16", "-f", "qcow2", "-O", "raw", src, wuri)
	if rc, out := vdiskdtest.ExecTool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, wuri); rc != 0 || !strings.Contains(out, "Images are identical.") {
		t.Errorf("qemu-img compare after convert -W -m 16: exit %d\n%s", rc, out)
	}

	// compare reads what the server holds: one changed sector shows.
	clQemuIO(t, uri, "write -P 0x01 50M 512")
	if rc, out := vdiskdtest.ExecTool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", src, uri); rc != 1 || !strings.Contains(out, "Content mismatch at offset 52428800!") {
		t.Errorf("qemu-img compare after a change: exit %d, want 1 and a mismatch at 50M\n%s", rc, out)
	}
}

// ---------------------------------------------------------------------------
// 4. nbdcopy: file -> NBD -> file, NBD -> NBD, sparse and allocated.

// clSparseFile writes a size-byte file with random data in ranges and holes
// elsewhere, and returns its content.
func clSparseFile(t *testing.T, path string, size int64, ranges [][2]int64) []byte {
	t.Helper()
	content := make([]byte, size)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		b := content[r[0] : r[0]+r[1]]
		rand.Read(b)
		if _, err := f.WriteAt(b, r[0]); err != nil {
			t.Fatal(err)
		}
	}
	return content
}

func clReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clGaps is the complement of sorted ranges within size.
func clGaps(ranges [][2]int64, size int64) [][2]int64 {
	var g [][2]int64
	var off int64
	for _, r := range ranges {
		if r[0] > off {
			g = append(g, [2]int64{off, r[0] - off})
		}
		off = r[0] + r[1]
	}
	if off < size {
		g = append(g, [2]int64{off, size - off})
	}
	return g
}

// clAlignIn rounds a [start, length] range inward to multiples of a.
func clAlignIn(r [2]int64, a int64) (lo, hi int64) {
	return (r[0] + a - 1) / a * a, (r[0] + r[1]) / a * a
}

// clMD5 is the md5 of an export, streamed by nbdcopy to stdout.
func clMD5(t *testing.T, uri string) [16]byte {
	t.Helper()
	out, err := vdiskdtest.ToolCmd(t, "nbdcopy", uri, "-").Output()
	if err != nil {
		t.Fatalf("nbdcopy %s -: %v", uri, clErrOut(err))
	}
	return md5.Sum(out)
}

func clTestNbdcopy(t *testing.T, d *daemon) {
	const size = 64 * clMiB
	dir := t.TempDir()
	layout := [][2]int64{{0, 3 * clMiB}, {7*clMiB + 4*clKiB, 2*clMiB - 4*clKiB}, {32 * clMiB, clMiB}, {60 * clMiB, 4 * clMiB}}
	gaps := clGaps(layout, size)
	src := filepath.Join(dir, "src.raw")
	content := clSparseFile(t, src, size, layout)
	sum := md5.Sum(content)

	a := d.CreateVDI(t, "nbdcopy-a", size)
	b := d.CreateVDI(t, "nbdcopy-b", size)
	c := d.CreateVDI(t, "nbdcopy-c", size)
	ua, ub, uc := d.URI(t, a.UUID), d.URI(t, b.UUID), d.URI(t, c.UUID)
	// Garbage where the source has holes: the copies must zero it.
	clQemuIO(t, ua, "write -P 0xee 0 64M")
	clQemuIO(t, uc, "write -P 0xee 0 64M")

	t.Run("file to NBD to file, 4 connections", func(t *testing.T) {
		vdiskdtest.RunTool(t, "nbdcopy", "-C", "4", src, ua)
		out := filepath.Join(dir, "out.raw")
		vdiskdtest.RunTool(t, "nbdcopy", "-C", "4", ua, out)
		if got := clReadFile(t, out); !bytes.Equal(got, content) {
			t.Fatalf("round trip differs (md5 %x, want %x)", md5.Sum(got), sum)
		}
		if got := clMD5(t, ua); got != sum {
			t.Errorf("nbdcopy URI - | md5: %x, want %x", got, sum)
		}
		// nbdcopy skipped the holes it learnt from BLOCK_STATUS: the local
		// copy is sparse (10 MiB of data in 64 MiB).
		var st syscall.Stat_t
		if err := syscall.Stat(out, &st); err != nil {
			t.Fatal(err)
		}
		if alloc := st.Blocks * 512; alloc > 20*clMiB {
			t.Errorf("copy from NBD allocates %d bytes: the holes were not preserved", alloc)
		}
		ext := clMap(t, ua, "", size)
		for _, r := range layout {
			clExpectTypes(t, ext, r[0], r[1], "copied data", clIsData)
		}
		// Sparse copy: nbdcopy zeroes the holes without NO_HOLE, and vdiskd
		// punches them. nbdcopy writes whole 256 KiB requests, so a hole's
		// edges may arrive as written zeros, which vdiskd stores as zero
		// markers (type 2, blockstore/doc.go); its inside is a hole.
		for _, g := range gaps {
			clExpectTypes(t, ext, g[0], g[1], "source hole (sparse copy)", clIsZero)
			if lo, hi := clAlignIn(g, clMiB); lo < hi {
				clExpectTypes(t, ext, lo, hi-lo, "inside a source hole (sparse copy)", clIsHoleZero)
			}
		}
	})

	t.Run("allocated", func(t *testing.T) {
		// Requests of exactly the 32 MiB max payload.
		vdiskdtest.RunTool(t, "nbdcopy", "--allocated", "-C", "4", "--flush", "--request-size=33554432", src, ub)
		if got := clMD5(t, ub); got != sum {
			t.Errorf("md5 %x, want %x", got, sum)
		}
		ext := clMap(t, ub, "", size)
		for _, r := range layout {
			clExpectTypes(t, ext, r[0], r[1], "copied data", clIsData)
		}
		// --allocated zeroes with NO_HOLE: no hole anywhere.
		clExpectTypes(t, ext, 0, size, "--allocated copy", func(ty int) bool { return ty&1 == 0 })
		for _, g := range gaps {
			clExpectTypes(t, ext, g[0], g[1], "source hole (--allocated)", clIsAllocZero)
		}
	})

	t.Run("NBD to NBD", func(t *testing.T) {
		vdiskdtest.RunTool(t, "nbdcopy", "-C", "4", ua, uc)
		if got := clMD5(t, uc); got != sum {
			t.Errorf("md5 %x, want %x", got, sum)
		}
		ext := clMap(t, uc, "", size)
		for _, g := range gaps {
			clExpectTypes(t, ext, g[0], g[1], "source hole", clIsZero)
		}
	})
}

// ---------------------------------------------------------------------------
// 5. fio's nbd engine: deep queues, several connections, verification.

type clFioJob struct {
	Name  string `json:"jobname"`
	Error int    `json:"error"`
	Read  struct {
		IOBytes  int64 `json:"io_bytes"`
		TotalIOs int64 `json:"total_ios"`
	} `json:"read"`
	Write struct {
		IOBytes  int64 `json:"io_bytes"`
		TotalIOs int64 `json:"total_ios"`
	} `json:"write"`
}

// clFio runs fio with JSON output and returns its exit code, jobs (nil if
// the output does not parse) and raw output.
func clFio(t *testing.T, args ...string) (int, []clFioJob, string) {
	t.Helper()
	outFile := filepath.Join(t.TempDir(), "fio.json")
	rc, out := vdiskdtest.ExecTool(t, "fio", append(args, "--output-format=json", "--output="+outFile)...)
	b, _ := os.ReadFile(outFile)
	var res struct {
		Jobs []clFioJob `json:"jobs"`
	}
	if json.Unmarshal(b, &res) != nil {
		res.Jobs = nil
	}
	return rc, res.Jobs, out + string(b)
}

func clTestFio(t *testing.T, d *daemon) {
	v := d.CreateVDI(t, "fio", 64*clMiB)
	uri := d.URI(t, v.UUID)
	// Two jobs, two connections, 32 MiB each, 32 requests in flight each;
	// fio reads every block back and checks its crc32c.
	job := []string{"--name=verify", "--ioengine=nbd", "--uri=" + uri, "--rw=randwrite", "--bs=4k",
		"--iodepth=32", "--numjobs=2", "--size=32M", "--offset_increment=32M", "--verify=crc32c",
		"--verify_state_save=0"} // no local-verify-*.state files in the package dir

	checkJobs := func(t *testing.T, what string, rc int, jobs []clFioJob, out string, wantRead, wantWrite int64) {
		t.Helper()
		if rc != 0 || len(jobs) != 2 {
			t.Fatalf("fio %s: exit %d, %d jobs\n%s", what, rc, len(jobs), out)
		}
		for _, j := range jobs {
			if j.Error != 0 || j.Read.IOBytes != wantRead || (wantWrite >= 0 && j.Write.IOBytes != wantWrite) {
				t.Errorf("fio %s: job %s error %d, read %d bytes (want %d), wrote %d (want %d)", what, j.Name, j.Error,
					j.Read.IOBytes, wantRead, j.Write.IOBytes, wantWrite)
			}
		}
	}
	rc, jobs, out := clFio(t, job...)
	checkJobs(t, "randwrite+verify", rc, jobs, out, 32*clMiB, 32*clMiB)

	// A later run on new connections verifies the same blocks again.
	rc, jobs, out = clFio(t, append(job, "--verify_only")...)
	checkJobs(t, "verify_only", rc, jobs, out, 32*clMiB, -1)

	// Mixed random reads and writes for 2 s on another VDI.
	w := d.CreateVDI(t, "fio-mixed", 64*clMiB)
	rc, jobs, out = clFio(t, "--name=mixed", "--ioengine=nbd", "--uri="+d.URI(t, w.UUID), "--rw=randrw", "--bs=4k",
		"--iodepth=32", "--size=64M", "--runtime=2", "--time_based")
	if rc != 0 || len(jobs) != 1 || jobs[0].Error != 0 || jobs[0].Read.TotalIOs == 0 || jobs[0].Write.TotalIOs == 0 {
		t.Errorf("fio randrw: exit %d, jobs %+v\n%s", rc, jobs, out)
	}

	// FLUSH after every 8 writes, and TRIM mixed with writes.
	for _, extra := range [][]string{
		{"--rw=randwrite", "--fsync=8", "--verify=crc32c", "--verify_state_save=0"},
		{"--rw=trimwrite"},
		{"--rw=randtrim"},
	} {
		args := append([]string{"--name=more", "--ioengine=nbd", "--uri=" + d.URI(t, w.UUID), "--bs=4k",
			"--iodepth=16", "--size=8M"}, extra...)
		if rc, jobs, out := clFio(t, args...); rc != 0 || len(jobs) != 1 || jobs[0].Error != 0 {
			t.Errorf("fio %q: exit %d\n%s", extra, rc, out)
		}
	}

	// Verification can fail: corrupt one block of the second job's half.
	clQemuIO(t, uri, "write -P 0 36M 4k")
	if rc, _, out := clFio(t, append(job, "--verify_only")...); rc == 0 || !strings.Contains(out, "verify: bad magic header") {
		t.Errorf("fio --verify_only after corrupting a block: exit %d, want a verify failure\n%s", rc, out)
	}
}

// ---------------------------------------------------------------------------
// 6. Incremental backup: CBT snapshots as qemu:dirty-bitmap contexts.

// clChangedBlocks is list_changed_blocks(from -> to), decoded. The bitmap
// has one bit per 64 KiB block, block i at byte i/8 under mask 0x80>>(i%8)
// (most significant bit first, cbt/encode.go).
func clChangedBlocks(t *testing.T, d *daemon, from, to string, size int64) []int64 {
	t.Helper()
	var cb api.ChangedBlocks
	d.MustCall(t, http.MethodGet, "/vdis/"+to+"/list_changed_blocks?vdi_from="+from, nil, &cb)
	raw, err := base64.StdEncoding.DecodeString(cb.Bitmap)
	if err != nil {
		t.Fatalf("list_changed_blocks: bitmap: %v", err)
	}
	nblocks := (size + 64*clKiB - 1) / (64 * clKiB)
	if cb.Granularity != 65536 || cb.VirtualSize != size || int64(len(raw)) != (nblocks+7)/8 {
		t.Fatalf("list_changed_blocks: granularity %d, virtual_size %d, %d bitmap bytes", cb.Granularity, cb.VirtualSize, len(raw))
	}
	var blocks []int64
	for i := int64(0); i < int64(len(raw))*8; i++ {
		if raw[i/8]&(0x80>>(i%8)) != 0 {
			blocks = append(blocks, i)
		}
	}
	if cb.ChangedBlocks != len(blocks) {
		t.Errorf("list_changed_blocks: changed_blocks %d, bitmap has %d", cb.ChangedBlocks, len(blocks))
	}
	return blocks
}

// clBlocks turns byte ranges into the 64 KiB blocks they touch.
func clBlocks(ranges [][2]int64) []int64 {
	var out []int64
	for _, r := range ranges {
		for b := r[0] / (64 * clKiB); b <= (r[0]+r[1]-1)/(64*clKiB); b++ {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	slices.Sort(out)
	return out
}

// clDirtyFromMap reads `nbdinfo --json --map=<ctx>` and returns the dirty
// 64 KiB blocks; extents must be 0 clean / 1 dirty and block aligned.
func clDirtyFromMap(t *testing.T, uri, ctx string, size int64) []int64 {
	t.Helper()
	var dirty [][2]int64
	for _, e := range clMap(t, uri, ctx, size) {
		switch {
		case e.Type == 0 && e.Description == "clean":
		case e.Type == 1 && e.Description == "dirty":
			if e.Offset%(64*clKiB) != 0 || (e.Length%(64*clKiB) != 0 && e.Offset+e.Length != size) {
				t.Errorf("--map=%s: dirty extent %+v not on 64 KiB blocks", ctx, e)
			}
			dirty = append(dirty, [2]int64{e.Offset, e.Length})
		default:
			t.Errorf("--map=%s: extent %+v: want type 0 clean or 1 dirty", ctx, e)
		}
	}
	return clBlocks(dirty)
}

func clTestIncremental(t *testing.T, d *daemon) {
	const size = 64 * clMiB
	dir := t.TempDir()
	v := d.CreateVDI(t, "backup", size)
	uri := d.URI(t, v.UUID)
	clQemuIO(t, uri, "write -P 0x10 0 8M", "write -P 0x20 30M 2M", "write -P 0x30 40M 1M")

	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	s0 := d.Snapshot(t, v.UUID)
	ctx := "qemu:dirty-bitmap:" + s0.UUID
	full0 := filepath.Join(dir, "s0.raw")
	s0uri := d.URI(t, s0.UUID)
	vdiskdtest.RunTool(t, "nbdcopy", s0uri, full0) // the full backup

	// The guest's writes between the two backups.
	changes := [][2]int64{
		{4 * clMiB, 64 * clKiB},
		{8 * clMiB, 4 * clKiB},
		{16 * clMiB, clMiB},
		{30 * clMiB, 128 * clKiB},        // zeroed data: the copy must carry the zeros
		{40 * clMiB, 64 * clKiB},         // discarded data
		{50*clMiB + 100, 1000},           // unaligned
		{size - 64*clKiB, 64 * clKiB},    // the last block
		{12*clMiB + 60*clKiB, 8 * clKiB}, // straddles two blocks
	}
	clQemuIO(t, uri,
		"write -P 0x22 4M 64k",
		"write -P 0x33 8M 4k",
		"write -P 0x44 16M 1M",
		"write -z 30M 128k",
		"discard 40M 64k",
		"write -P 0x55 52428900 1000",
		"write -P 0x66 67043328 64k",
		"write -P 0x67 12644352 8k",
	)
	want := clBlocks(changes)
	s1 := d.Snapshot(t, v.UUID)
	s1uri := d.URI(t, s1.UUID)

	if got := clChangedBlocks(t, d, s0.UUID, s1.UUID, size); !slices.Equal(got, want) {
		t.Errorf("list_changed_blocks(S0 -> S1) blocks %v, want %v", got, want)
	}
	if got := clDirtyFromMap(t, s1uri, ctx, size); !slices.Equal(got, want) {
		t.Errorf("nbdinfo --map=%s on S1: dirty blocks %v, want %v", ctx, got, want)
	}
	if got := clDirtyFromMap(t, uri, ctx, size); !slices.Equal(got, want) {
		t.Errorf("nbdinfo --map=%s on the VDI: dirty blocks %v, want %v", ctx, got, want)
	}

	// qemu's view through x-dirty-bitmap is inverted: dirty = "data": false.
	host, port, _ := net.SplitHostPort(d.NBDHost)
	opts := "driver=nbd,server.type=inet,server.host=" + host + ",server.port=" + port +
		",export=" + d.ExportName(t, s1.UUID) + ",x-dirty-bitmap=" + ctx
	qm := clQemuImgMap(t, size, "--image-opts", opts)
	var qdirty [][2]int64
	for _, r := range clRanges(qm, clQemuSpan, func(e clQemuMap) bool { return !e.Data }) {
		qdirty = append(qdirty, r)
	}
	if got := clBlocks(qdirty); !slices.Equal(got, want) {
		t.Errorf("qemu-img map x-dirty-bitmap: dirty blocks %v, want %v", got, want)
	}

	// The incremental: S0's full copy plus S1's dirty extents equals S1.
	inc := filepath.Join(dir, "inc.raw")
	if err := os.WriteFile(inc, clReadFile(t, full0), 0o600); err != nil {
		t.Fatal(err)
	}
	full1 := filepath.Join(dir, "s1.raw")
	vdiskdtest.RunTool(t, "nbdcopy", s1uri, full1)
	s1data := clReadFile(t, full1)
	if bytes.Equal(clReadFile(t, inc), s1data) {
		t.Fatal("S0 and S1 have the same content: the test proves nothing")
	}
	out, err := vdiskdtest.ToolCmd(t, "/usr/bin/python3", filepath.Join("testdata", "clients", "apply_dirty.py"), s1uri, ctx, inc).Output()
	if err != nil {
		t.Fatalf("apply_dirty.py: %v", clErrOut(err))
	}
	var copied [][2]int64
	if err := json.Unmarshal(out, &copied); err != nil {
		t.Fatalf("apply_dirty.py: %v\n%s", err, out)
	}
	if got := clBlocks(copied); !slices.Equal(got, want) {
		t.Errorf("apply_dirty.py copied blocks %v, want %v", got, want)
	}
	if got := clReadFile(t, inc); !bytes.Equal(got, s1data) {
		t.Errorf("S0 + dirty extents of S1 (md5 %x) differs from S1 (md5 %x)", md5.Sum(got), md5.Sum(s1data))
	}

	// Writes after S1 show at once on the live VDI's bitmap; S1's stays.
	clQemuIO(t, uri, "write -P 0x77 2M 64k")
	want2 := clBlocks(append(slices.Clone(changes), [2]int64{2 * clMiB, 64 * clKiB}))
	if got := clDirtyFromMap(t, uri, ctx, size); !slices.Equal(got, want2) {
		t.Errorf("live VDI after another write: dirty blocks %v, want %v", got, want2)
	}
	if got := clDirtyFromMap(t, s1uri, ctx, size); !slices.Equal(got, want) {
		t.Errorf("S1 after a write to the VDI: dirty blocks %v, want %v", got, want)
	}
	// An unknown bitmap is not offered.
	if rc, out := clNbdinfoRC(t, "--map=qemu:dirty-bitmap:"+v.UUID, s1uri); rc == 0 {
		t.Errorf("nbdinfo --map of an unknown bitmap succeeded:\n%s", out)
	}

	// A third snapshot: its bitmaps against S0 and S1.
	s2 := d.Snapshot(t, v.UUID)
	s2uri := d.URI(t, s2.UUID)
	if got := clDirtyFromMap(t, s2uri, ctx, size); !slices.Equal(got, want2) {
		t.Errorf("S2's qemu:dirty-bitmap:S0: %v, want %v", got, want2)
	}
	if got := clDirtyFromMap(t, s2uri, "qemu:dirty-bitmap:"+s1.UUID, size); !slices.Equal(got, []int64{32}) {
		t.Errorf("S2's qemu:dirty-bitmap:S1: %v, want [32]", got)
	}

	// XenServer's routine after a backup: data_destroy the old snapshot. Its
	// export goes, its changed-block metadata (and so the bitmap) stays.
	d.MustCall(t, http.MethodPost, "/vdis/"+s0.UUID+"/data_destroy", nil, nil)
	var eb api.ErrorBody
	if st := d.Call(t, http.MethodGet, "/vdis/"+s0.UUID+"/nbd_info", nil, &eb); st < 400 {
		t.Errorf("get_nbd_info of a cbt_metadata snapshot: HTTP %d", st)
	} else {
		t.Logf("get_nbd_info of a cbt_metadata snapshot: HTTP %d %+v", st, eb)
	}
	// qemu prints the server's message (nbdinfo 1.14 does not).
	if rc, out := vdiskdtest.ExecTool(t, "qemu-img", "info", s0uri); rc == 0 || !strings.Contains(out, "cbt_metadata") {
		t.Errorf("qemu-img info of a cbt_metadata snapshot: exit %d, want a refusal naming cbt_metadata\n%s", rc, out)
	}
	if got := clDirtyFromMap(t, s2uri, ctx, size); !slices.Equal(got, want2) {
		t.Errorf("S2's qemu:dirty-bitmap:S0 after S0's data_destroy: %v, want %v", got, want2)
	}
	if got := clNbdinfo(t, s2uri).Exports[0].Contexts; !slices.Contains(got, ctx) || !slices.Contains(got, "qemu:dirty-bitmap:"+s1.UUID) {
		t.Errorf("S2's contexts after S0's data_destroy: %q", got)
	}
}

// ---------------------------------------------------------------------------
// libnbd (nbdsh): the commands qemu does not send, and multi-conn.

// clNbdsh runs a python snippet under nbdsh connected to uri; env adds
// variables for it.
func clNbdsh(t *testing.T, uri, script string, env ...string) string {
	t.Helper()
	cmd := vdiskdtest.ToolCmd(t, "nbdsh", "-u", uri, "-c", script)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nbdsh: %v\n%s", err, out)
	}
	return string(out)
}

func clTestNbdsh(t *testing.T, d *daemon) {
	v := d.CreateVDI(t, "nbdsh", 16*clMiB)
	uri := d.URI(t, v.UUID)
	clNbdsh(t, uri, `
import errno, os
x = b"x" * 4096
h.pwrite(x, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == x
h.pwrite(b"y" * (1 << 20), 1 << 20)
h.zero(65536, 1 << 20)                          # may punch
h.zero(65536, (1 << 20) + 65536, nbd.CMD_FLAG_NO_HOLE)
h.zero(65536, (1 << 20) + 131072, nbd.CMD_FLAG_FAST_ZERO)
try:
    # vdiskd: zeroing part of a 4 KiB block is a read-modify-write, so
    # FAST_ZERO refuses it with ENOTSUP and changes nothing.
    h.zero(512, (1 << 20) + 262144 + 512, nbd.CMD_FLAG_FAST_ZERO)
    raise SystemExit("FAST_ZERO of a partial 4 KiB block succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOTSUP, e
h.trim(65536, (1 << 20) + 196608, nbd.CMD_FLAG_FUA)
# An unaligned TRIM: vdiskd discards only the whole 4 KiB blocks inside it
# (mgmt/nbd.go) and leaves the partial blocks' bytes alone.
h.pwrite(b"\x44" * 16384, 8 << 20)
h.trim(12288, (8 << 20) + 2048)
assert h.pread(2048, 8 << 20) == b"\x44" * 2048
assert h.pread(8192, (8 << 20) + 4096) == bytes(8192)
assert h.pread(2048, (8 << 20) + 14336) == b"\x44" * 2048
h.flush()
h.cache(1 << 20, 0)
assert h.pread(196608, 1 << 20) == bytes(196608)
assert h.pread(4096, (1 << 20) + 262144) == b"y" * 4096
assert h.pread(65536, (1 << 20) + 327680) == b"y" * 65536

# CAN_MULTI_CONN: what one connection wrote and flushed, another reads.
h2 = nbd.NBD()
h2.connect_uri(os.environ["CL_URI"])
for i in range(16):
    data = os.urandom(65536)
    off = (4 << 20) + i * 200704
    h.pwrite(data, off)
    h.flush()
    assert h2.pread(65536, off) == data, "connection 2 does not see write %d" % i
    h2.pwrite(data[::-1], off)
    h2.flush()
    assert h.pread(65536, off) == data[::-1], "connection 1 does not see write %d" % i
h2.shutdown()
`, "CL_URI="+uri)

	// A snapshot answers FLUSH and CACHE (advertised) but not writes.
	s := d.Snapshot(t, v.UUID)
	clNbdsh(t, d.URI(t, s.UUID), `
import errno
assert h.is_read_only()
h.flush()
h.cache(65536, 0)
assert h.pread(4096, 0) == b"x" * 4096
h.set_strict_mode(0)
for f in (lambda: h.pwrite(b"z" * 4096, 0), lambda: h.zero(4096, 0), lambda: h.trim(4096, 0)):
    try:
        f()
        raise SystemExit("a snapshot took a write")
    except nbd.Error as e:
        assert e.errnum == errno.EPERM, e
assert h.pread(4096, 0) == b"x" * 4096
`)
}

// ---------------------------------------------------------------------------
// A snapshot taken while a client is connected and writing: the snapshot
// holds what was written before it, the connection goes on writing to the
// VDI, and CBT sees exactly the writes in between.

func clTestLiveSnapshot(t *testing.T, d *daemon) {
	const size = 16 * clMiB
	v := d.CreateVDI(t, "live-snapshot", size)
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	out := clNbdsh(t, d.URI(t, v.UUID), `
import json, os, urllib.request
def snapshot():
    r = urllib.request.Request(os.environ["CL_API"] + "/vdis/" + os.environ["CL_VDI"] + "/snapshot", method="POST",
                               headers={"Authorization": "Bearer " + os.environ["CL_TOKEN"]})
    return json.load(urllib.request.urlopen(r))["uuid"]
h.pwrite(b"\x01" * 65536, 0)
h.flush()
s0 = snapshot()
h.pwrite(b"\x02" * 65536, 1 << 20)
h.pwrite(b"\x03" * 65536, 0)       # overwrites what S0 holds
s1 = snapshot()
h.pwrite(b"\x04" * 65536, 2 << 20)
h.flush()
assert h.pread(65536, 0) == b"\x03" * 65536
print(json.dumps([s0, s1]))
`, "CL_API="+d.API, "CL_VDI="+v.UUID, "CL_TOKEN="+d.Token)
	var snaps []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &snaps); err != nil || len(snaps) != 2 {
		t.Fatalf("nbdsh: %v\n%s", err, out)
	}
	s0, s1 := snaps[0], snaps[1]
	clQemuIOArgs(t, []string{"-r", "-f", "raw", d.URI(t, s0)}, "read -P 1 0 64k", "read -P 0 64k 15M")
	clQemuIOArgs(t, []string{"-r", "-f", "raw", d.URI(t, s1)}, "read -P 3 0 64k", "read -P 2 1M 64k", "read -P 0 2M 64k")
	clQemuIO(t, d.URI(t, v.UUID), "read -P 3 0 64k", "read -P 2 1M 64k", "read -P 4 2M 64k")
	want := []int64{0, 16}
	if got := clChangedBlocks(t, d, s0, s1, size); !slices.Equal(got, want) {
		t.Errorf("list_changed_blocks(S0 -> S1): %v, want %v", got, want)
	}
	if got := clDirtyFromMap(t, d.URI(t, s1), "qemu:dirty-bitmap:"+s0, size); !slices.Equal(got, want) {
		t.Errorf("S1's qemu:dirty-bitmap:S0: %v, want %v", got, want)
	}
	if got := clDirtyFromMap(t, d.URI(t, v.UUID), "qemu:dirty-bitmap:"+s1, size); !slices.Equal(got, []int64{32}) {
		t.Errorf("the VDI's qemu:dirty-bitmap:S1: %v, want [32]", got)
	}
}

// ---------------------------------------------------------------------------
// on_boot=reset: every first writable attach starts from the content the
// VDI had when reset was set.

func clTestOnBootReset(t *testing.T, d *daemon) {
	v := d.CreateVDI(t, "on-boot", 16*clMiB)
	uri := d.URI(t, v.UUID)
	clQemuIO(t, uri, "write -P 0x0a 0 1M")
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/set_on_boot", map[string]any{"value": "reset"}, nil)
	clQemuIO(t, uri, "read -P 0x0a 0 1M", "write -P 0x0b 0 64k", "write -P 0x0b 2M 64k", "read -P 0x0b 0 64k")
	clQemuIO(t, uri, "read -P 0x0a 0 1M", "read -P 0 2M 64k")
	ext := clMap(t, uri, "", 16*clMiB)
	clExpectTypes(t, ext, 0, clMiB, "the reset base", clIsData)
	clExpectTypes(t, ext, clMiB, 15*clMiB, "after the reset", clIsHoleZero)
}

// ---------------------------------------------------------------------------
// A 64 GiB VDI with three small writes: offsets past 4 GiB, block status
// and copies that are proportional to the data, CBT at that size.

func clTestLargeSparse(t *testing.T, d *daemon) {
	const size = 64 << 30
	v := d.CreateVDI(t, "large", size)
	uri := d.URI(t, v.UUID)
	last := int64(size - 64*clKiB)
	clQemuIO(t, uri, "write -P 1 0 1M", "write -P 2 40G 64k", fmt.Sprintf("write -P 3 %d 64k", last))
	data := [][2]int64{{0, clMiB}, {40 << 30, 64 * clKiB}, {last, 64 * clKiB}}

	ext := clMap(t, uri, "", size)
	got := clRanges(ext, func(e clExtent) (int64, int64) { return e.Offset, e.Length }, func(e clExtent) bool { return e.Type == 0 })
	if !slices.Equal(got, data) {
		t.Errorf("nbdinfo --map: data %v, want %v", got, data)
	}
	for _, g := range clGaps(data, size) {
		clExpectTypes(t, ext, g[0], g[1], "never written", clIsHoleZero)
	}
	m := clQemuImgMap(t, size, "-f", "raw", uri)
	if got := clRanges(m, clQemuSpan, func(e clQemuMap) bool { return e.Data }); !slices.Equal(got, data) {
		t.Errorf("qemu-img map: data %v, want %v", got, data)
	}
	// nbdcopy skips the holes: reading 64 GiB of zeros would take minutes.
	start := time.Now()
	vdiskdtest.RunTool(t, "nbdcopy", uri, "null:")
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("nbdcopy of a 64 GiB VDI holding 1.1 MiB took %v", el)
	}
	clQemuIO(t, uri, fmt.Sprintf("read -P 3 %d 64k", last), "read -P 2 40G 64k", "read -P 0 41G 1M")

	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	s0 := d.Snapshot(t, v.UUID)
	clQemuIO(t, uri, "write -P 5 10G 64k", "write -P 6 5G 1M", fmt.Sprintf("write -P 7 %d 512", last+512))
	want := clBlocks([][2]int64{{10 << 30, 64 * clKiB}, {5 << 30, clMiB}, {last, 512}})
	if got := clChangedBlocks(t, d, s0.UUID, v.UUID, size); !slices.Equal(got, want) {
		t.Errorf("list_changed_blocks: %v, want %v", got, want)
	}
	if got := clDirtyFromMap(t, uri, "qemu:dirty-bitmap:"+s0.UUID, size); !slices.Equal(got, want) {
		t.Errorf("qemu:dirty-bitmap: %v, want %v", got, want)
	}
}

// ---------------------------------------------------------------------------
// Four connections write interleaved 512-byte sectors of the same 4 KiB
// blocks, 64 requests in flight each: no write may lose another's bytes,
// and CBT sees every block.

func clTestSectorWriters(t *testing.T, d *daemon) {
	const size = 64 * clMiB
	const blocks = 4096 // 16 MiB
	v := d.CreateVDI(t, "sectors", size)
	uri := d.URI(t, v.UUID)
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	s0 := d.Snapshot(t, v.UUID)

	script := filepath.Join("testdata", "clients", "sector_writer.py")
	errs := make(chan error, 4)
	for c := 0; c < 4; c++ {
		go func() {
			out, err := vdiskdtest.ToolCmd(t, "/usr/bin/python3", script, uri, strconv.Itoa(c), strconv.Itoa(blocks)).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("writer %d: %v\n%s", c, err, out)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	data, err := vdiskdtest.ToolCmd(t, "nbdcopy", uri, "-").Output()
	if err != nil {
		t.Fatalf("nbdcopy: %v", clErrOut(err))
	}
	if int64(len(data)) != size {
		t.Fatalf("nbdcopy read %d bytes", len(data))
	}
	bad := 0
	for b := 0; b < blocks; b++ {
		for s := 0; s < 8; s++ {
			want := bytes.Repeat([]byte{byte((b*8+s)%251 + 1)}, 512)
			if off := b*4096 + s*512; !bytes.Equal(data[off:off+512], want) {
				if bad++; bad <= 5 {
					t.Errorf("sector %d of block %d (offset %d): % x..., want %02x", s, b, off, data[off:off+8], want[0])
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d sectors lost", bad, blocks*8)
	}
	if !bytes.Equal(data[blocks*4096:], make([]byte, size-blocks*4096)) {
		t.Error("data past the written range")
	}
	want := clBlocks([][2]int64{{0, blocks * 4096}})
	if got := clChangedBlocks(t, d, s0.UUID, v.UUID, size); !slices.Equal(got, want) {
		t.Errorf("list_changed_blocks: %v, want %v", got, want)
	}
}

// ---------------------------------------------------------------------------
// Clones share blocks with their origin: writes, zeroes and discards through
// a clone's export change the clone only.

// clExport is the whole content of an export, read by nbdcopy.
func clExport(t *testing.T, uri string) []byte {
	t.Helper()
	b, err := vdiskdtest.ToolCmd(t, "nbdcopy", uri, "-").Output()
	if err != nil {
		t.Fatalf("nbdcopy %s -: %v", uri, clErrOut(err))
	}
	return b
}

func clTestClone(t *testing.T, d *daemon) {
	const size = 16 * clMiB
	v := d.CreateVDI(t, "clone-origin", size)
	uri := d.URI(t, v.UUID)
	clQemuIO(t, uri, "write -P 0x50 0 8M")
	s := d.Snapshot(t, v.UUID)
	var c api.VDI
	d.MustCall(t, http.MethodPost, "/vdis/"+s.UUID+"/clone", nil, &c)
	curi, suri := d.URI(t, c.UUID), d.URI(t, s.UUID)

	before := clExport(t, suri)
	if got := clExport(t, curi); !bytes.Equal(got, before) {
		t.Fatal("a fresh clone differs from its snapshot")
	}
	clQemuIO(t, curi,
		"write -P 0x61 0 64k",        // over shared data
		"write -P 0x62 1048676 1000", // 1M+100: a partial block over shared data
		"write -z 2M 64k",            // zeroes over shared data (may punch)
		"discard 3M 64k",             // discards shared data
		"write -P 0x63 10M 64k",      // where the origin has a hole
	)
	clQemuIO(t, uri, "write -P 0x70 4M 64k") // the origin moves on too

	want := slices.Clone(before)
	fill := func(off, n int64, b byte) {
		for i := off; i < off+n; i++ {
			want[i] = b
		}
	}
	fill(0, 64*clKiB, 0x61)
	fill(clMiB+100, 1000, 0x62)
	fill(2*clMiB, 64*clKiB, 0)
	fill(3*clMiB, 64*clKiB, 0) // vdiskd's TRIM reads back as zeros
	fill(10*clMiB, 64*clKiB, 0x63)
	if got := clExport(t, curi); !bytes.Equal(got, want) {
		t.Errorf("the clone (md5 %x) is not the snapshot plus its writes (md5 %x)", md5.Sum(got), md5.Sum(want))
	}
	if got := clExport(t, suri); !bytes.Equal(got, before) {
		t.Error("writes to a clone changed its snapshot")
	}
	clQemuIO(t, uri, "read -P 0x50 0 4M", "read -P 0x70 4M 64k", "read -P 0x50 4259840 3932160", "read -P 0 8M 8M")

	ext := clMap(t, curi, "", size)
	clExpectTypes(t, ext, 64*clKiB, clMiB-64*clKiB, "shared data", clIsData)
	clExpectTypes(t, ext, 2*clMiB, 64*clKiB, "zeroed shared data", clIsZero)
	clExpectTypes(t, ext, 3*clMiB, 64*clKiB, "discarded shared data", clIsHoleZero)
	clExpectTypes(t, ext, 8*clMiB, 2*clMiB, "hole", clIsHoleZero)
	clExpectTypes(t, ext, 10*clMiB, 64*clKiB, "the clone's own write", clIsData)
}

// ---------------------------------------------------------------------------
// resize_online while a client is connected: the open connection keeps its
// size and goes on working; a new one sees the new size.

func clTestResizeOnline(t *testing.T, d *daemon) {
	v := d.CreateVDI(t, "resize", 16*clMiB)
	uri := d.URI(t, v.UUID)
	clNbdsh(t, uri, `
import json, os, urllib.request
def call(path, body):
    r = urllib.request.Request(os.environ["CL_API"] + "/vdis/" + os.environ["CL_VDI"] + path, method="POST",
                               data=json.dumps(body).encode(), headers={"Authorization": "Bearer " + os.environ["CL_TOKEN"]})
    return json.load(urllib.request.urlopen(r))
end = 16 << 20
h.pwrite(b"\x01" * 65536, end - 65536)
assert call("/resize_online", {"size": 32 << 20})["virtual_size"] == 32 << 20
assert h.get_size() == end
h.pwrite(b"\x02" * 65536, end - 65536)
assert h.pread(65536, end - 65536) == b"\x02" * 65536
h2 = nbd.NBD()
h2.connect_uri(os.environ["CL_URI"])
assert h2.get_size() == 32 << 20, h2.get_size()
assert h2.pread(65536, end - 65536) == b"\x02" * 65536
assert h2.pread(65536, end) == bytes(65536)
h2.pwrite(b"\x03" * 65536, (32 << 20) - 65536, nbd.CMD_FLAG_FUA)
assert h.pread(65536, end - 65536) == b"\x02" * 65536
h2.shutdown()
`, "CL_API="+d.API, "CL_VDI="+v.UUID, "CL_TOKEN="+d.Token, "CL_URI="+uri)
	ext := clMap(t, uri, "", 32*clMiB)
	clExpectTypes(t, ext, 16*clMiB-64*clKiB, 64*clKiB, "written before the resize", clIsData)
	clExpectTypes(t, ext, 16*clMiB, 16*clMiB-64*clKiB, "grown", clIsHoleZero)
	clExpectTypes(t, ext, 32*clMiB-64*clKiB, 64*clKiB, "written past the old end", clIsData)
}

// ---------------------------------------------------------------------------
// Durability: what the server acknowledged with FUA or FLUSH survives a
// SIGKILL of the daemon with the client still connected (no clean close, no
// flush on disconnect). A SIGKILL leaves the kernel's page cache alone, so
// this proves the daemon holds no acknowledged data in its own memory; it
// cannot prove fsync against power loss.

func TestNBDClientsCrashDurability(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdsh", "qemu-io")
	dataDir := t.TempDir()
	d := launchVdiskd(t, dataDir)
	d.Token = d.Login(t, "admin", testAdminPassword)
	v := d.CreateVDI(t, "durable", 16*clMiB)
	clQemuIO(t, d.URI(t, v.UUID), "write -P 0x99 2M 1M")
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	s0 := d.Snapshot(t, v.UUID)

	// One connection: FUA write, plain write + FLUSH, FUA zero, FUA trim;
	// then the daemon dies with the connection still open.
	script := `
import os, signal
h.pwrite(b"\xa5" * 65536, 0, nbd.CMD_FLAG_FUA)
h.pwrite(b"\x5a" * 65536, 1 << 20)
h.pwrite(b"\x5b" * 4096, (1 << 20) + 65536)
h.flush()
h.zero(512 * 1024, 2 << 20, nbd.CMD_FLAG_FUA)
h.trim(65536, (3 << 20) - 65536, nbd.CMD_FLAG_FUA)
os.kill(int(os.environ["CL_VDISKD_PID"]), signal.SIGKILL)
os._exit(0)
`
	cmd := vdiskdtest.ToolCmd(t, "nbdsh", "-u", d.URI(t, v.UUID), "-c", script)
	cmd.Env = append(cmd.Env, "CL_VDISKD_PID="+strconv.Itoa(d.PID()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nbdsh: %v\n%s", err, out)
	}
	d.WaitExit(t, 10*time.Second) // the script killed it

	d2 := launchVdiskd(t, dataDir)
	d2.Token = d2.Login(t, "admin", testAdminPassword)
	clQemuIOArgs(t, []string{"-r", "-f", "raw", d2.URI(t, v.UUID)},
		"read -P 0xa5 0 64k",
		"read -P 0x5a 1M 64k",
		"read -P 0x5b 1114112 4k",
		"read -P 0 2M 512k",
		"read -P 0x99 2621440 458752", // 2.5M up to the trimmed block
		"read -P 0 3080192 64k",
	)
	// CBT after a crash may over-report, never under-report
	// (blockstore/doc.go): every block written above is still changed.
	written := clBlocks([][2]int64{{0, 64 * clKiB}, {clMiB, 68 * clKiB}, {2 * clMiB, 512 * clKiB}, {3*clMiB - 64*clKiB, 64 * clKiB}})
	got := clChangedBlocks(t, d2, s0.UUID, v.UUID, 16*clMiB)
	t.Logf("changed blocks after the crash: %v (written %v)", got, written)
	for _, b := range written {
		if !slices.Contains(got, b) {
			t.Errorf("list_changed_blocks after a crash lost block %d: %v, want all of %v", b, got, written)
		}
	}
	if m := clDirtyFromMap(t, d2.URI(t, v.UUID), "qemu:dirty-bitmap:"+s0.UUID, 16*clMiB); !slices.Equal(m, got) {
		t.Errorf("qemu:dirty-bitmap after the crash %v, list_changed_blocks %v", m, got)
	}
}

// ---------------------------------------------------------------------------
// 7. TLS: nbds:// with a CA-signed certificate; plain NBD is refused.

// clWriteCerts writes ca-cert.pem, server-cert.pem and server-key.pem (the
// layout libnbd, nbdkit and qemu's tls-creds-x509 read) for localhost and
// 127.0.0.1, and returns the CA pool and the server certificate PEM.
func clWriteCerts(t *testing.T, dir string) (*x509.CertPool, string) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vdiskd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	for name, data := range map[string][]byte{
		"ca-cert.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"server-cert.pem": []byte(certPEM),
		"server-key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certPEM
}

// clHTTPS is a REST call to a TLS daemon (the harness's client knows no CA).
func clHTTPS(t *testing.T, c *http.Client, method, u, token string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	} else {
		req.SetBasicAuth("admin", testAdminPassword)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d %s", method, u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s %s: %v\n%s", method, u, err, b)
	}
}

func TestNBDClientsTLS(t *testing.T) {
	vdiskdtest.RequireTool(t, "nbdinfo", "qemu-img", "qemu-io")
	certDir := t.TempDir()
	pool, certPEM := clWriteCerts(t, certDir)
	d := launchVdiskd(t, t.TempDir(), "--tls-cert", filepath.Join(certDir, "server-cert.pem"),
		"--tls-key", filepath.Join(certDir, "server-key.pem"))
	if !strings.HasPrefix(d.API, "https://") || !strings.Contains(d.Log(), "nbd=nbds://") {
		t.Fatalf("not TLS:\n%s", d.Log())
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var tok struct{ Token string }
	clHTTPS(t, hc, http.MethodPost, d.API+"/token", "", nil, &tok)
	var v api.VDI
	clHTTPS(t, hc, http.MethodPost, d.API+"/vdis", tok.Token, map[string]any{"name_label": "tls", "virtual_size": 16 * clMiB}, &v)
	var infos []api.NBDInfo
	clHTTPS(t, hc, http.MethodGet, d.API+"/vdis/"+v.UUID+"/nbd_info", tok.Token, nil, &infos)
	if len(infos) != 1 {
		t.Fatalf("get_nbd_info: %+v", infos)
	}
	info := infos[0]
	host, port, _ := net.SplitHostPort(d.NBDHost)

	// get_nbd_info over TLS: nbds://, the certificate, and a subject that
	// verifies against the CA.
	wantURI := "nbds://" + d.NBDHost + "/" + url.PathEscape(info.ExportName)
	if info.URI != wantURI || info.Address != host || strconv.Itoa(info.Port) != port {
		t.Errorf("get_nbd_info: %+v, want uri %s", info, wantURI)
	}
	if info.Cert != certPEM {
		t.Errorf("get_nbd_info cert:\n%s\nwant:\n%s", info.Cert, certPEM)
	}
	if blk, _ := pem.Decode([]byte(info.Cert)); blk == nil {
		t.Error("get_nbd_info cert is not PEM")
	} else if leaf, err := x509.ParseCertificate(blk.Bytes); err != nil {
		t.Error(err)
	} else if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: info.Subject}); err != nil || info.Subject != "localhost" {
		t.Errorf("subject %q: %v", info.Subject, err)
	}

	tlsURI := info.URI + "?tls-certificates=" + certDir
	t.Run("nbdinfo nbds", func(t *testing.T) {
		out, err := vdiskdtest.ToolCmd(t, "nbdinfo", "--json", tlsURI).Output()
		if err != nil {
			t.Fatalf("nbdinfo %s: %v", tlsURI, clErrOut(err))
		}
		var ni clInfo
		if err := json.Unmarshal(out, &ni); err != nil || len(ni.Exports) != 1 {
			t.Fatalf("nbdinfo --json: %v\n%s", err, out)
		}
		if !ni.TLS || !ni.Structured || ni.Exports[0].ExportSize != 16*clMiB || ni.Exports[0].IsReadOnly {
			t.Errorf("nbdinfo over TLS: %s", out)
		}
	})

	t.Run("qemu tls-creds-x509", func(t *testing.T) {
		obj := "tls-creds-x509,id=t0,endpoint=client,dir=" + certDir
		opts := "driver=nbd,server.type=inet,server.host=" + host + ",server.port=" + port +
			",export=" + info.ExportName + ",tls-creds=t0,tls-hostname=localhost"
		var qi struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		if err := json.Unmarshal([]byte(vdiskdtest.RunTool(t, "qemu-img", "info", "--output=json", "--object", obj, "--image-opts", opts)), &qi); err != nil {
			t.Fatal(err)
		}
		if qi.VirtualSize != 16*clMiB {
			t.Errorf("qemu-img info over TLS: virtual-size %d", qi.VirtualSize)
		}
		// The data path over TLS, then read back over a new TLS connection.
		open := []string{"--object", obj, "--image-opts", opts}
		clQemuIOArgs(t, open, "write -P 0x42 0 1M", "write -P 0x43 15M 1M", "read -P 0x42 0 1M")
		clQemuIOArgs(t, open, "read -P 0x42 0 1M", "read -P 0x43 15M 1M", "read -P 0 1M 14M")
		if rc, out := vdiskdtest.ExecTool(t, "nbdinfo", "--map", tlsURI); rc != 0 || !strings.Contains(out, "data") {
			t.Errorf("nbdinfo --map over TLS: exit %d\n%s", rc, out)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		// Plain NBD to a server that requires TLS.
		plain := "nbd://" + strings.TrimPrefix(info.URI, "nbds://")
		rc, out := clNbdinfoRC(t, "--size", plain)
		t.Logf("nbdinfo over plain NBD: exit %d\n%s", rc, out)
		if rc == 0 || !strings.Contains(out, "requires TLS") {
			t.Errorf("nbdinfo over plain NBD: exit %d, want a TLS refusal:\n%s", rc, out)
		}
		opts := "driver=nbd,server.type=inet,server.host=" + host + ",server.port=" + port + ",export=" + info.ExportName
		rc, out = vdiskdtest.ExecTool(t, "qemu-img", "info", "--image-opts", opts)
		t.Logf("qemu-img info without TLS: exit %d\n%s", rc, out)
		if rc == 0 || !strings.Contains(out, "TLS") {
			t.Errorf("qemu-img info without TLS: exit %d, want a TLS refusal:\n%s", rc, out)
		}
		// TLS with another CA: the client rejects the certificate, so the
		// successes above did verify the server's.
		other := t.TempDir()
		clWriteCerts(t, other)
		for _, f := range []string{"server-cert.pem", "server-key.pem"} {
			os.Remove(filepath.Join(other, f))
		}
		rc, out = clNbdinfoRC(t, "--size", info.URI+"?tls-certificates="+other)
		t.Logf("nbdinfo trusting another CA: exit %d\n%s", rc, out)
		if rc == 0 || !strings.Contains(out, "certificate") {
			t.Errorf("nbdinfo with another CA: exit %d, want a certificate failure:\n%s", rc, out)
		}
	})
}
