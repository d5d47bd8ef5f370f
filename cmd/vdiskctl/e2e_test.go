package main

// End-to-end tests: the real vdiskd and vdiskctl binaries, built once, a
// daemon on a temporary data directory and a free port, driven the way the
// README shows: with vdiskctl, and with curl.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdiskd/vdiskd/internal/vdiskdtest"
	"github.com/vdiskd/vdiskd/mgmt/api"
)

const (
	mib            = 1 << 20
	adminPassword  = "e2e-admin-password"
	emptyBitmap4M  = "AAAAAAAAAAA=" // 64 blocks of 64 KiB, none changed
	unknownVDIUUID = "00000000-0000-4000-8000-000000000000"
	commandTimeout = 30 * time.Second
	daemonTimeout  = 20 * time.Second // for a second daemon on the same data to give up
)

func TestMain(m *testing.M) { vdiskdtest.Main(m) }

// envWithout is the environment minus variables with the prefix, so the
// developer's own VDISKCTL_* settings do not leak in.
func envWithout(prefix string, extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, prefix) })
	return append(env, extra...)
}

// daemon is a running vdiskd (internal/vdiskdtest), which these tests log
// in to with vdiskctl or curl, not through the harness.
type daemon struct{ *vdiskdtest.Daemon }

// startDaemon starts vdiskd on dataDir and httpAddr ("" for a free port)
// and waits until it serves. adminPassword is VDISKD_ADMIN_PASSWORD; ""
// leaves it unset (a first start writes a random one to admin.password).
func startDaemon(t *testing.T, dataDir, httpAddr, adminPassword string) *daemon {
	t.Helper()
	d, err := tryStartDaemon(t, dataDir, httpAddr, adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tryStartDaemon is startDaemon that returns why vdiskd did not start.
func tryStartDaemon(t *testing.T, dataDir, httpAddr, adminPassword string) (*daemon, error) {
	t.Helper()
	d, err := vdiskdtest.TryStart(t, daemonOptions(dataDir, httpAddr, adminPassword))
	if err != nil {
		return nil, err
	}
	return &daemon{d}, nil
}

func daemonOptions(dataDir, httpAddr, adminPassword string) vdiskdtest.Options {
	return vdiskdtest.Options{DataDir: dataDir, HTTPAddr: httpAddr, AdminPassword: adminPassword,
		RandomAdminPassword: adminPassword == "", NoLogin: true}
}

// stop stops the daemon and fails the test unless it exits 0 having
// logged that it stopped.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.Stop(t)
	if t.Failed() {
		t.FailNow()
	}
	if !strings.Contains(d.Log(), `msg=stopped`) {
		t.Errorf("vdiskd exited 0 without logging that it stopped:\n%s", d.Log())
	}
}

// requestsTo counts the requests the daemon logged for a path.
func (d *daemon) requestsTo(path string) int {
	return strings.Count(d.Log(), " path="+path+" ")
}

// syncLog makes one request and waits until the daemon has logged it, so
// that the log holds the requests made before.
func (d *daemon) syncLog(t *testing.T, c *ctl, vdi string) {
	t.Helper()
	path := "/api/vdis/" + vdi + "/get_uuid"
	n := d.requestsTo(path)
	c.ok(t, "vdi", "get-uuid", vdi)
	for deadline := time.Now().Add(5 * time.Second); d.requestsTo(path) <= n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not log GET %s", path)
		}
	}
}

// loggedIn is a vdiskctl with a config of its own, logged in to d as
// admin.
func loggedIn(t *testing.T, d *daemon) *ctl {
	t.Helper()
	c := &ctl{bin: vdiskdtest.Binary(t, "vdiskctl"), config: filepath.Join(t.TempDir(), "vdiskctl", "config.json")}
	if r := c.run(t, adminPassword+"\n", "--url", d.URL, "login", "--user", "admin", "--password-stdin"); r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	return c
}

// ctl runs the vdiskctl binary with its own config file.
type ctl struct {
	bin    string
	config string // VDISKCTL_CONFIG
}

type ctlResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (c *ctl) run(t *testing.T, stdin string, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = envWithout("VDISKCTL_", "VDISKCTL_CONFIG="+c.config)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := ctlResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("vdiskctl %s: %v (ctx: %v)\nstderr: %s", strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (c *ctl) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := c.run(t, "", args...)
	if r.code != 0 {
		t.Fatalf("vdiskctl %s: exit %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// okJSON runs a command with --json and decodes its stdout into v.
func (c *ctl) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := c.ok(t, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("vdiskctl %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *ctl) vdi(t *testing.T, args ...string) api.VDI {
	t.Helper()
	var v api.VDI
	c.okJSON(t, &v, append([]string{"vdi"}, args...)...)
	if v.UUID == "" {
		t.Fatalf("vdiskctl vdi %s: no uuid in the answer", strings.Join(args, " "))
	}
	return v
}

// fails runs a command that must exit with code, saying want on stderr
// and nothing on stdout.
func (c *ctl) fails(t *testing.T, code int, want string, args ...string) ctlResult {
	t.Helper()
	r := c.run(t, "", args...)
	if r.code != code || !strings.Contains(r.stderr, want) || r.stdout != "" {
		t.Fatalf("vdiskctl %s: exit %d, want %d with %q on stderr and nothing on stdout\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), r.code, code, want, r.stdout, r.stderr)
	}
	return r
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestE2ECLI is the README's walkthrough with the vdiskctl binary, then a
// restart of the daemon on the same data directory.
func TestE2ECLI(t *testing.T) {
	t.Parallel()
	ctlBin := vdiskdtest.Binary(t, "vdiskctl")
	dataDir := filepath.Join(t.TempDir(), "data")
	d := startDaemon(t, dataDir, "", adminPassword)
	c := &ctl{bin: ctlBin, config: filepath.Join(t.TempDir(), "vdiskctl", "config.json")}

	// Log in; the token lands in the config, mode 0600.
	r := c.run(t, adminPassword+"\n", "--url", d.URL, "login", "--user", "admin", "--password-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, "Logged in to "+d.URL+" as admin (pool-admin)") {
		t.Fatalf("login: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(c.config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config after login: %v, %v; want mode 0600", fi, err)
	}
	var cfg config
	if b, err := os.ReadFile(c.config); err != nil || json.Unmarshal(b, &cfg) != nil || cfg.Token == "" || cfg.URL != d.URL {
		t.Fatalf("config after login: %+v (%v)", cfg, err)
	}
	r = c.run(t, "wrong-password\n", "--url", d.URL, "login", "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stderr, api.CodeAuthFailed) {
		t.Fatalf("login with a wrong password: exit %d, want 1 with %s\nstderr: %s", r.code, api.CodeAuthFailed, r.stderr)
	}

	// The default vPool.
	out := c.ok(t, "vpool", "list")
	if !strings.HasPrefix(out, "GUID") || !regexp.MustCompile(`(?m)^\S+\s+local\s+LOCAL\s`).MatchString(out) {
		t.Fatalf("vpool list: want a table with the vPool local:\n%s", out)
	}
	var pools api.List[api.VPool]
	c.okJSON(t, &pools, "vpool", "list")
	if len(pools.Data) != 1 || pools.Data[0].Name != "local" || pools.Data[0].GUID == "" {
		t.Fatalf("vpool list --json: %+v", pools)
	}
	pool := pools.Data[0].GUID

	// Create, enable CBT, snapshot twice.
	v := c.vdi(t, "create", "--name-label", "disk0", "--virtual-size", "4M")
	if v.VirtualSize != 4*mib || v.CBTEnabled || v.IsASnapshot || v.NameLabel != "disk0" || v.SR != pool {
		t.Fatalf("vdi create: %+v", v)
	}
	vid := v.UUID
	if v = c.vdi(t, "enable-cbt", vid); !v.CBTEnabled {
		t.Fatalf("vdi enable-cbt: cbt_enabled false")
	}
	s1 := c.vdi(t, "snapshot", vid)
	s2 := c.vdi(t, "snapshot", vid)
	for _, s := range []api.VDI{s1, s2} {
		if !s.IsASnapshot || s.SnapshotOf != vid || s.VirtualSize != 4*mib || !s.CBTEnabled || s.SR != pool || s.UUID == vid {
			t.Fatalf("vdi snapshot: %+v", s)
		}
	}
	if s1.UUID == s2.UUID {
		t.Fatalf("two snapshots with one uuid %s", s1.UUID)
	}

	// Nothing was written between them (no NBD server yet).
	if out := c.ok(t, "vdi", "list-changed-blocks", s2.UUID, "--vdi-from", s1.UUID); out != emptyBitmap4M+"\n" {
		t.Fatalf("vdi list-changed-blocks: %q, want %q", out, emptyBitmap4M+"\n")
	}
	if out := c.ok(t, "vdi", "list-changed-blocks", s2.UUID, "--vdi-from", s1.UUID, "--field", "changed_blocks"); out != "0\n" {
		t.Fatalf("vdi list-changed-blocks --field changed_blocks: %q, want 0", out)
	}
	var cb api.ChangedBlocks
	c.okJSON(t, &cb, "vdi", "list_changed_blocks", s2.UUID, "--vdi-from", s1.UUID)
	if cb != (api.ChangedBlocks{Bitmap: emptyBitmap4M, Granularity: 64 << 10, ChangedBlocks: 0, VirtualSize: 4 * mib}) {
		t.Fatalf("vdi list_changed_blocks --json: %+v", cb)
	}

	// Clone.
	cl := c.vdi(t, "clone", vid)
	if cl.UUID == vid || cl.IsASnapshot || cl.VirtualSize != 4*mib || cl.NameLabel != "disk0" || cl.SR != pool {
		t.Fatalf("vdi clone: %+v", cl)
	}

	// Grow; shrinking is refused and nothing changes.
	if v = c.vdi(t, "resize", vid, "--size", "8M"); v.VirtualSize != 8*mib {
		t.Fatalf("vdi resize --size 8M: virtual_size %d", v.VirtualSize)
	}
	c.fails(t, exitAPI, api.CodeShrinkRefused, "vdi", "resize", vid, "--size", "4M")

	// Name, tags and other_config, for the restart below.
	c.ok(t, "vdi", "set-name-label", vid, "--value", "disk0 (db)")
	c.ok(t, "vdi", "add-to-other-config", vid, "--key", "backup", "--value", "nightly")
	c.ok(t, "vdi", "add_tags", vid, "--value", "gold")
	c.ok(t, "vdi", "add-tags", vid, "--value", "prod")
	if out := c.ok(t, "vdi", "get-tags", vid); out != `["gold","prod"]`+"\n" {
		t.Fatalf("vdi get-tags: %q", out)
	}
	c.fails(t, exitAPI, api.CodeMapDuplicateKey, "vdi", "add-to-other-config", vid, "--key", "backup", "--value", "weekly")

	// The record, and its relations.
	checkVDI := func(when string) {
		t.Helper()
		v := c.vdi(t, "get", vid)
		switch {
		case v.UUID != vid, v.NameLabel != "disk0 (db)", v.VirtualSize != 8*mib, !v.CBTEnabled,
			v.IsASnapshot, v.SnapshotOf != api.NullRef, v.SR != pool, v.Type != "user", v.ReadOnly:
			t.Fatalf("%s: vdi get: %+v", when, v)
		case !slices.Equal(sorted(v.Snapshots), sorted([]string{s1.UUID, s2.UUID})):
			t.Fatalf("%s: vdi get: snapshots %q, want %s and %s", when, v.Snapshots, s1.UUID, s2.UUID)
		case !slices.Equal(sorted(v.Tags), []string{"gold", "prod"}):
			t.Fatalf("%s: vdi get: tags %q", when, v.Tags)
		case len(v.OtherConfig) != 1 || v.OtherConfig["backup"] != "nightly":
			t.Fatalf("%s: vdi get: other_config %v", when, v.OtherConfig)
		}
		s := c.vdi(t, "get", s1.UUID)
		if !s.IsASnapshot || s.SnapshotOf != vid || s.VirtualSize != 4*mib || len(s.Snapshots) != 0 || s.SR != pool {
			t.Fatalf("%s: vdi get %s (snapshot): %+v", when, s1.UUID, s)
		}
	}
	checkVDI("before the restart")

	// Copy runs as a task; --wait waits for it.
	var task api.Task
	c.okJSON(t, &task, "vdi", "copy", vid, "--wait")
	if task.Status != api.TaskSuccess || task.NameLabel != "VDI.copy" || task.Object != vid || task.Error != nil {
		t.Fatalf("vdi copy --wait: task %+v", task)
	}
	res, _ := json.Marshal(task.Result)
	var cpRes api.VDI
	if err := json.Unmarshal(res, &cpRes); err != nil || cpRes.UUID == "" || cpRes.UUID == vid {
		t.Fatalf("vdi copy --wait: result %s (%v)", res, err)
	}
	cp := c.vdi(t, "get", cpRes.UUID)
	if cp.VirtualSize != 8*mib || cp.IsASnapshot || cp.CBTEnabled || cp.NameLabel != "disk0 (db)" ||
		cp.OtherConfig["backup"] != "nightly" || len(cp.CurrentOperations) != 0 || cp.SR != pool {
		t.Fatalf("the copy: %+v", cp)
	}
	// Without --wait, a task's UUID.
	tid := strings.TrimSpace(c.ok(t, "vdi", "copy", cl.UUID))
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(tid) {
		t.Fatalf("vdi copy without --wait: %q, want a task UUID", tid)
	}
	cp2 := copyDest(t, c, tid)

	// Forget and introduce the clone (204, then 201), then destroy it.
	if out := c.ok(t, "vdi", "forget", cl.UUID); out != "" {
		t.Fatalf("vdi forget: printed %q", out)
	}
	c.fails(t, exitAPI, api.CodeUUIDInvalid, "vdi", "get", cl.UUID)
	if in := c.vdi(t, "introduce", "--uuid", cl.UUID, "--name-label", "disk0 clone"); in.UUID != cl.UUID || in.VirtualSize != 4*mib {
		t.Fatalf("vdi introduce: %+v", in)
	}
	if out := c.ok(t, "vdi", "destroy", cl.UUID); out != "" {
		t.Fatalf("vdi destroy: printed %q", out)
	}
	c.fails(t, exitAPI, api.CodeUUIDInvalid, "vdi", "get", cl.UUID)

	// Errors: unknown uuid (1), a missing required flag (2: nothing is
	// sent), a bad token (1).
	c.fails(t, exitAPI, api.CodeUUIDInvalid, "vdi", "get", unknownVDIUUID)
	c.fails(t, exitAPI, api.CodeUUIDInvalid, "vdi", "snapshot", unknownVDIUUID)
	resizePath, lcbPath := "/api/vdis/"+vid+"/resize", "/api/vdis/"+s2.UUID+"/list_changed_blocks"
	d.syncLog(t, c, vid)
	before := d.requestsTo(resizePath) + d.requestsTo(lcbPath)
	c.fails(t, exitUsage, "missing required flag --size", "vdi", "resize", vid)
	c.fails(t, exitUsage, "missing required flag --vdi-from", "vdi", "list-changed-blocks", s2.UUID)
	d.syncLog(t, c, vid)
	if after := d.requestsTo(resizePath) + d.requestsTo(lcbPath); after != before {
		t.Fatalf("a usage error reached the daemon (%d requests logged, %d before)", after, before)
	}
	c.fails(t, exitAPI, api.CodeSessionInvalid, "--token", "vdt_not-a-token", "vdi", "list")

	// Restart on the same data dir and address: the stored token works
	// and everything is there.
	d.stop(t)
	addr := d.HTTPAddr
	d, err := tryStartDaemon(t, dataDir, addr, "")
	if err != nil && strings.Contains(err.Error(), "cannot listen") {
		// Rare: something took the port meanwhile. Take another and point
		// the config at it, as a user would log in again.
		t.Logf("restart on %s: %v; restarting on a free port", addr, err)
		d = startDaemon(t, dataDir, "", "")
		cfg.URL = d.URL
		b, _ := json.Marshal(cfg)
		if err := os.WriteFile(c.config, b, 0o600); err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	checkVDI("after the restart")
	var list api.List[api.VDI]
	c.okJSON(t, &list, "vdi", "list")
	var ids []string
	for _, x := range list.Data {
		ids = append(ids, x.UUID)
	}
	if want := sorted([]string{vid, s1.UUID, s2.UUID, cp.UUID, cp2}); !slices.Equal(sorted(ids), want) {
		t.Fatalf("after the restart: vdi list %q, want %q", sorted(ids), want)
	}
	if out := c.ok(t, "vdi", "list-changed-blocks", s2.UUID, "--vdi-from", s1.UUID); out != emptyBitmap4M+"\n" {
		t.Fatalf("after the restart: list-changed-blocks %q", out)
	}

	// A second daemon on the same data dir is refused.
	second := vdiskdtest.Launch(t, daemonOptions(dataDir, "", ""))
	if st := second.WaitExit(t, daemonTimeout); st.ExitCode() <= 0 || !strings.Contains(second.Log(), "in use by another vdiskd") {
		t.Fatalf("a second vdiskd on the same data dir: %v, want a non-zero exit saying %q:\n%s",
			st, "in use by another vdiskd", second.Log())
	}
	// The first still serves.
	c.vdi(t, "get", vid)

	// Logout revokes the token.
	if out := c.ok(t, "logout"); !strings.Contains(out, "Logged out of "+d.URL) {
		t.Fatalf("logout: %q", out)
	}
	c.fails(t, exitAPI, api.CodeSessionInvalid, "--token", cfg.Token, "vdi", "list")
	d.stop(t)
}

// waitTaskCLI polls a task with vdiskctl task get until it succeeds.
func waitTaskCLI(t *testing.T, c *ctl, id string) api.Task {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		var task api.Task
		c.okJSON(t, &task, "task", "get", id)
		switch {
		case task.Status == api.TaskSuccess:
			return task
		case task.Status != api.TaskPending:
			t.Fatalf("task %s: %+v", id, task)
		case time.Now().After(deadline):
			t.Fatalf("task %s still pending after %v", id, commandTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// copyDest is the UUID a finished copy task made.
func copyDest(t *testing.T, c *ctl, taskID string) string {
	t.Helper()
	task := waitTaskCLI(t, c, taskID)
	m, _ := task.Result.(map[string]any)
	id, _ := m["uuid"].(string)
	if id == "" {
		t.Fatalf("task %s: no uuid in its result %v", taskID, task.Result)
	}
	return id
}

// curlClient runs curl as the README shows it.
type curlClient struct {
	bin, base, dir string
	n              atomic.Int64
}

type curlResult struct {
	status int
	header http.Header
	body   []byte
}

// do runs curl -sS with args; the status, headers and body come back.
func (cc *curlClient) do(t *testing.T, args ...string) curlResult {
	t.Helper()
	n := cc.n.Add(1)
	hdr, body := filepath.Join(cc.dir, fmt.Sprintf("h%d", n)), filepath.Join(cc.dir, fmt.Sprintf("b%d", n))
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	full := append([]string{"-sS", "--max-time", "20", "-D", hdr, "-o", body, "-w", "%{http_code}"}, args...)
	out, err := exec.CommandContext(ctx, cc.bin, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl %s: status %q", strings.Join(args, " "), out)
	}
	r := curlResult{status: status}
	if h, err := os.ReadFile(hdr); err == nil {
		if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(h)), nil); err == nil {
			r.header = resp.Header
		}
	}
	r.body, _ = os.ReadFile(body)
	return r
}

// want checks the status and decodes the body into v (if not nil).
func (r curlResult) want(t *testing.T, what string, status int, v any) curlResult {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: HTTP %d, want %d\n%s", what, r.status, status, r.body)
	}
	if v != nil {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, r.body)
		}
	}
	return r
}

// wantError checks an error answer: its status and XenAPI code.
func (r curlResult) wantError(t *testing.T, what string, status int, code string) {
	t.Helper()
	var eb api.ErrorBody
	r.want(t, what, status, &eb)
	if eb.Error == nil || eb.Error.Code != code {
		t.Fatalf("%s: error %s, want code %s", what, r.body, code)
	}
}

// TestE2ECurl is the core walkthrough as plain HTTP, the way the README's
// curl commands do it, against a daemon that wrote its first admin
// password to <data-dir>/admin.password.
func TestE2ECurl(t *testing.T) {
	t.Parallel()
	curlBin, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl is needed under CI: %v", err)
		}
		t.Skipf("no curl: %v", err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	d := startDaemon(t, dataDir, "", "")
	pwb, err := os.ReadFile(filepath.Join(dataDir, "admin.password"))
	if err != nil {
		t.Fatalf("the first start's admin password: %v", err)
	}
	password := strings.TrimSpace(string(pwb))
	cc := &curlClient{bin: curlBin, base: d.URL + "/api", dir: t.TempDir()}
	u := func(path string) string { return cc.base + path }

	// curl -u admin:$PASSWORD -X POST $API/token
	var tok api.Token
	cc.do(t, "-u", "admin:"+password, "-X", "POST", u("/token")).want(t, "POST /api/token", http.StatusOK, &tok)
	if !strings.HasPrefix(tok.Token, "vdt_") || tok.Username != "admin" || tok.Role != api.PoolAdmin {
		t.Fatalf("POST /api/token: %+v", tok)
	}
	cc.do(t, "-u", "admin:wrong-password", "-X", "POST", u("/token")).
		wantError(t, "POST /api/token, wrong password", http.StatusUnauthorized, api.CodeAuthFailed)
	auth := []string{"-H", "Authorization: Bearer " + tok.Token}
	call := func(method, path string, args ...string) curlResult {
		return cc.do(t, append(append(append([]string{"-X", method}, auth...), args...), u(path))...)
	}
	jsonBody := func(body string) []string {
		return []string{"-H", "Content-Type: application/json", "-d", body}
	}

	var v api.VDI
	r := call("POST", "/vdis", jsonBody(`{"name_label":"disk0","virtual_size":4194304}`)...).
		want(t, "POST /api/vdis", http.StatusCreated, &v)
	if v.VirtualSize != 4*mib || v.NameLabel != "disk0" || r.header.Get("Location") != "/api/vdis/"+v.UUID {
		t.Fatalf("POST /api/vdis: %+v, Location %q", v, r.header.Get("Location"))
	}
	vid := v.UUID
	call("POST", "/vdis/"+vid+"/enable_cbt").want(t, "enable_cbt", http.StatusOK, &v)
	if !v.CBTEnabled {
		t.Fatalf("enable_cbt: cbt_enabled false")
	}
	var s1, s2 api.VDI
	call("POST", "/vdis/"+vid+"/snapshot").want(t, "snapshot 1", http.StatusOK, &s1)
	call("POST", "/vdis/"+vid+"/snapshot").want(t, "snapshot 2", http.StatusOK, &s2)
	if !s1.IsASnapshot || !s2.IsASnapshot || s1.SnapshotOf != vid || s2.SnapshotOf != vid || s1.UUID == s2.UUID {
		t.Fatalf("snapshots: %+v\n%+v", s1, s2)
	}

	var cb api.ChangedBlocks
	call("GET", "/vdis/"+s2.UUID+"/list_changed_blocks?vdi_from="+s1.UUID).
		want(t, "GET list_changed_blocks", http.StatusOK, &cb)
	if cb.Bitmap != emptyBitmap4M || cb.ChangedBlocks != 0 || cb.Granularity != 64<<10 || cb.VirtualSize != 4*mib {
		t.Fatalf("list_changed_blocks: %+v", cb)
	}
	cb = api.ChangedBlocks{}
	call("POST", "/vdis/"+s2.UUID+"/list_changed_blocks", jsonBody(`{"vdi_from":"`+s1.UUID+`"}`)...).
		want(t, "POST list_changed_blocks", http.StatusOK, &cb)
	if cb.Bitmap != emptyBitmap4M {
		t.Fatalf("POST list_changed_blocks: %+v", cb)
	}

	var cl api.VDI
	call("POST", "/vdis/"+vid+"/clone").want(t, "clone", http.StatusOK, &cl)
	if cl.UUID == vid || cl.IsASnapshot || cl.VirtualSize != 4*mib {
		t.Fatalf("clone: %+v", cl)
	}

	call("POST", "/vdis/"+vid+"/resize", jsonBody(`{"size":8388608}`)...).want(t, "resize to 8 MiB", http.StatusOK, &v)
	if v.VirtualSize != 8*mib {
		t.Fatalf("resize: virtual_size %d", v.VirtualSize)
	}
	call("POST", "/vdis/"+vid+"/resize", jsonBody(`{"size":4194304}`)...).
		wantError(t, "resize to 4 MiB", http.StatusConflict, api.CodeShrinkRefused)

	// Copy: 202, the task's address, then its result.
	var task api.Task
	r = call("POST", "/vdis/"+vid+"/copy").want(t, "copy", http.StatusAccepted, &task)
	if task.UUID == "" || r.header.Get("Location") != "/api/tasks/"+task.UUID {
		t.Fatalf("copy: %+v, Location %q", task, r.header.Get("Location"))
	}
	for deadline := time.Now().Add(commandTimeout); task.Status == api.TaskPending; {
		if time.Now().After(deadline) {
			t.Fatalf("copy task %s still pending after %v", task.UUID, commandTimeout)
		}
		time.Sleep(50 * time.Millisecond)
		task = api.Task{}
		call("GET", "/tasks/"+r.header.Get("Location")[len("/api/tasks/"):]).want(t, "GET task", http.StatusOK, &task)
	}
	if task.Status != api.TaskSuccess {
		t.Fatalf("copy task: %+v", task)
	}
	res, _ := json.Marshal(task.Result)
	var cp api.VDI
	if err := json.Unmarshal(res, &cp); err != nil || cp.UUID == "" {
		t.Fatalf("copy task result: %s", res)
	}
	call("GET", "/vdis/"+cp.UUID).want(t, "GET the copy", http.StatusOK, &cp)
	if cp.VirtualSize != 8*mib {
		t.Fatalf("the copy: virtual_size %d", cp.VirtualSize)
	}

	// Basic user:token works as well as Bearer.
	cc.do(t, "-u", "admin:"+tok.Token, u("/vdis/"+vid)).want(t, "GET with Basic admin:token", http.StatusOK, &v)
	if v.UUID != vid || v.VirtualSize != 8*mib || !v.CBTEnabled {
		t.Fatalf("GET the VDI: %+v", v)
	}

	r = call("DELETE", "/vdis/"+cl.UUID).want(t, "DELETE the clone", http.StatusNoContent, nil)
	if len(r.body) != 0 {
		t.Fatalf("DELETE: 204 with a body %q", r.body)
	}
	call("GET", "/vdis/"+cl.UUID).wantError(t, "GET the destroyed clone", http.StatusNotFound, api.CodeUUIDInvalid)
	call("GET", "/vdis/"+unknownVDIUUID).wantError(t, "GET an unknown VDI", http.StatusNotFound, api.CodeUUIDInvalid)
	call("POST", "/vdis/"+vid+"/resize", jsonBody(`{}`)...).
		wantError(t, "resize without size", http.StatusBadRequest, api.CodeInvalidValue)
	cc.do(t, u("/vdis")).wantError(t, "GET /api/vdis without a token", http.StatusUnauthorized, api.CodeSessionInvalid)
	cc.do(t, "-H", "Authorization: Bearer vdt_not-a-token", u("/vdis")).
		wantError(t, "GET /api/vdis with a bad token", http.StatusUnauthorized, api.CodeSessionInvalid)

	// Logout: 204, and the token is dead.
	call("DELETE", "/token").want(t, "DELETE /api/token", http.StatusNoContent, nil)
	call("GET", "/vdis").wantError(t, "GET /api/vdis after logout", http.StatusUnauthorized, api.CodeSessionInvalid)
	d.stop(t)
}
