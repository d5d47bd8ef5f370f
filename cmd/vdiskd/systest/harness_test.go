package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/api"

	"context"
)

// The interop tests drive the real vdiskd binary with real clients
// (qemu-img, qemu-io, nbdinfo, nbdcopy, nbdsh, fio). This file starts and
// stops it and talks REST to it.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vdiskdBinary builds cmd/vdiskd once per test run.
func vdiskdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vdiskd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vdiskd")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// requireTool fails (never skips) when a peer the test needs is missing:
// make test installs them (scripts/ensure-tools.sh).
func requireTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed: run `make tools` (scripts/ensure-tools.sh)", n)
		}
	}
}

// daemon is one running vdiskd.
type daemon struct {
	cmd     *exec.Cmd
	DataDir string
	API     string // http://127.0.0.1:PORT/api
	NBDHost string // 127.0.0.1:PORT
	Token   string // a pool-admin token
	log     *syncBuffer
	exited  chan struct{}
}

const testAdminPassword = "interop-password"

var readyAddrs = regexp.MustCompile(`api=(\S+) nbd=(\S+)`)

// startVdiskd runs vdiskd on free loopback ports with a fresh data dir and
// logs in as admin; extra flags are appended. The test's cleanup stops it
// with SIGTERM and fails the test if it does not exit 0.
func startVdiskd(t *testing.T, extra ...string) *daemon {
	t.Helper()
	d := launchVdiskd(t, t.TempDir(), extra...)
	d.Token = d.login(t, "admin", testAdminPassword)
	return d
}

// launchVdiskd starts vdiskd on dataDir (which may hold an earlier run's
// data) without logging in, for daemons startVdiskd cannot give (HTTPS, a
// restart on the same data).
func launchVdiskd(t *testing.T, dataDir string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{DataDir: dataDir, log: &syncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"}, extra...)
	d.cmd = exec.Command(vdiskdBinary(t), args...)
	d.cmd.Env = append(os.Environ(), "VDISKD_ADMIN_PASSWORD="+testAdminPassword)
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop(t) })
	waitFor(t, d.log, "vdiskd ready")
	m := readyAddrs.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no addresses in the ready line:\n%s", d.log)
	}
	d.API = m[1]
	d.NBDHost = strings.TrimPrefix(strings.TrimPrefix(m[2], "nbds://"), "nbd://")
	return d
}

// stop sends SIGTERM and waits for exit 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("vdiskd did not stop within 30s of SIGTERM\n%s", d.log)
		return
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("vdiskd exited %d\n%s", code, d.log)
	}
}

// restClient has a timeout, so a call the daemon never answers (or a kill
// cut) fails the test instead of hanging it.
var restClient = &http.Client{Timeout: time.Minute}

// Log is what the daemon has written so far.
func (d *daemon) Log() string { return d.log.String() }

func (d *daemon) login(t *testing.T, user, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.API+"/token", nil)
	req.SetBasicAuth(user, password)
	var tok struct{ Token string }
	if st := d.do(t, req, &tok); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("login %s: HTTP %d", user, st)
	}
	return tok.Token
}

// Call makes a REST call with the admin token and decodes the answer into
// out (if not nil). It returns the HTTP status.
func (d *daemon) Call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	return d.CallAs(t, d.Token, method, path, body, out)
}

// CallAs is Call with another token.
func (d *daemon) CallAs(t *testing.T, token, method, path string, body, out any) int {
	t.Helper()
	st, _ := d.callRaw(t, token, method, path, body, out)
	return st
}

// callRaw is CallAs that also returns the answer's body.
func (d *daemon) callRaw(t *testing.T, token, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.API+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return d.doRaw(t, req, out)
}

func (d *daemon) do(t *testing.T, req *http.Request, out any) int {
	t.Helper()
	st, _ := d.doRaw(t, req, out)
	return st
}

func (d *daemon) doRaw(t *testing.T, req *http.Request, out any) (int, []byte) {
	t.Helper()
	resp, err := restClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", req.Method, req.URL, b, err)
		}
	}
	if eb, ok := out.(*api.ErrorBody); ok && resp.StatusCode >= 300 {
		json.Unmarshal(b, eb)
	}
	return resp.StatusCode, b
}

// MustCall is Call that fails the test, with the error body, unless the
// status is 2xx.
func (d *daemon) MustCall(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if st, b := d.callRaw(t, d.Token, method, path, body, out); st >= 300 {
		t.Fatalf("%s %s: HTTP %d %s", method, path, st, b)
	}
}

// CreateVDI makes a VDI of size bytes.
func (d *daemon) CreateVDI(t *testing.T, name string, size int64) api.VDI {
	t.Helper()
	var v api.VDI
	d.MustCall(t, http.MethodPost, "/vdis", map[string]any{"name_label": name, "virtual_size": size}, &v)
	return v
}

// Snapshot snapshots a VDI.
func (d *daemon) Snapshot(t *testing.T, vdi string) api.VDI {
	t.Helper()
	var v api.VDI
	d.MustCall(t, http.MethodPost, "/vdis/"+vdi+"/snapshot", nil, &v)
	return v
}

// VDI reads a VDI record.
func (d *daemon) VDI(t *testing.T, vdi string) api.VDI {
	t.Helper()
	var v api.VDI
	d.MustCall(t, http.MethodGet, "/vdis/"+vdi, nil, &v)
	return v
}

// NBDInfo is get_nbd_info with the admin token.
func (d *daemon) NBDInfo(t *testing.T, vdi string) []api.NBDInfo {
	t.Helper()
	var info []api.NBDInfo
	d.MustCall(t, http.MethodGet, "/vdis/"+vdi+"/nbd_info", nil, &info)
	return info
}

// URI is the ready NBD URI of a VDI, from get_nbd_info.
func (d *daemon) URI(t *testing.T, vdi string) string {
	t.Helper()
	info := d.NBDInfo(t, vdi)
	if len(info) == 0 {
		t.Fatalf("get_nbd_info %s: no records", vdi)
	}
	return info[0].URI
}

// ExportName is the export name of a VDI, from get_nbd_info.
func (d *daemon) ExportName(t *testing.T, vdi string) string {
	t.Helper()
	return d.NBDInfo(t, vdi)[0].ExportName
}

// run runs a client program and returns its combined output; it fails the
// test on a non-zero exit unless ok is false.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := toolCmd(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// toolTimeout bounds every client program a test runs (the longest run
// for about a minute): a peer that hangs fails the test, killed, instead
// of hanging it.
const toolTimeout = 5 * time.Minute

// toolCmd builds a client command, killed after toolTimeout. nbdsh runs
// under the system python, which has the nbd module.
func toolCmd(name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { // at the timeout
		cancel()
		return cmd.Process.Kill()
	}
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:"+os.Getenv("PATH"))
	return cmd
}
