package systest

// Protocol conformance of the NBD server, proved with nbdsh (libnbd's
// python shell) against the real vdiskd binary: every command, every
// error value, negotiation, LIST and meta contexts, dirty bitmaps,
// multi-conn, shutdown, and XenAPI's attach rules seen through REST while
// a client holds an export. The python scripts are in testdata/nbdsh; each
// asserts and exits non-zero on failure.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
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

const protoScriptDir = "testdata/nbdsh"

// protoBoot runs a script under nbdsh: nbdsh takes only -c statements, so
// this sets sys.argv, runs the file and turns any exception into a
// traceback and exit 1 (nbdsh itself would print only an nbd.Error's
// message). No __pycache__ is left in testdata.
const protoBoot = `import sys, os, runpy, traceback
sys.dont_write_bytecode = True
sys.argv = %s
sys.path.insert(0, os.path.dirname(sys.argv[0]))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    raise
except BaseException:
    traceback.print_exc()
    sys.exit(1)
`

// protoNBDSh builds the nbdsh command for a script and its arguments.
func protoNBDSh(t *testing.T, ctx context.Context, script string, args ...string) *exec.Cmd {
	t.Helper()
	vdiskdtest.RequireTool(t, "nbdsh")
	abs, err := filepath.Abs(filepath.Join(protoScriptDir, script))
	if err != nil {
		t.Fatal(err)
	}
	argv, _ := json.Marshal(append([]string{abs}, args...))
	cmd := vdiskdtest.ToolCmd(t, "nbdsh", "-n", "-c", fmt.Sprintf(protoBoot, argv))
	if ctx != nil {
		c2 := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		c2.Env = cmd.Env
		cmd = c2
	}
	return cmd
}

// protoRun runs a script with cfg (JSON) as its argument and fails the
// test with the script's output if it exits non-zero.
func protoRun(t *testing.T, d *daemon, script string, cfg any) string {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := protoNBDSh(t, ctx, script, string(b)).CombinedOutput()
	if err != nil {
		log := ""
		if d != nil {
			log = "\n--- vdiskd log (tail) ---\n" + vdiskdtest.Tail(d.Log(), 30)
		}
		t.Fatalf("nbdsh %s: %v\n%s%s", script, err, out, log)
	}
	if len(out) > 0 {
		t.Logf("nbdsh %s:\n%s", script, out)
	}
	return string(out)
}

// protoSession is session.py: an nbdsh process holding NBD connections
// open while the test talks REST, driven one command line at a time.
type protoSession struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	out   *vdiskdtest.Buffer
}

func protoStartSession(t *testing.T) *protoSession {
	t.Helper()
	p := &protoSession{cmd: protoNBDSh(t, nil, "session.py"), lines: make(chan string, 16), out: &vdiskdtest.Buffer{}}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out.Write([]byte(sc.Text() + "\n"))
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// Do sends one command and returns the answer line ("ok ..." or
// "error ...").
func (p *protoSession) Do(t *testing.T, format string, args ...any) string {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("session %q: %v\n%s", line, err, p.out)
	}
	select {
	case ans, ok := <-p.lines:
		if !ok {
			t.Fatalf("session %q: the script ended\n%s", line, p.out)
		}
		return ans
	case <-time.After(30 * time.Second):
		t.Fatalf("session %q: no answer in 30s\n%s", line, p.out)
	}
	return ""
}

// MustDo is Do that fails the test unless the answer starts with "ok".
func (p *protoSession) MustDo(t *testing.T, format string, args ...any) string {
	t.Helper()
	ans := p.Do(t, format, args...)
	if !strings.HasPrefix(ans, "ok") {
		t.Fatalf("session %q: %s\n%s", fmt.Sprintf(format, args...), ans, p.out)
	}
	return ans
}

// protoExportName is the token-auth export name of a VDI for a token.
func protoExportName(uuid, token string) string { return "/" + uuid + "?session_id=" + token }

// protoURI is the nbd:// URI of an export name on the daemon.
func protoURI(d *daemon, exportName string) string {
	u := url.URL{Scheme: "nbd", Host: d.NBDHost, Path: "/" + exportName, RawPath: "/" + url.PathEscape(exportName)}
	return u.String()
}

// protoUser creates a user with a role and returns a token for it.
func protoUser(t *testing.T, d *daemon, name, role string) string {
	t.Helper()
	pw := "pw-" + name + "-secret"
	d.MustCall(t, http.MethodPost, "/users", map[string]any{"username": name, "password": pw, "role": role}, nil)
	return d.Login(t, name, pw)
}

// protoWaitVBDs waits until the VDI record lists n VBDs (detaching
// follows the client's disconnect asynchronously).
func protoWaitVBDs(t *testing.T, d *daemon, vdi string, n int) api.VDI {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := d.VDI(t, vdi)
		if len(v.VBDs) == n {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("VDI %s: VBDs %v, want %d\n%s", vdi, v.VBDs, n, vdiskdtest.Tail(d.Log(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// protoExpectError checks a REST call fails with status and code.
func protoExpectError(t *testing.T, d *daemon, token, method, path string, body any, status int, code string) api.ErrorBody {
	t.Helper()
	var eb api.ErrorBody
	st := d.CallAs(t, token, method, path, body, &eb)
	got := ""
	if eb.Error != nil {
		got = eb.Error.Error()
	}
	if st != status || eb.Error == nil || eb.Error.Code != code {
		t.Errorf("%s %s: HTTP %d %s, want %d %s", method, path, st, got, status, code)
	}
	return eb
}

// TestNBDProtocolCommands: READ (holes, DF over data and hole, FUA), WRITE
// with and without FUA up to 32 MiB, FLUSH, TRIM (rounded inward, holes
// after), WRITE_ZEROES (NO_HOLE = allocated zero 2, plain = hole 3, aligned
// FAST_ZERO, FUA, partial block), CACHE, BLOCK_STATUS with and without
// REQ_ONE, 64 pipelined requests, DISC; the advertised flags and block
// sizes; and the VBD goes away after the client does.
func TestNBDProtocolCommands(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "cmds", 64<<20)
	protoRun(t, d, "commands.py", map[string]any{"uri": d.URI(t, v.UUID), "name": "cmds"})
	protoWaitVBDs(t, d, v.UUID, 0)
}

// TestNBDProtocolErrors: EINVAL past the end, misaligned (the client asked
// for INFO_BLOCK_SIZE), for unknown or inapplicable flags on every command
// and for BLOCK_STATUS without a context; ENOSPC for WRITE and
// WRITE_ZEROES past the end; EOVERFLOW for READ over 32 MiB; ENOTSUP for an
// unaligned FAST_ZERO (and nothing changes); the connection survives every
// error. Also: a client that did not ask for block sizes may be unaligned,
// and without structured replies errors come as simple replies.
func TestNBDProtocolErrors(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "errs", 64<<20)
	protoRun(t, d, "errors.py", map[string]any{"uri": d.URI(t, v.UUID)})
}

// TestNBDProtocolReadOnly: a snapshot exports read-only (0x058f with
// structured replies, 0x050f without) with the content it was taken with;
// WRITE, TRIM and WRITE_ZEROES get EPERM.
func TestNBDProtocolReadOnly(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "ro", 16<<20)
	uri := d.URI(t, v.UUID)
	protoRun(t, d, "prep.py", map[string]any{"uri": uri, "writes": [][3]int{{0, 1 << 20, 0x5a}}})
	snap := d.Snapshot(t, v.UUID)
	protoRun(t, d, "prep.py", map[string]any{"uri": uri, "writes": [][3]int{{0, 64 << 10, 0x11}, {1 << 20, 64 << 10, 0x12}}})
	protoRun(t, d, "readonly.py", map[string]any{"uri": d.URI(t, snap.UUID), "addr": d.NBDHost,
		"export": d.ExportName(t, snap.UUID)})
	protoWaitVBDs(t, d, snap.UUID, 0)
}

// TestNBDProtocolTransmitRaw: the wire shapes libnbd hides or will not
// send: simple replies for commands without data, OFFSET_DATA/OFFSET_HOLE
// chunks, DONE placement, ERROR chunks with the request's cookie, unknown
// commands (EINVAL), out-of-order pipelining, DISC after an in-flight WRITE
// (answered, then the server closes), EXPORT_NAME with and without
// NO_ZEROES and structured replies, a hang-up for an unexportable
// EXPORT_NAME and for WRITE payloads over 32 MiB.
func TestNBDProtocolTransmitRaw(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "raw", 64<<20)
	protoRun(t, d, "transmit_raw.py", map[string]any{"addr": d.NBDHost, "export": d.ExportName(t, v.UUID),
		"uri": d.URI(t, v.UUID)})
	protoWaitVBDs(t, d, v.UUID, 0)
}

// protoCBTMetadata makes a cbt_metadata VDI: a CBT snapshot after
// data_destroy. It returns the live VDI and the cbt_metadata snapshot.
func protoCBTMetadata(t *testing.T, d *daemon, name string) (live, meta api.VDI) {
	t.Helper()
	live = d.CreateVDI(t, name, 16<<20)
	d.MustCall(t, http.MethodPost, "/vdis/"+live.UUID+"/enable_cbt", nil, nil)
	meta = d.Snapshot(t, live.UUID)
	d.MustCall(t, http.MethodPost, "/vdis/"+meta.UUID+"/data_destroy", nil, &meta)
	if meta.Type != "cbt_metadata" {
		t.Fatalf("data_destroy: type %q", meta.Type)
	}
	return live, meta
}

// TestNBDProtocolNegotiation: with --nbd-auth token, export names need a
// valid session of a vm-admin or higher (a bad, revoked or empty token, a
// bare uuid, an unknown uuid, a vm-operator: ERR_UNKNOWN "no such export,
// or the session is not valid", for INFO, GO and both meta-context
// options); cbt_metadata VDIs are refused naming cbt_metadata; LIST is
// ERR_POLICY until a valid session was named (INFO or LIST_META_CONTEXT),
// then lists every exportable VDI with its session and name_label, and
// stops when the session is revoked; INFO then GO agree; flags 0x0d6d /
// 0x0ded; unknown options and EXTENDED_HEADERS get ERR_UNSUP, STARTTLS
// without TLS ERR_POLICY, options with stray data ERR_INVALID, and the
// data is always consumed; SET_META_CONTEXT selects exact names only;
// LIST_META_CONTEXT prefix queries; ABORT; unknown client flags.
func TestNBDProtocolNegotiation(t *testing.T) {
	d := startVdiskd(t)
	alpha := d.CreateVDI(t, "alpha", 64<<20)
	beta := d.CreateVDI(t, "beta", 4<<20)
	snap := d.Snapshot(t, beta.UUID)
	cbtLive, cbtMeta := protoCBTMetadata(t, d, "gamma")
	vdis := map[string]string{}
	for _, id := range []string{alpha.UUID, beta.UUID, snap.UUID, cbtLive.UUID} {
		vdis[id] = d.VDI(t, id).NameLabel
	}
	operator := protoUser(t, d, "op", "vm-operator")
	vmadmin := protoUser(t, d, "va", "vm-admin")
	revoked := d.Login(t, "admin", testAdminPassword)
	if st := d.CallAs(t, revoked, http.MethodDelete, "/token", nil, nil); st != http.StatusNoContent {
		t.Fatalf("logout: HTTP %d", st)
	}
	spare := d.Login(t, "admin", testAdminPassword)
	protoRun(t, d, "negotiate.py", map[string]any{
		"addr": d.NBDHost, "api": d.API, "uri": d.URI(t, alpha.UUID), "export": d.ExportName(t, alpha.UUID),
		"name": "alpha", "uuid": alpha.UUID, "token": d.Token, "other_export": d.ExportName(t, beta.UUID), "vdis": vdis, "cbtmeta": cbtMeta.UUID,
		"unknown": "6f1f7f0e-3a57-4c36-9d5e-0d8a3b1c2d4e", "operator_token": operator, "vmadmin_token": vmadmin,
		"revoked_token": revoked, "spare_token": spare,
	})
	protoWaitVBDs(t, d, alpha.UUID, 0)
}

// TestNBDProtocolDirtyBitmap: a CBT VDI offers qemu:dirty-bitmap:<snapshot>
// for each CBT base; LIST_META_CONTEXT with 0 queries, "base:" and
// "qemu:dirty-bitmap:"; SET_META_CONTEXT of exact names; base:allocation
// and the bitmap together, one chunk each, over 4 GiB-long requests of an
// 8 GiB sparse VDI; dirty flags only bit 0, at 64 KiB granularity, equal
// to list_changed_blocks; REQ_ONE; writes (on any connection) show at
// once on a live export; a read-only snapshot export has the bitmap of an
// older base.
func TestNBDProtocolDirtyBitmap(t *testing.T) {
	const KiB, GiB = 1 << 10, 1 << 30
	d := startVdiskd(t)
	v := d.CreateVDI(t, "big", 8*GiB)
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/enable_cbt", nil, nil)
	uri := d.URI(t, v.UUID)
	protoRun(t, d, "prep.py", map[string]any{"uri": uri, "writes": [][3]int{
		{0, 64 * KiB, 0x10}, {1 * GiB, 4 * KiB, 0x11}, {5 * GiB, 64 * KiB, 0x12}}})
	s1 := d.Snapshot(t, v.UUID)
	protoRun(t, d, "prep.py", map[string]any{"uri": uri, "writes": [][3]int{
		{4 * KiB, 4 * KiB, 0x20}, {2*GiB + 100*KiB, 8 * KiB, 0x21}, {6*GiB - 4*KiB, 8 * KiB, 0x22}}})
	s2 := d.Snapshot(t, v.UUID)
	protoRun(t, d, "prep.py", map[string]any{"uri": uri, "writes": [][3]int{{7 * GiB, 4 * KiB, 0x23}}})

	lcb := func(to string) int {
		var cb api.ChangedBlocks
		d.MustCall(t, http.MethodGet, "/vdis/"+to+"/list_changed_blocks?vdi_from="+s1.UUID, nil, &cb)
		return cb.ChangedBlocks
	}
	dirtyS2 := [][2]int{{0, 64 * KiB}, {2*GiB + 64*KiB, 64 * KiB}, {6*GiB - 64*KiB, 128 * KiB}}
	protoRun(t, d, "dirty.py", map[string]any{
		"addr": d.NBDHost, "uri": uri, "export": d.ExportName(t, v.UUID), "s1": s1.UUID, "s2": s2.UUID,
		"s2_uri": d.URI(t, s2.UUID),
		"data": [][2]int{{0, 64 * KiB}, {1 * GiB, 4 * KiB}, {2*GiB + 100*KiB, 8 * KiB}, {5 * GiB, 64 * KiB},
			{6*GiB - 4*KiB, 8 * KiB}, {7 * GiB, 4 * KiB}},
		"dirty_live": append(dirtyS2, [2]int{7 * GiB, 64 * KiB}), "dirty_s2": dirtyS2,
		"lcb_live": lcb(v.UUID), "lcb_s2": lcb(s2.UUID), "late": 3 * GiB,
	})

	// The backup flow: s1's data is destroyed (cbt_metadata), and its
	// bitmap is still there on s2 and on the live VDI.
	d.MustCall(t, http.MethodPost, "/vdis/"+s1.UUID+"/data_destroy", nil, nil)
	bm := func(id string) string { return "qemu:dirty-bitmap:" + id }
	protoRun(t, d, "bitmap.py", map[string]any{"uri": d.URI(t, s2.UUID),
		"contexts": []string{"base:allocation", bm(s1.UUID)}, "base": s1.UUID, "dirty": dirtyS2})
	protoRun(t, d, "bitmap.py", map[string]any{"uri": uri,
		"contexts": []string{"base:allocation", bm(s1.UUID), bm(s2.UUID)}, "base": s2.UUID,
		"dirty": [][2]int{{3 * GiB, 64 * KiB}, {3*GiB + 128*KiB, 64 * KiB}, {7 * GiB, 64 * KiB}}})
	// disable_cbt breaks the chain: no bitmaps on the live VDI any more.
	d.MustCall(t, http.MethodPost, "/vdis/"+v.UUID+"/disable_cbt", nil, nil)
	protoRun(t, d, "bitmap.py", map[string]any{"uri": uri, "contexts": []string{"base:allocation"}})
}

// TestNBDProtocolMultiConn: with CAN_MULTI_CONN, a write on one connection
// and a FLUSH on another make it visible everywhere, also for zero, trim
// and many pipelined writes over four connections.
//
// What was flushed (on any connection) or written with FUA survives kill -9
// (SPEC §2).
func TestNBDProtocolMultiConn(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "multi", 16<<20)
	protoRun(t, d, "multiconn.py", map[string]any{"uri": d.URI(t, v.UUID)})
	protoRun(t, d, "prep.py", map[string]any{"uri": d.URI(t, v.UUID), "fua": [][3]int{{8 << 20, 4096, 0x99}}})

	d.Kill(t)
	d2 := d.relaunch(t)
	want := [][3]int{{0, 64 << 10, 0}, {1 << 20, 4096, 0x82}, {8 << 20, 4096, 0x99}}
	for i := 0; i < 4; i++ {
		for j := 0; j < 16; j++ {
			want = append(want, [3]int{4<<20 + (16*i+j)*64<<10, 4096, 0x10*i + j})
		}
	}
	protoRun(t, d2, "prep.py", map[string]any{"uri": d2.URI(t, v.UUID), "expect": want})
}

// TestNBDProtocolAttachRules: XenAPI's rules while nbdsh holds exports
// open: each connection is a VBD in the VDI record (gone after
// disconnect); set_on_boot and destroy are refused with VDI_IN_USE;
// list_changed_blocks with vdi_to = an attached writable VDI is VDI_IN_USE,
// while a snapshot attached read-only does not block it; snapshot works
// while attached; everything works again after detaching.
func TestNBDProtocolAttachRules(t *testing.T) {
	d := startVdiskd(t, "--detach-grace", "300ms") // the refusals below come quicker
	plain := d.CreateVDI(t, "plain", 16<<20)
	tracked := d.CreateVDI(t, "tracked", 16<<20)
	d.MustCall(t, http.MethodPost, "/vdis/"+tracked.UUID+"/enable_cbt", nil, nil)
	s1 := d.Snapshot(t, tracked.UUID)
	lcbPath := func(to string) string { return "/vdis/" + to + "/list_changed_blocks?vdi_from=" + s1.UUID }
	onBoot := "/vdis/" + plain.UUID + "/set_on_boot"

	if v := d.VDI(t, plain.UUID); len(v.VBDs) != 0 {
		t.Fatalf("VBDs before any client: %v", v.VBDs)
	}
	p := protoStartSession(t)
	if ans := p.MustDo(t, "open plain %s", d.URI(t, plain.UUID)); ans != "ok 16777216 rw" {
		t.Fatalf("open: %s", ans)
	}
	v := protoWaitVBDs(t, d, plain.UUID, 1)
	for _, op := range []string{"destroy", "set_on_boot", "resize"} {
		if slices.Contains(v.AllowedOperations, op) {
			t.Errorf("allowed_operations %v of an attached VDI has %s", v.AllowedOperations, op)
		}
	}
	if !slices.Contains(v.AllowedOperations, "snapshot") {
		t.Errorf("allowed_operations %v of an attached VDI lacks snapshot", v.AllowedOperations)
	}
	eb := protoExpectError(t, d, d.Token, http.MethodPost, onBoot, map[string]any{"value": "reset"}, http.StatusConflict, api.CodeVDIInUse)
	if eb.Error != nil {
		t.Logf("set_on_boot while attached: HTTP 409 %s", eb.Error)
	}
	protoExpectError(t, d, d.Token, http.MethodDelete, "/vdis/"+plain.UUID, nil, http.StatusConflict, api.CodeVDIInUse)
	// A second connection is a second VBD.
	p.MustDo(t, "open plain2 %s", d.URI(t, plain.UUID))
	two := protoWaitVBDs(t, d, plain.UUID, 2)
	if two.VBDs[0] == two.VBDs[1] {
		t.Errorf("VBDs %v", two.VBDs)
	}
	var vbds struct{ Value []string }
	d.MustCall(t, http.MethodGet, "/vdis/"+plain.UUID+"/get_VBDs", nil, &vbds)
	if !slices.Equal(vbds.Value, two.VBDs) {
		t.Errorf("get_VBDs %v, record VBDs %v", vbds.Value, two.VBDs)
	}
	protoExpectError(t, d, d.Token, http.MethodPost, "/vdis/"+plain.UUID+"/forget", nil, http.StatusConflict, api.CodeVDIInUse)

	// The CBT VDI attached writable: list_changed_blocks to it is refused.
	p.MustDo(t, "open tracked %s", d.URI(t, tracked.UUID))
	protoWaitVBDs(t, d, tracked.UUID, 1)
	protoExpectError(t, d, d.Token, http.MethodGet, lcbPath(tracked.UUID), nil, http.StatusConflict, api.CodeVDIInUse)
	if ops := d.VDI(t, tracked.UUID).AllowedOperations; slices.Contains(ops, "list_changed_blocks") {
		t.Errorf("allowed_operations of an attached writable VDI has list_changed_blocks: %v", ops)
	}
	p.MustDo(t, "pwrite tracked 0 65536 0x07")
	s2 := d.Snapshot(t, tracked.UUID) // a live operation: fine while attached
	// A snapshot attached read-only does not block list_changed_blocks.
	if ans := p.MustDo(t, "open s2 %s", d.URI(t, s2.UUID)); ans != "ok 16777216 ro" {
		t.Fatalf("open s2: %s", ans)
	}
	protoWaitVBDs(t, d, s2.UUID, 1)
	var cb api.ChangedBlocks
	d.MustCall(t, http.MethodGet, lcbPath(s2.UUID), nil, &cb)
	if cb.ChangedBlocks != 1 {
		t.Errorf("list_changed_blocks s1..s2 while s2 is attached: %+v", cb)
	}
	protoExpectError(t, d, d.Token, http.MethodDelete, "/vdis/"+s2.UUID, nil, http.StatusConflict, api.CodeVDIInUse)
	if ops := d.VDI(t, s2.UUID).AllowedOperations; !slices.Contains(ops, "list_changed_blocks") || slices.Contains(ops, "destroy") {
		t.Errorf("allowed_operations of a snapshot attached read-only: %v", ops)
	}

	// Detach: the VBDs go and the calls work.
	p.MustDo(t, "close tracked")
	protoWaitVBDs(t, d, tracked.UUID, 0)
	d.MustCall(t, http.MethodGet, lcbPath(tracked.UUID), nil, &cb)
	p.MustDo(t, "close plain")
	protoWaitVBDs(t, d, plain.UUID, 1)
	protoExpectError(t, d, d.Token, http.MethodDelete, "/vdis/"+plain.UUID, nil, http.StatusConflict, api.CodeVDIInUse)
	p.MustDo(t, "close plain2")
	v = protoWaitVBDs(t, d, plain.UUID, 0)
	if !slices.Contains(v.AllowedOperations, "destroy") || !slices.Contains(v.AllowedOperations, "set_on_boot") {
		t.Errorf("allowed_operations after detaching: %v", v.AllowedOperations)
	}
	d.MustCall(t, http.MethodPost, onBoot, map[string]any{"value": "reset"}, nil)
	if st := d.Call(t, http.MethodDelete, "/vdis/"+plain.UUID, nil, nil); st != http.StatusNoContent {
		t.Errorf("destroy after detaching: HTTP %d", st)
	}
	p.MustDo(t, "close s2")
	protoWaitVBDs(t, d, s2.UUID, 0)
	if st := d.Call(t, http.MethodDelete, "/vdis/"+s2.UUID, nil, nil); st != http.StatusNoContent {
		t.Errorf("destroy of the detached snapshot: HTTP %d", st)
	}
}

// TestNBDProtocolAttachLifecycle: more of XenAPI's rules around an NBD
// attachment: resize is refused while attached and resize_online is not
// (the open connection keeps its size, a new one sees the new size);
// set_read_only is refused while attached and a read_only VDI exports
// read-only; on_boot=reset reverts the content at the next writable
// attach; data_destroy of an attached CBT snapshot waits for the client to
// go (and fails with VDI_IN_USE if it stays), after which the snapshot
// can no longer be exported.
func TestNBDProtocolAttachLifecycle(t *testing.T) {
	const MiB = 1 << 20
	d := startVdiskd(t, "--detach-grace", "300ms") // the refusals below come quicker
	p := protoStartSession(t)

	// resize / resize_online / set_read_only while attached.
	g := d.CreateVDI(t, "grow", 8*MiB)
	p.MustDo(t, "open g %s", d.URI(t, g.UUID))
	protoWaitVBDs(t, d, g.UUID, 1)
	protoExpectError(t, d, d.Token, http.MethodPost, "/vdis/"+g.UUID+"/resize", map[string]any{"size": 16 * MiB},
		http.StatusConflict, api.CodeVDIInUse)
	protoExpectError(t, d, d.Token, http.MethodPost, "/vdis/"+g.UUID+"/set_read_only", map[string]any{"value": true},
		http.StatusConflict, api.CodeVDIInUse)
	var rec api.VDI
	d.MustCall(t, http.MethodPost, "/vdis/"+g.UUID+"/resize_online", map[string]any{"size": 16 * MiB}, &rec)
	if rec.VirtualSize != 16*MiB {
		t.Errorf("resize_online: virtual_size %d", rec.VirtualSize)
	}
	p.MustDo(t, "pwrite g %d 4096 0x01", 8*MiB-4096)
	if ans := p.Do(t, "pwrite g %d 4096 0x01", 8*MiB); !strings.HasPrefix(ans, "error") {
		t.Errorf("a write past the size the connection negotiated: %s", ans)
	}
	if ans := p.MustDo(t, "open g2 %s", d.URI(t, g.UUID)); ans != fmt.Sprintf("ok %d rw", 16*MiB) {
		t.Errorf("a new connection after resize_online: %s", ans)
	}
	p.MustDo(t, "pwrite g2 %d 4096 0x02", 16*MiB-4096)
	p.MustDo(t, "close g")
	p.MustDo(t, "close g2")
	protoWaitVBDs(t, d, g.UUID, 0)

	// A read_only VDI exports read-only.
	ro := d.CreateVDI(t, "ro", 8*MiB)
	d.MustCall(t, http.MethodPost, "/vdis/"+ro.UUID+"/set_read_only", map[string]any{"value": true}, nil)
	if ans := p.MustDo(t, "open ro %s", d.URI(t, ro.UUID)); ans != fmt.Sprintf("ok %d ro", 8*MiB) {
		t.Errorf("open a read_only VDI: %s", ans)
	}
	if ans := p.Do(t, "pwrite ro 0 4096 0x01"); !strings.HasPrefix(ans, "error EPERM") {
		t.Errorf("write to a read_only VDI: %s", ans)
	}
	p.MustDo(t, "close ro")

	// on_boot=reset: the next writable attach starts from the content at
	// set_on_boot.
	b := d.CreateVDI(t, "boot", 8*MiB)
	p.MustDo(t, "open b %s", d.URI(t, b.UUID))
	p.MustDo(t, "pwrite b 0 4096 0x0a")
	p.MustDo(t, "close b")
	protoWaitVBDs(t, d, b.UUID, 0)
	d.MustCall(t, http.MethodPost, "/vdis/"+b.UUID+"/set_on_boot", map[string]any{"value": "reset"}, nil)
	p.MustDo(t, "open b %s", d.URI(t, b.UUID))
	p.MustDo(t, "pwrite b 0 4096 0x0b")
	if ans := p.MustDo(t, "pread b 0 4096"); ans != "ok 0b" {
		t.Errorf("read back on the same connection: %s", ans)
	}
	p.MustDo(t, "close b")
	protoWaitVBDs(t, d, b.UUID, 0)
	p.MustDo(t, "open b %s", d.URI(t, b.UUID))
	if ans := p.MustDo(t, "pread b 0 4096"); ans != "ok 0a" {
		t.Errorf("on_boot=reset: the next attach reads %s, want the content at set_on_boot (0a)", ans)
	}
	p.MustDo(t, "close b")

	// data_destroy of an attached CBT snapshot.
	c := d.CreateVDI(t, "cbt", 8*MiB)
	d.MustCall(t, http.MethodPost, "/vdis/"+c.UUID+"/enable_cbt", nil, nil)
	s1 := d.Snapshot(t, c.UUID)
	s2 := d.Snapshot(t, c.UUID)
	p.MustDo(t, "open s1 %s", d.URI(t, s1.UUID))
	protoWaitVBDs(t, d, s1.UUID, 1)
	start := time.Now()
	protoExpectError(t, d, d.Token, http.MethodPost, "/vdis/"+s1.UUID+"/data_destroy", nil, http.StatusConflict, api.CodeVDIInUse)
	t.Logf("data_destroy of an attached snapshot refused after %v", time.Since(start).Round(10*time.Millisecond))
	if ans := p.MustDo(t, "pread s1 0 512"); ans != "ok 00" {
		t.Errorf("read after the refused data_destroy: %s", ans)
	}
	p.MustDo(t, "open s2 %s", d.URI(t, s2.UUID))
	protoWaitVBDs(t, d, s2.UUID, 1)
	done := make(chan int, 1)
	var after api.VDI
	go func() { // not d.Call: no t.Fatal off the test goroutine
		req, _ := http.NewRequest(http.MethodPost, d.API+"/vdis/"+s2.UUID+"/data_destroy", nil)
		req.Header.Set("Authorization", "Bearer "+d.Token)
		resp, err := vdiskdtest.HTTP.Do(req)
		if err != nil {
			done <- 0
			return
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(&after)
		done <- resp.StatusCode
	}()
	// While it waits, the snapshot shows the operation.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v := d.VDI(t, s2.UUID)
		if slices.Contains(slices.Collect(maps.Values(v.CurrentOperations)), "data_destroy") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("current_operations while data_destroy waits: %v", v.CurrentOperations)
			break
		}
	}
	p.MustDo(t, "close s2")
	select {
	case st := <-done:
		if st != http.StatusOK || after.Type != "cbt_metadata" {
			t.Errorf("data_destroy once the client left: HTTP %d type %q", st, after.Type)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data_destroy did not return")
	}
	if ans := p.Do(t, "open s2b %s", protoURI(d, protoExportName(s2.UUID, d.Token))); !strings.HasPrefix(ans, "error") {
		t.Errorf("export of a cbt_metadata VDI: %s", ans)
	}
	p.MustDo(t, "close s1")
	protoWaitVBDs(t, d, s1.UUID, 0)
}

// protoGet is a raw GET for checks on the exact body.
func protoGet(t *testing.T, d *daemon, path string, auth func(*http.Request)) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.API+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	auth(req)
	resp, err := vdiskdtest.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestNBDProtocolNBDInfo: get_nbd_info's record (exportname with the
// caller's session, address, port, cert and subject empty without TLS, a
// ready URI), per caller; refused for a vm-operator and for Basic
// user:password (no session to put in the name); [] with --nbd-addr off.
func TestNBDProtocolNBDInfo(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "info", 4<<20)
	path := "/vdis/" + v.UUID + "/nbd_info"
	st, body := protoGet(t, d, path, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+d.Token) })
	var recs []map[string]any
	if err := json.Unmarshal(body, &recs); st != http.StatusOK || err != nil || len(recs) != 1 {
		t.Fatalf("get_nbd_info: HTTP %d %s (%v)", st, body, err)
	}
	var keys []string
	for k := range recs[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "address,cert,exportname,port,subject,uri" {
		t.Errorf("get_nbd_info fields: %s", got)
	}
	host, portStr, _ := net.SplitHostPort(d.NBDHost)
	port, _ := strconv.Atoi(portStr)
	info := d.NBDInfo(t, v.UUID)[0]
	want := api.NBDInfo{ExportName: protoExportName(v.UUID, d.Token), Address: "127.0.0.1", Port: port,
		Cert: "", Subject: "", URI: info.URI}
	if info != want || host != "127.0.0.1" {
		t.Errorf("get_nbd_info: %+v, want %+v", info, want)
	}
	u, err := url.Parse(info.URI)
	if err != nil || u.Scheme != "nbd" || u.Host != d.NBDHost || u.Path != "/"+info.ExportName || u.RawQuery != "" {
		t.Errorf("uri %q: %+v %v", info.URI, u, err)
	}
	// The URI works as is.
	protoRun(t, d, "prep.py", map[string]any{"uri": info.URI, "writes": [][3]int{{0, 512, 1}}})

	// Per caller: a vm-admin's token is in its record; a vm-operator may not ask.
	va := protoUser(t, d, "va", "vm-admin")
	var vaInfo []api.NBDInfo
	if st := d.CallAs(t, va, http.MethodGet, path, nil, &vaInfo); st != http.StatusOK || len(vaInfo) != 1 ||
		vaInfo[0].ExportName != protoExportName(v.UUID, va) {
		t.Errorf("get_nbd_info as vm-admin: HTTP %d %+v", st, vaInfo)
	}
	op := protoUser(t, d, "op", "vm-operator")
	protoExpectError(t, d, op, http.MethodGet, path, nil, http.StatusForbidden, api.CodePermissionDenied)
	// Basic user:token is a session too.
	st, body = protoGet(t, d, path, func(r *http.Request) { r.SetBasicAuth("admin", d.Token) })
	if st != http.StatusOK || !strings.Contains(string(body), "session_id="+d.Token) {
		t.Errorf("get_nbd_info with Basic user:token: HTTP %d %s", st, body)
	}
	// A snapshot has a record; a cbt_metadata VDI has nothing to export.
	snap := d.Snapshot(t, v.UUID)
	if got := d.NBDInfo(t, snap.UUID); len(got) != 1 || got[0].ExportName != protoExportName(snap.UUID, d.Token) {
		t.Errorf("get_nbd_info of a snapshot: %+v", got)
	}
	_, meta := protoCBTMetadata(t, d, "meta")
	protoExpectError(t, d, d.Token, http.MethodGet, "/vdis/"+meta.UUID+"/nbd_info", nil, http.StatusConflict, api.CodeVDIIncompatible)

	t.Run("BasicPassword", func(t *testing.T) {
		// Token calls take Bearer or Basic user:token (docs/api.md): a
		// password in the token's place is an unknown session, and no
		// export name (which would carry a session) comes back.
		st, body := protoGet(t, d, path, func(r *http.Request) { r.SetBasicAuth("admin", testAdminPassword) })
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if eb.Error == nil || st != http.StatusUnauthorized || eb.Error.Code != api.CodeSessionInvalid {
			t.Errorf("get_nbd_info with Basic user:password: HTTP %d %s, want 401 SESSION_INVALID", st, body)
		}
		if strings.Contains(string(body), "session_id") || strings.Contains(string(body), testAdminPassword) {
			t.Errorf("get_nbd_info with Basic user:password handed out %s", body)
		}
	})

	t.Run("Wildcard", func(t *testing.T) {
		// A wildcard listener gives one record per address, each usable.
		any4 := startVdiskd(t, "--nbd-addr", "0.0.0.0:0")
		w := any4.CreateVDI(t, "wild", 4<<20)
		recs := any4.NBDInfo(t, w.UUID)
		_, portStr, _ := net.SplitHostPort(any4.NBDHost)
		seen := map[string]bool{}
		for _, r := range recs {
			if r.ExportName != protoExportName(w.UUID, any4.Token) || strconv.Itoa(r.Port) != portStr || seen[r.Address] ||
				net.ParseIP(r.Address) == nil || net.ParseIP(r.Address).IsUnspecified() || r.Cert != "" || r.Subject != "" {
				t.Errorf("record %+v", r)
			}
			seen[r.Address] = true
			protoRun(t, any4, "prep.py", map[string]any{"uri": r.URI, "writes": [][3]int{{0, 512, 1}}})
		}
		if !seen["127.0.0.1"] {
			t.Errorf("no 127.0.0.1 record among %+v", recs)
		}
	})

	t.Run("NBDOff", func(t *testing.T) {
		off := startVdiskd(t, "--nbd-addr", "off")
		w := off.CreateVDI(t, "dark", 4<<20)
		st, body := protoGet(t, off, "/vdis/"+w.UUID+"/nbd_info", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+off.Token)
		})
		if st != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("get_nbd_info with --nbd-addr off: HTTP %d %q, want []", st, body)
		}
	})
}

// TestNBDProtocolAuthNone: with --nbd-auth none a bare "<uuid>" works (and
// "/<uuid>", and any session_id), get_nbd_info names "/<uuid>", LIST needs
// no earlier option and shows every exportable VDI as "/<uuid>".
func TestNBDProtocolAuthNone(t *testing.T) {
	d := startVdiskd(t, "--nbd-auth", "none")
	a := d.CreateVDI(t, "one", 8<<20)
	b := d.CreateVDI(t, "two", 8<<20)
	snap := d.Snapshot(t, b.UUID)
	cbtLive, cbtMeta := protoCBTMetadata(t, d, "three")
	if got := d.ExportName(t, a.UUID); got != "/"+a.UUID {
		t.Errorf("get_nbd_info exportname with --nbd-auth none: %q", got)
	}
	vdis := map[string]string{}
	for _, id := range []string{a.UUID, b.UUID, snap.UUID, cbtLive.UUID} {
		vdis[id] = d.VDI(t, id).NameLabel
	}
	protoRun(t, d, "authnone.py", map[string]any{"addr": d.NBDHost, "uuid": a.UUID, "vdis": vdis,
		"cbtmeta": cbtMeta.UUID, "unknown": "6f1f7f0e-3a57-4c36-9d5e-0d8a3b1c2d4e"})
	protoRun(t, d, "prep.py", map[string]any{"uri": d.URI(t, b.UUID), "writes": [][3]int{{0, 4096, 2}}})
}

// TestNBDProtocolShutdown: after SIGTERM a connected client's requests get
// ESHUTDOWN for about 2 s, then the server hangs up; a connection still
// negotiating gets ERR_SHUTDOWN; new connections fail; vdiskd exits 0.
func TestNBDProtocolShutdown(t *testing.T) {
	d := startVdiskd(t)
	v := d.CreateVDI(t, "bye", 4<<20)
	uri := d.URI(t, v.UUID)
	p := protoStartSession(t)
	p.MustDo(t, "open a %s", uri)
	p.MustDo(t, "pwrite a 0 4096 0x42")
	if ans := p.MustDo(t, "pread a 0 4096"); ans != "ok 42" {
		t.Fatalf("read: %s", ans)
	}
	if ans := p.MustDo(t, "raw n %s", d.NBDHost); ans != "ok 0x3" {
		t.Fatalf("raw handshake: %s", ans)
	}
	d.Signal(t, syscall.SIGTERM)
	d.WaitLog(t, "shutting down")
	start := time.Now()
	p.MustDo(t, "eshutdown a")
	for i := 0; i < 2; i++ { // every option, also after the first refusal
		if ans := p.MustDo(t, "rawopt n 8"); !strings.HasPrefix(ans, "ok ERR_SHUTDOWN") {
			t.Errorf("option while shutting down: %s", ans)
		}
	}
	if ans := p.Do(t, "open b %s", uri); !strings.HasPrefix(ans, "error") {
		t.Errorf("a new connection after SIGTERM: %s", ans)
	} else {
		t.Logf("new connection after SIGTERM: %s", ans)
	}
	ans := p.MustDo(t, "untildead a")
	var secs float64
	var n int
	var last string
	if _, err := fmt.Sscanf(ans, "ok %f %d %s", &secs, &n, &last); err != nil {
		t.Fatalf("untildead: %q: %v", ans, err)
	}
	t.Logf("ESHUTDOWN for %.2fs more (%d requests), then %s; %.2fs after SIGTERM", secs, n, last, time.Since(start).Seconds())
	if elapsed := time.Since(start); n < 3 || elapsed < 1500*time.Millisecond || elapsed > 6*time.Second {
		t.Errorf("ESHUTDOWN answered %d times; the hang-up came %v after SIGTERM, want about 2s", n, elapsed)
	}
	if last == "ESHUTDOWN" {
		t.Errorf("last error %s", last)
	}
	if code := d.WaitExit(t, 20*time.Second).ExitCode(); code != 0 {
		t.Errorf("vdiskd exited %d\n%s", code, vdiskdtest.Tail(d.Log(), 20))
	}
	if !strings.Contains(d.Log(), `msg=stopped`) {
		t.Errorf("no clean stop in the log:\n%s", vdiskdtest.Tail(d.Log(), 20))
	}
	// The write before the shutdown is there after a restart on the same data.
	d2 := d.relaunch(t)
	protoRun(t, d2, "prep.py", map[string]any{"uri": d2.URI(t, v.UUID), "expect": [][3]int{{0, 4096, 0x42}}})
}

// TestNBDProtocolModel: a seeded random mix of WRITE (some FUA),
// WRITE_ZEROES (plain, NO_HOLE, FUA, aligned FAST_ZERO), TRIM, READ (plain,
// DF) and BLOCK_STATUS over three connections, one of them unaligned to
// the byte, checked against an in-memory model: data, hole chunks and the
// ZERO bit of base:allocation must all agree with it. Two runs also take
// snapshots through REST along the way (each must hold the model of its
// moment, and a clone of one must too, also once written); with CBT on,
// the first snapshot's dirty bitmap must cover every block that differs
// from it, on the live VDI and on the later snapshots.
func TestNBDProtocolModel(t *testing.T) {
	d := startVdiskd(t)
	for _, run := range []struct {
		seed, ops     int
		snapshots, cb bool
	}{{1, 600, false, false}, {2, 600, true, false}, {3, 150, true, true}} {
		v := d.CreateVDI(t, fmt.Sprintf("model%d", run.seed), 8<<20)
		cfg := map[string]any{"uri": d.URI(t, v.UUID), "seed": run.seed, "ops": run.ops}
		if run.snapshots {
			cfg["api"], cfg["token"], cfg["uuid"], cfg["cbt"] = d.API, d.Token, v.UUID, run.cb
		}
		protoRun(t, d, "model.py", cfg)
	}
}
