package vdiskdtest

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultAdminPassword is the admin password a daemon starts with unless
// Options say otherwise.
const DefaultAdminPassword = "vdiskdtest-admin-password"

// Time limits of the process's life.
const (
	ReadyTimeout = 60 * time.Second // from exec to the ready line (a -race build on two cores is slow)
	StopTimeout  = 30 * time.Second // from SIGTERM to the exit
	KillTimeout  = 10 * time.Second // from SIGKILL to the exit
)

// Options say how to start vdiskd. The zero value is a daemon on a fresh
// data directory, on free loopback ports, with DefaultAdminPassword.
type Options struct {
	DataDir  string   // "": a new directory in t.TempDir()
	HTTPAddr string   // --http-addr; "": 127.0.0.1:0
	NBDAddr  string   // --nbd-addr; "": 127.0.0.1:0
	Args     []string // more flags
	// Env is added to the test's environment, from which every VDISKD_
	// variable is dropped first (a developer's own settings stay out).
	Env []string
	// AdminPassword is VDISKD_ADMIN_PASSWORD; "": DefaultAdminPassword.
	AdminPassword string
	// RandomAdminPassword leaves VDISKD_ADMIN_PASSWORD unset: the first
	// start writes a random one to <data dir>/admin.password. Start then
	// does not log in.
	RandomAdminPassword bool
	// NoLogin: Start does not log in as admin (Token stays empty).
	NoLogin bool
}

func (o Options) password() string {
	if o.AdminPassword != "" {
		return o.AdminPassword
	}
	return DefaultAdminPassword
}

// Daemon is one vdiskd process. Its Client talks REST to it as admin.
type Daemon struct {
	Client
	DataDir  string
	URL      string // http(s)://host:port; the API is under /api
	HTTPAddr string // host:port of the API
	NBDHost  string // host:port of the NBD server
	NBDURL   string // nbd:// or nbds:// with the NBD address, from the ready line

	opts    Options
	cmd     *exec.Cmd
	log     *Buffer
	exited  chan struct{}
	waitErr error // set before exited is closed
	// ended: the test stopped, killed or waited for the process, so its
	// end is not a surprise.
	ended bool
}

// readyLine has the addresses in vdiskd's "vdiskd ready" log line.
var readyLine = regexp.MustCompile(`msg="vdiskd ready".* api=(\S+).* nbd=(\S*)`)

// Start starts vdiskd, waits until it is ready and (unless the options say
// not to) logs in as admin. The test's cleanup stops it with SIGTERM and
// fails the test unless it exits 0; on a failure the log's tail is shown.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	d, err := TryStart(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TryStart is Start that returns why the daemon did not become ready.
func TryStart(t testing.TB, o Options) (*Daemon, error) {
	t.Helper()
	d := Launch(t, o)
	if err := d.WaitReady(); err != nil {
		return nil, err
	}
	if !o.NoLogin && !o.RandomAdminPassword {
		d.Token = d.Login(t, "admin", o.password())
	}
	return d, nil
}

// Launch starts vdiskd without waiting for it (WaitReady waits).
func Launch(t testing.TB, o Options) *Daemon {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	d := &Daemon{DataDir: o.DataDir, opts: o, log: &Buffer{}, exited: make(chan struct{})}
	args := []string{"--data-dir", o.DataDir, "--http-addr", or(o.HTTPAddr, "127.0.0.1:0"),
		"--nbd-addr", or(o.NBDAddr, "127.0.0.1:0")}
	d.cmd = exec.Command(Binary(t, "vdiskd"), append(args, o.Args...)...)
	d.cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "VDISKD_") })
	if !o.RandomAdminPassword {
		d.cmd.Env = append(d.cmd.Env, "VDISKD_ADMIN_PASSWORD="+o.password())
	}
	d.cmd.Env = append(d.cmd.Env, o.Env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting vdiskd: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if !d.ended {
			d.Stop(t)
		}
		if t.Failed() {
			t.Logf("vdiskd (pid %d, data %s), the end of its log:\n%s", d.PID(), d.DataDir, Tail(d.Log(), 60))
		}
	})
	return d
}

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// WaitReady waits for the ready line and takes the addresses from it.
func (d *Daemon) WaitReady() error {
	deadline := time.Now().Add(ReadyTimeout)
	for {
		if m := readyLine.FindStringSubmatch(d.log.String()); m != nil {
			u, err := url.Parse(m[1])
			if err != nil {
				return fmt.Errorf("vdiskd's ready line: %v", err)
			}
			d.API, d.HTTPAddr = m[1], u.Host
			d.URL = strings.TrimSuffix(m[1], "/api")
			d.NBDURL = strings.Trim(m[2], `"`) // "" when NBD is off
			d.NBDHost = strings.TrimPrefix(strings.TrimPrefix(m[2], "nbds://"), "nbd://")
			return nil
		}
		select {
		case <-d.exited:
			d.ended = true
			return fmt.Errorf("vdiskd exited before it was ready: %v\n%s", d.waitErr, d.log.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vdiskd not ready after %v:\n%s", ReadyTimeout, d.log.String())
		}
	}
}

// Relaunch starts vdiskd again, with the same options and data directory,
// after this one stopped or died; it logs in again (tokens survive a
// restart, but a fresh login proves it works).
func (d *Daemon) Relaunch(t testing.TB) *Daemon {
	t.Helper()
	return Start(t, d.opts)
}

// RelaunchInPlace is Relaunch on the addresses this run had, as a
// restarted daemon keeps its: its peers registered it by URL.
func (d *Daemon) RelaunchInPlace(t testing.TB) *Daemon {
	t.Helper()
	o := d.opts
	o.HTTPAddr, o.NBDAddr = d.HTTPAddr, d.NBDHost
	return Start(t, o)
}

// Stop sends SIGTERM and waits for the exit, which must be 0; a daemon
// that does not stop within StopTimeout is killed. A daemon already gone
// is left as it is.
func (d *Daemon) Stop(t testing.TB) {
	t.Helper()
	if d.ended {
		return
	}
	d.ended = true
	select {
	case <-d.exited:
		t.Errorf("vdiskd had exited by itself: %v", d.waitErr)
		return
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM to vdiskd: %v", err)
	}
	if !d.waitOrKill(StopTimeout) {
		t.Errorf("vdiskd did not stop within %v of SIGTERM; killed it\n%s", StopTimeout, Tail(d.Log(), 30))
		return
	}
	if d.waitErr != nil {
		t.Errorf("vdiskd exited with %v after SIGTERM, want status 0\n%s", d.waitErr, Tail(d.Log(), 30))
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	d.ended = true
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.exited:
	case <-time.After(KillTimeout):
		t.Fatalf("vdiskd still runs %v after SIGKILL", KillTimeout)
	}
}

// Signal sends a signal to the process.
func (d *Daemon) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to vdiskd: %v", sig, err)
	}
}

// WaitExit waits up to timeout for the process to end (after a signal the
// test sent, or by itself) and returns how it ended; a daemon still
// running then is killed and fails the test.
func (d *Daemon) WaitExit(t testing.TB, timeout time.Duration) *os.ProcessState {
	t.Helper()
	d.ended = true
	if !d.waitOrKill(timeout) {
		t.Fatalf("vdiskd still ran %v later; killed it\n%s", timeout, Tail(d.Log(), 30))
	}
	return d.cmd.ProcessState
}

// waitOrKill waits up to timeout for the process to end, then kills it;
// false when it had to.
func (d *Daemon) waitOrKill(timeout time.Duration) bool {
	select {
	case <-d.exited:
		return true
	case <-time.After(timeout):
		d.cmd.Process.Kill()
		<-d.exited
		return false
	}
}

// Exited is closed when the process has ended.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// PID is the process ID.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Log is what the daemon has written so far (stdout and stderr).
func (d *Daemon) Log() string { return d.log.String() }

// WaitLog waits up to ReadyTimeout for text to appear in the log.
func (d *Daemon) WaitLog(t testing.TB, text string) {
	t.Helper()
	d.log.WaitFor(t, text, ReadyTimeout)
}

// Buffer collects a process's output while it runs.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor waits up to timeout for text to appear.
func (b *Buffer) WaitFor(t testing.TB, text string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(b.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v in the output:\n%s", text, timeout, Tail(b.String(), 60))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Tail is the last n lines of a log.
func Tail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("(%d lines before)\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}
