package systest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

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
	py := startScript(t, dir, "/usr/bin/python3", filepath.Join(dir, "backup.py"), d.URL, "admin", testAdminPassword, v.UUID)
	var ready struct{ Ready string }
	py.next(t, "its first snapshot", &ready)
	vdiskdtest.RunTool(t, "qemu-io", "-f", "raw", d.URI(t, v.UUID), "-c", "write -P 0x44 128k 64k", "-c", "write -P 0x45 10M 4k")
	py.goOn(t)
	var out struct {
		API         []string
		NameLabel   string `json:"name_label"`
		VirtualSize string `json:"virtual_size"`
		SRName      string `json:"sr_name"`
		NBD         []map[string]any
		Changed     []int
		Failure     []string
	}
	py.next(t, "its answer", &out)
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
	py.wait(t)
}

// script is a client script under test that talks in lines: it prints a
// JSON line at each step and waits for a line on stdin to go on. Its
// process is killed at the test's end; next gives up after a timeout.
type script struct {
	name   string
	stdin  io.Writer
	lines  chan string
	exited chan error
	stderr *vdiskdtest.Buffer // written while the script runs
}

func startScript(t *testing.T, dir, name string, args ...string) *script {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &script{name: filepath.Base(args[0]), stdin: stdin, lines: make(chan string, 4),
		exited: make(chan error, 1), stderr: &vdiskdtest.Buffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.exited <- cmd.Wait()
	}()
	return s
}

// next is the script's next line, decoded into out.
func (s *script) next(t *testing.T, what string, out any) {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			t.Fatalf("%s ended before %s: %v\n%s", s.name, what, <-s.exited, s.stderr.String())
		}
		if err := json.Unmarshal([]byte(l), out); err != nil {
			t.Fatalf("%s printed %q for %s: %v", s.name, l, what, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s gave no %s in 60 s\n%s", s.name, what, s.stderr.String())
	}
}

// goOn lets the script take its next step.
func (s *script) goOn(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, "go\n"); err != nil {
		t.Fatalf("%s: %v\n%s", s.name, err, s.stderr.String())
	}
}

// wait waits for the script to exit 0.
func (s *script) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("%s: %v\n%s", s.name, err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit in 30 s\n%s", s.name, s.stderr.String())
	}
}

// Xen Orchestra's incremental backup with CBT and NBD, with XO's own
// clients (testdata/xo/xo_incremental.mjs: npm xen-api 4.7.7 and
// @vates/nbd-client 3.6.0's MultiNbdClient on 2 connections), over plain
// NBD and over TLS: a full backup, then cycles that read only the 2 MiB
// blocks list_changed_blocks names, against the previous snapshot once it
// is only cbt_metadata. After each cycle the patched image equals the new
// snapshot byte for byte (read by nbdcopy with the script's own
// session-bearing export name), the blocks read are exactly those qemu-io
// wrote, and each read used two NBD connections.
func TestXenOrchestraIncrementalBackup(t *testing.T) {
	vdiskdtest.RequireTool(t, "node", "qemu-io", "nbdcopy")
	dir, err := filepath.Abs("testdata/xo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@vates", "nbd-client")); err != nil {
		t.Fatalf("npm @vates/nbd-client is not installed in %s: make test (scripts/ensure-tools.sh) runs npm ci there", dir)
	}
	t.Run("plain", func(t *testing.T) { xoIncremental(t, dir, false) })
	t.Run("tls", func(t *testing.T) { xoIncremental(t, dir, true) })
}

func xoIncremental(t *testing.T, dir string, withTLS bool) {
	const size, block = 64 << 20, 2 << 20
	certDir := t.TempDir()
	var d *daemon
	qemuOpen := func(uri string) []string { return []string{"-f", "raw", uri} }
	nbdURI := func(info map[string]any) string {
		return fmt.Sprintf("nbd://%s:%v/%s", info["address"], info["port"], url.PathEscape(info["exportname"].(string)))
	}
	if withTLS {
		pool, _ := clWriteCerts(t, certDir)
		d = launchVdiskd(t, t.TempDir(), "--tls-cert", filepath.Join(certDir, "server-cert.pem"),
			"--tls-key", filepath.Join(certDir, "server-key.pem"))
		d.HTTP = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		d.Token = d.Login(t, "admin", testAdminPassword)
		host, port, _ := net.SplitHostPort(d.NBDHost)
		qemuOpen = func(uri string) []string {
			name, _ := url.PathUnescape(strings.TrimPrefix(uri, "nbds://"+d.NBDHost+"/"))
			return []string{"--object", "tls-creds-x509,id=t0,endpoint=client,dir=" + certDir, "--image-opts",
				"driver=nbd,server.type=inet,server.host=" + host + ",server.port=" + port +
					",export=" + name + ",tls-creds=t0,tls-hostname=localhost"}
		}
		nbdURI = func(info map[string]any) string {
			return fmt.Sprintf("nbds://%s:%v/%s?tls-certificates=%s", info["address"], info["port"],
				url.PathEscape(info["exportname"].(string)), certDir)
		}
	} else {
		d = startVdiskd(t)
	}
	accepted := func() float64 {
		t.Helper()
		hc := d.HTTP
		if hc == nil {
			hc = vdiskdtest.HTTP
		}
		resp, err := hc.Get(d.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p expfmt.TextParser
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		f := fams["vdiskd_nbd_connections_accepted_total"]
		if f == nil || len(f.Metric) != 1 {
			t.Fatalf("/metrics has no vdiskd_nbd_connections_accepted_total")
		}
		return f.Metric[0].GetCounter().GetValue()
	}

	v := d.CreateVDI(t, "xo-incremental", size)
	open := qemuOpen(d.URI(t, v.UUID))
	// Before the full backup: data at the start, across a 2 MiB boundary
	// and in the last block.
	clQemuIOArgs(t, open, "write -P 0x11 0 3M", "write -P 0x12 31M 2M", "write -P 0x13 62M 2M")
	image := filepath.Join(t.TempDir(), "backup.raw")
	before := accepted()
	js := startScript(t, dir, "node", filepath.Join(dir, "xo_incremental.mjs"), d.URL, "admin", testAdminPassword, v.UUID, image, "4")
	// What each incremental cycle finds written since the one before, and
	// the 2 MiB blocks that covers.
	writes := [][]string{
		nil, // the full backup reads every block
		{"write -P 0x21 4M 64k", "write -P 0x22 20M 4k"},
		{"write -P 0x31 2047k 2k", "write -z 40M 2M", "write -P 0x32 63M 1M"},
		{}, // nothing written: nothing read
	}
	var want []int
	for cycle := 0; cycle < len(writes); cycle++ {
		if cycle == 0 {
			for i := 0; i < size/block; i++ {
				want = append(want, i)
			}
		}
		var got struct {
			Cycle    int
			Snapshot string
			Blocks   []int
			Bytes    int64
			NBD      []map[string]any
		}
		js.next(t, fmt.Sprintf("cycle %d", cycle), &got)
		if got.Cycle != cycle || !slices.Equal(got.Blocks, want) {
			t.Fatalf("cycle %d: read blocks %v, want %v", cycle, got.Blocks, want)
		}
		if got.Bytes != int64(len(want))*block {
			t.Fatalf("cycle %d: read %d bytes, want %d", cycle, got.Bytes, len(want)*block)
		}
		if len(got.NBD) != 1 {
			t.Fatalf("cycle %d: get_nbd_info %v", cycle, got.NBD)
		}
		if _, hasCert := got.NBD[0]["cert"]; hasCert != withTLS {
			t.Fatalf("cycle %d: get_nbd_info %v: a cert field only with TLS", cycle, got.NBD)
		}
		if n := accepted() - before; n != 2 {
			t.Fatalf("cycle %d: MultiNbdClient opened %v NBD connections, want 2", cycle, n)
		}
		// The patched image is the snapshot, read with the script's export
		// name (its XenAPI session is the NBD credential).
		snapCopy := filepath.Join(t.TempDir(), "snapshot.raw")
		vdiskdtest.RunTool(t, "nbdcopy", nbdURI(got.NBD[0]), snapCopy)
		a, err := os.ReadFile(image)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(snapCopy)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("cycle %d: the patched backup image differs from snapshot %s", cycle, got.Snapshot)
		}
		if cycle+1 < len(writes) {
			if len(writes[cycle+1]) > 0 {
				clQemuIOArgs(t, open, writes[cycle+1]...)
			}
			want = touched(writes[cycle+1], block)
		}
		before = accepted()
		js.goOn(t)
	}
	var last struct {
		BaseType string `json:"base_type"`
	}
	js.next(t, "the end", &last)
	if last.BaseType != "cbt_metadata" {
		t.Fatalf("the last snapshot after data_destroy is %q, want cbt_metadata", last.BaseType)
	}
	js.wait(t)
}

// touched is the sorted blocks of the given size that qemu-io commands
// "write [-P x|-z] OFFSET LENGTH" touch.
func touched(cmds []string, block int64) []int {
	seen := map[int]bool{}
	for _, c := range cmds {
		f := strings.Fields(c)
		off, length := qemuSize(f[len(f)-2]), qemuSize(f[len(f)-1])
		for i := off / block; i <= (off+length-1)/block; i++ {
			seen[int(i)] = true
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// qemuSize reads qemu-io's sizes: 4k, 3M, 512.
func qemuSize(s string) int64 {
	mult := int64(1)
	switch s[len(s)-1] {
	case 'k':
		mult, s = 1<<10, s[:len(s)-1]
	case 'M':
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic("qemuSize " + s)
	}
	return n * mult
}
