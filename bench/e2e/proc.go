package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// child is a server process the harness started (vdiskd or an anchor). It
// runs in its own process group, so a Ctrl-C at the terminal reaches only
// the harness, which then stops each child in order; Pdeathsig takes it
// down should the harness itself die.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer // stdout+stderr, also copied to <work>/<name>.log
	logf *os.File
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild starts argv with its output in logPath. deathSig is what the
// kernel sends it if the harness dies first.
func startChild(name, logPath string, env []string, deathSig syscall.Signal, argv ...string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, out: &syncBuffer{}, logf: f, done: make(chan struct{})}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	c.cmd.Env = append(os.Environ(), env...)
	w := io.MultiWriter(f, c.out)
	c.cmd.Stdout, c.cmd.Stderr = w, w
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { c.cmd.Wait(); f.Close(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits; after timeout it kills. It reports an
// exit other than 0 (a SIGTERM death counts as clean for the anchors,
// which do not all trap it).
func (c *child) stop(timeout time.Duration) error {
	if c.exited() {
		return c.exitErr()
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.exitErr()
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", c.name, timeout)
	}
}

func (c *child) exitErr() error {
	st := c.cmd.ProcessState
	if st == nil || st.ExitCode() == 0 {
		return nil
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		return nil
	}
	return fmt.Errorf("%s exited: %v", c.name, st)
}

// waitOutput waits until the child's output contains s.
func (c *child) waitOutput(ctx context.Context, s string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.out.String(), s) {
		if c.exited() {
			return fmt.Errorf("%s exited before %q:\n%s", c.name, s, lastLines(c.out.String(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q within %v:\n%s", c.name, s, timeout, lastLines(c.out.String(), 20))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// waitTCP waits until addr accepts a connection.
func (c *child) waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if c.exited() {
			return fmt.Errorf("%s exited before listening on %s:\n%s", c.name, addr, lastLines(c.out.String(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after %v", c.name, addr, timeout)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the anchor binds it; the anchor then fails to start and
// says so.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// procStatus reads one "VmXXX:  N kB" field of /proc/PID/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	return procStatusFile(fmt.Sprintf("/proc/%d/status", pid), field)
}

// procIO is /proc/PID/io: write_bytes is what the process caused to be
// sent to storage (page-cache pages it dirtied, direct I/O), over all its
// threads.
type procIO struct {
	WriteBytes, CancelledWriteBytes, ReadBytes, WChar, RChar int64
}

func readProcIO(pid int) (procIO, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return procIO{}, err
	}
	return parseProcIO(b)
}

func parseProcIO(b []byte) (procIO, error) {
	var p procIO
	fields := map[string]*int64{"write_bytes": &p.WriteBytes, "cancelled_write_bytes": &p.CancelledWriteBytes,
		"read_bytes": &p.ReadBytes, "wchar": &p.WChar, "rchar": &p.RChar}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if dst := fields[k]; ok && dst != nil {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return p, fmt.Errorf("/proc io %s: %v", k, err)
			}
			*dst = n
			seen++
		}
	}
	if seen == 0 {
		return p, errors.New("/proc io: no fields")
	}
	return p, nil
}

// rssSampler polls VmRSS until stopped and keeps the largest value and
// the phase the harness was in when it was seen.
type rssSampler struct {
	peak      atomic.Int64
	phase     atomic.Pointer[string] // set by the harness as it goes
	peakPhase atomic.Pointer[string]
	stop      chan struct{}
	done      chan struct{}
}

// during labels the samples that follow (the peak reports its phase).
func (s *rssSampler) during(phase string) {
	if s != nil {
		s.phase.Store(&phase)
	}
}

// PeakPhase is the phase of the largest sample ("" when unlabelled).
func (s *rssSampler) PeakPhase() string {
	if p := s.peakPhase.Load(); p != nil {
		return *p
	}
	return ""
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil && v > s.peak.Load() {
				s.peak.Store(v)
				s.peakPhase.Store(s.phase.Load())
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.peak.Load()
}

// moduleRoot is the directory of the go.mod above the working directory
// (the repository root when run as `go run ./bench/e2e`).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/vdiskd/vdiskd")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no vdiskd go.mod above %s: run from the repository", dir)
		}
	}
}

// fsType names the filesystem holding path (statfs magic).
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
		0x2FC12FC1: "zfs", 0x794C7630: "overlayfs", 0x6969: "nfs", 0xF2F52010: "f2fs"}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// userHZ is the kernel's USER_HZ, the unit of /proc/PID/stat's times: 100
// on every Linux architecture Go runs on (the kernel exports times in it
// whatever its own HZ).
const userHZ = 100

// procCPU is the CPU time a process has used, user and system, all its
// threads (/proc/PID/stat utime + stime).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU reads utime and stime, fields 14 and 15, counted after
// the command name, which may hold spaces and parentheses.
func parseProcStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // fields 14 and 15; f[0] is field 3
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %q: %v", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
